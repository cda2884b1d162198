/**
 * Pre-training processing (LF's `PretrainDatasetProcessor`) plus the labels transformers'
 * `DataCollatorForLanguageModeling(mlm=False)` makes: the input ids with every pad id set to -100.
 * @module
 */
import type { ChatTemplate } from "./template.ts";
import {
  type BatchInput,
  type BatchOutput,
  describe,
  IGNORE_INDEX,
  type ResolvedDataArgs,
  type SftRecord,
} from "./process_base.ts";

/**
 * One batch of pre-training texts. Text = `prompt[0].content` + eos text (`<|end_of_text|>` for the `llama3`
 * template, else the fixed tokenizer's eos), tokenized without special tokens (so the eos text becomes the token).
 * Packing concatenates the batch and cuts `cutoffLen` blocks, dropping the remainder; without packing each text is
 * cut to `cutoffLen`. When the tokenizer adds BOS, packed blocks get their first token overwritten with BOS and
 * unpacked texts get the BOS text prepended.
 */
export function processPretrain(batch: BatchInput, tpl: ChatTemplate, args: ResolvedDataArgs): BatchOutput<SftRecord> {
  const out: BatchOutput<SftRecord> = { records: [], sources: [], warnings: [] };
  const tok = tpl.tokenizer;
  const eosText = tpl.requestedName === "llama3" ? "<|end_of_text|>" : tok.eos!.content;
  const addBos = (args.addBosToken ?? tok.base.addBosToken === true) && tok.bos !== null;
  const texts: { text: string; source: number }[] = [];
  for (const [k, ex] of batch.examples.entries()) {
    if (ex.prompt.length === 0) {
      out.warnings.push(`Dropped example without text: ${describe(ex)}`);
      continue;
    }
    texts.push({ text: ex.prompt[0].content + eosText, source: batch.offset + k });
  }
  const record = (ids: number[]): SftRecord => ({
    input_ids: ids,
    attention_mask: new Array<number>(ids.length).fill(1),
    labels: ids.map((id) => (id === tpl.padId ? IGNORE_INDEX : id)),
  });
  const block = args.cutoffLen;
  if (!args.packing) {
    for (const { text, source } of texts) {
      const ids = tok.encode(addBos ? tok.bos!.content + text : text).slice(0, block);
      out.records.push(record(ids));
      out.sources.push([source]);
    }
    return out;
  }
  const all: number[] = [];
  const owner: number[] = [];
  for (const { text, source } of texts) {
    const ids = tok.encode(text);
    for (const id of ids) {
      all.push(id);
      owner.push(source);
    }
  }
  const total = Math.floor(all.length / block) * block;
  for (let i = 0; i < total; i += block) {
    const ids = all.slice(i, i + block);
    if (addBos) ids[0] = tok.bos!.id;
    out.records.push(record(ids));
    out.sources.push([...new Set(owner.slice(i, i + block))]);
  }
  return out;
}
