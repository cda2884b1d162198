/**
 * What an export writes of the chat template, as LLaMA-Factory's export does (`data/template.py`
 * `_get_jinja_template` / `fix_jinja_template`, `get_ollama_modelfile`; `train/tuner.py` `export_model`):
 * the template's slots as a Jinja `chat_template` in `tokenizer_config.json`, so transformers'
 * `apply_chat_template` (and vLLM, transformers.js, ...) formats chats as the model was tuned, and an Ollama
 * `Modelfile` (`FROM .`, the template in Go-template syntax, the default system prompt, the stop tokens).
 *
 * The Jinja holds the generation prompt inside the user slot, as LF's does (it ignores `add_generation_prompt`);
 * a `llama2`-kind template fuses the system text into the first user message. Unlike LF, a named `template` always
 * replaces the tokenizer's own chat template (LF keeps it unless the template sets `replace_jinja_template`): the
 * export then formats chats exactly as training did. Without a name, the tokenizer's own template stays, and a
 * tokenizer without one gets the `empty` template's (LF's rule).
 *
 * @example
 * ```ts
 * import { writeTemplateFiles } from "./template_export.ts";
 * await writeTemplateFiles("out/merged", "qwen"); // tokenizer_config.json chat_template + Modelfile
 * ```
 * @module
 */
import { type ChatTemplate, getTemplate, type Slot } from "./template.ts";
import { loadTokenizer } from "./tokenizer.ts";

/** A Jinja string literal of `s` (single-quoted; backslashes and quotes escaped). */
function quote(s: string): string {
  return "'" + s.replaceAll("\\", "\\\\").replaceAll("'", "\\'") + "'";
}

/** `_convert_slots_to_jinja`: the slots as one Jinja expression; undefined when a slot names a token (unsupported). */
function slotsToJinja(tpl: ChatTemplate, slots: readonly Slot[], placeholder = "content"): string | undefined {
  const items: string[] = [];
  for (const slot of slots) {
    if (typeof slot === "string") {
      const [head, ...rest] = slot.split("{{content}}");
      if (head) items.push(quote(head));
      if (rest.length) {
        items.push(placeholder);
        const tail = rest.join("{{content}}");
        if (tail) items.push(quote(tail));
      }
    } else if ("special" in slot) {
      const t = slot.special === "bos_token" ? tpl.tokenizer.bos : tpl.tokenizer.eos;
      if (t) items.push(quote(t.content));
    } else return undefined;
  }
  return items.join(" + ");
}

/** The Jinja chat template of `tpl` (LF's `_get_jinja_template`); undefined when a slot names a token. */
export function jinjaChatTemplate(tpl: ChatTemplate): string | undefined {
  const s = tpl.spec;
  const prefix = slotsToJinja(tpl, s.prefix);
  const system = slotsToJinja(tpl, s.system, "system_message");
  const user = slotsToJinja(tpl, s.user);
  const assistant = slotsToJinja(tpl, s.assistant);
  if (prefix === undefined || system === undefined || user === undefined || assistant === undefined) return undefined;
  let j = prefix ? `{{ ${prefix} }}` : "";
  if (s.defaultSystem) j += `{% set system_message = ${quote(s.defaultSystem)} %}`;
  j += "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}" +
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% endif %}";
  if (s.kind === "llama2") {
    j += "{% for message in loop_messages %}" +
      `{% if loop.index0 == 0 and system_message is defined %}{% set content = ${system} + message['content'] %}` +
      "{% else %}{% set content = message['content'] %}{% endif %}";
  } else {
    j += `{% if system_message is defined %}{{ ${system} }}{% endif %}` +
      "{% for message in loop_messages %}{% set content = message['content'] %}";
  }
  j += `{% if message['role'] == 'user' %}{{ ${user} }}` +
    `{% elif message['role'] == 'assistant' %}{{ ${assistant} }}{% endif %}{% endfor %}`;
  return j;
}

/** `_convert_slots_to_ollama`. */
function slotsToOllama(tpl: ChatTemplate, slots: readonly Slot[], placeholder: string): string | undefined {
  let out = "";
  for (const slot of slots) {
    if (typeof slot === "string") out += slot.split("{{content}}").join(`{{ ${placeholder} }}`);
    else if ("special" in slot) {
      out += (slot.special === "bos_token" ? tpl.tokenizer.bos : tpl.tokenizer.eos)?.content ?? "";
    } else return undefined;
  }
  return out;
}

