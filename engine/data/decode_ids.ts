/**
 * Token ids back to text as LLaMA-Factory decodes predictions and chat replies.
 * @module
 */
import type { ChatTemplate } from "./template.ts";

/**
 * Text of token ids as `tokenizer.decode` after LF's template fixes: `skip` drops every special token (the
 * tokenizer's and the stop words the template added); ids no token has are dropped, as the Rust tokenizers do.
 */
export function decodeIds(tpl: ChatTemplate, ids: readonly number[], skip: boolean): string {
  const tok = tpl.tokenizer;
  const known = ids.filter((id) => tok.idToToken(id) !== undefined);
  if (!skip) return tok.decode(known);
  const special = new Set([...tok.base.specialTokens.all.map((t) => t.id), ...tok.addedTokens.values()]);
  return tok.base.decode(known.filter((id) => !special.has(id)), { skipSpecialTokens: true });
}