/** LF's `get_ollama_modelfile`: the Modelfile of `tpl` (`FROM .`); undefined when a slot names a token. */
export function ollamaModelfile(tpl: ChatTemplate): string | undefined {
  const s = tpl.spec;
  const prefix = slotsToOllama(tpl, s.prefix, ".Content");
  const system = slotsToOllama(tpl, s.system, ".System");
  const user = slotsToOllama(tpl, s.user, ".Content");
  const assistant = slotsToOllama(tpl, s.assistant, ".Content");
  if (prefix === undefined || system === undefined || user === undefined || assistant === undefined) return undefined;
  const template = `${prefix}{{ if .System }}${system}{{ end }}{{ range .Messages }}{{ if eq .Role "user" }}${user}` +
    `{{ else if eq .Role "assistant" }}${assistant}{{ end }}{{ end }}`;
  let m = `# ollama modelfile auto-generated by whetstone\n\nFROM .\n\nTEMPLATE """${template}"""\n\n`;
  if (s.defaultSystem) m += `SYSTEM """${s.defaultSystem}"""\n\n`;
  for (const id of tpl.stopTokenIds()) m += `PARAMETER stop "${tpl.tokenizer.idToToken(id)}"\n`;
  return m + "PARAMETER num_ctx 4096\n";
}

/** What {@link writeTemplateFiles} wrote. */
export interface TemplateFilesResult {
  /** Whether tokenizer_config.json got the template's Jinja as `chat_template`. */
  chatTemplate: boolean;
  /** Whether `Modelfile` was written. */
  modelfile: boolean;
}

/**
 * Writes the chat template of `template` (a registered name; undefined: the tokenizer's own, else `empty`) into the
 * exported folder `dir`: `chat_template` of tokenizer_config.json (a `chat_template.jinja` beside it, which
 * transformers would prefer, is removed), the template's eos / pad fixes there (`eos_token`, `pad_token`), and
 * `Modelfile`. A folder without tokenizer.json gets nothing.
 */
export async function writeTemplateFiles(dir: string, template?: string): Promise<TemplateFilesResult> {
  const none = { chatTemplate: false, modelfile: false };
  if (!await Deno.stat(`${dir}/tokenizer.json`).then(() => true, () => false)) return none;
  const tok = await loadTokenizer(dir);
  const tpl = getTemplate(tok, { template });
  const replace = template !== undefined || tok.chatTemplate === undefined;
  const jinja = replace ? jinjaChatTemplate(tpl) : undefined;
  // LF saves the fixed tokenizer: eos replaced by the template's first stop word, pad defaulting to eos (tokens the
  // vocabulary already has; a stop word the fix adds as a new token would need resized embeddings).
  const fixes: Record<string, string> = {};
  const base = tok.specialTokens, fixed = tpl.tokenizer;
  const known = (t: { content: string } | null) => t !== null && tok.tokenToId(t.content) !== undefined;
  if (known(fixed.eos) && fixed.eos!.content !== base.eos?.content) fixes.eos_token = fixed.eos!.content;
  if (known(fixed.pad) && base.pad === null) fixes.pad_token = fixed.pad!.content;
  if (jinja !== undefined || Object.keys(fixes).length) {
    const path = `${dir}/tokenizer_config.json`;
    const cfg: Record<string, unknown> = await Deno.readTextFile(path).then((t) => JSON.parse(t), () => ({}));
    Object.assign(cfg, fixes);
    if (jinja !== undefined) cfg.chat_template = jinja;
    await Deno.writeTextFile(path, JSON.stringify(cfg, null, 2) + "\n");
  }
  if (jinja !== undefined) {
    await Deno.remove(`${dir}/chat_template.jinja`).catch(() => {});
    await Deno.remove(`${dir}/chat_template.json`).catch(() => {});
  }
  const modelfile = ollamaModelfile(tpl);
  if (modelfile !== undefined) await Deno.writeTextFile(`${dir}/Modelfile`, modelfile);
  return { chatTemplate: jinja !== undefined, modelfile: modelfile !== undefined };
}
