/**
 * Hugging Face tokenizers from a model folder: `tokenizer.json` (encode/decode through @huggingface/tokenizers),
 * `tokenizer_config.json` (special tokens, flags, chat templates) and optional `chat_template.jinja` /
 * `additional_chat_templates/*.jinja`. Chat templates render with @huggingface/jinja the way transformers'
 * `apply_chat_template` does.
 *
 * @example
 * ```ts
 * const tok = await loadTokenizer("fixtures/tiny/model") // or a folder such as "models/Qwen3-0.6B";
 * const ids = tok.encode("Hello");
 * const prompt = tok.applyChatTemplate([{ role: "user", content: "Hi" }], { addGenerationPrompt: true });
 * ```
 * @module
 */
import { HfTokenizer, JinjaTemplate } from "../../deps.ts";

/** A special token and its id. */
export interface SpecialToken {
  readonly content: string;
  readonly id: number;
}

/** The named special tokens of `tokenizer_config.json` and every added token marked special in `tokenizer.json`. */
export interface SpecialTokens {
  readonly bos: SpecialToken | null;
  readonly eos: SpecialToken | null;
  readonly pad: SpecialToken | null;
  readonly unk: SpecialToken | null;
  /** Every special added token, by id. */
  readonly all: readonly SpecialToken[];
}

/** One chat message; extra fields (`tool_calls`, `name`, ...) reach the template as they are. */
export interface ChatMessage {
  role: string;
  /** Text, or content parts such as `[{ type: "text", text: "..." }]`. */
  content?: string | readonly Record<string, unknown>[] | null;
  [field: string]: unknown;
}

/** Options of {@link Tokenizer.applyChatTemplate}. Other keys reach the template verbatim (e.g. `reasoning_effort`). */
export interface ChatTemplateOptions {
  /** End with the header that starts an assistant turn (`add_generation_prompt`). Default false. */
  addGenerationPrompt?: boolean;
  /** Cut the rendering right after the final message's content so generation continues it. Default false. */
  continueFinalMessage?: boolean;
  /** Tools as JSON schemas (`tools`); selects a template named `tool_use` when the folder has one. */
  tools?: readonly Record<string, unknown>[] | null;
  /** Documents for retrieval templates (`documents`). */
  documents?: readonly Record<string, unknown>[] | null;
  /** `enable_thinking` (Qwen3); left undefined when not given. */
  enableThinking?: boolean;
  /** Name of one of the folder's templates, or a template source. Default: transformers' choice. */
  chatTemplate?: string;
  /** Return token ids instead of text (encoded without adding special tokens again). Default false. */
  tokenize?: boolean;
  [extra: string]: unknown;
}

/** Options of {@link Tokenizer.encode}. */
export interface EncodeOptions {
  /** Apply the post-processor of `tokenizer.json` (e.g. prepend BOS). Default true. */
  addSpecialTokens?: boolean;
}

/** Options of {@link Tokenizer.decode}. */
export interface DecodeOptions {
  /** Drop special added tokens. Default false. */
  skipSpecialTokens?: boolean;
  /**
   * Remove spaces before punctuation (" ." → "."). Default as transformers 5: the folder's
   * `clean_up_tokenization_spaces`, except for BPE models where it is never applied.
   */
  cleanUpTokenizationSpaces?: boolean;
}

type Json = Record<string, unknown>;

/** A loaded tokenizer. Create with {@link loadTokenizer}. */
export class Tokenizer {
  /** Number of distinct ids of the vocabulary and added tokens (Python's `len(tokenizer)`). */
  readonly vocabSize: number;
  /**
   * One past the largest id a token has: the ids generation may choose (`GenerateOptions.vocabLimit`). A model's
   * vocabulary may be larger (padded embedding rows no token has), never smaller.
   */
  readonly idLimit: number;
  readonly specialTokens: SpecialTokens;
  /** `add_bos_token` / `add_eos_token` of `tokenizer_config.json`, where present. */
  readonly addBosToken: boolean | undefined;
  readonly addEosToken: boolean | undefined;
  /** `model_max_length` of `tokenizer_config.json` (transformers writes 1e30 for "no limit"). */
  readonly modelMaxLength: number | undefined;
  /** Chat templates by name (`"default"` for a single one), with the place each came from. */
  readonly chatTemplates: ReadonlyMap<string, { readonly source: string; readonly origin: string }>;
  readonly #hf: HfTokenizer;
  readonly #cleanUp: boolean;
  readonly #templateVars: Json;
  readonly #compiled = new Map<string, JinjaTemplate>();

  /** Prefer {@link loadTokenizer}; this takes the parsed files. `dir` names the folder in error messages. */
  constructor(
    readonly dir: string,
    tokenizerJson: Json,
    config: Json,
    templates: ReadonlyMap<string, { source: string; origin: string }>,
  ) {
    const names: Record<string, string | null> = {};
    for (const key of ["bos_token", "eos_token", "pad_token", "unk_token", "sep_token", "cls_token", "mask_token"]) {
      names[key] = tokenContent(config[key], `${dir}/tokenizer_config.json "${key}"`);
    }
    const additional = Array.isArray(config.additional_special_tokens)
      ? config.additional_special_tokens.map((t, i) => tokenContent(t, `additional_special_tokens[${i}]`))
      : undefined;
    const model = tokenizerJson.model as Json | undefined;
    this.#cleanUp = config.clean_up_tokenization_spaces === true && model?.type !== "BPE";
    this.#hf = new HfTokenizer(tokenizerJson, {
      ...config,
      ...names,
      additional_special_tokens: additional,
      clean_up_tokenization_spaces: this.#cleanUp,
    });
    const vocab = this.#hf.get_vocab(true);
    vocab.delete(undefined as unknown as string);
    this.vocabSize = new Set(vocab.values()).size;
    let top = -1;
    for (const id of vocab.values()) if (id > top) top = id;
    this.idLimit = top + 1;
    const special = (key: string): SpecialToken | null => {
      const content = names[key];
      if (content === null) return null;
      const id = this.#hf.token_to_id(content);
      if (id === undefined) throw new Error(`${dir}: ${key} "${content}" is not a token of tokenizer.json`);
      return { content, id };
    };
    const all = [...this.#hf.get_added_tokens_decoder()].filter(([, t]) => t.special)
      .map(([id, t]) => ({ content: t.content, id })).sort((a, b) => a.id - b.id);
    this.specialTokens = {
      bos: special("bos_token"),
      eos: special("eos_token"),
      pad: special("pad_token"),
      unk: special("unk_token"),
      all,
    };
    this.addBosToken = typeof config.add_bos_token === "boolean" ? config.add_bos_token : undefined;
    this.addEosToken = typeof config.add_eos_token === "boolean" ? config.add_eos_token : undefined;
    this.modelMaxLength = typeof config.model_max_length === "number" ? config.model_max_length : undefined;
    this.chatTemplates = templates;
    // transformers passes `special_tokens_map` (set tokens only, plus `extra_special_tokens`) to templates.
    this.#templateVars = Object.fromEntries(Object.entries(names).filter(([, v]) => v !== null));
    if (config.extra_special_tokens && typeof config.extra_special_tokens === "object") {
      for (const [k, v] of Object.entries(config.extra_special_tokens)) {
        const content = tokenContent(v, `extra_special_tokens.${k}`);
        if (content !== null) this.#templateVars[k] = content;
      }
    }
  }

  /** Token ids of `text`; `addSpecialTokens` applies the post-processor of `tokenizer.json`. */
  encode(text: string, { addSpecialTokens = true }: EncodeOptions = {}): number[] {
    return this.#hf.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  /** Text of `ids`. Throws on ids outside the vocabulary. */
  decode(ids: readonly number[], { skipSpecialTokens = false, cleanUpTokenizationSpaces }: DecodeOptions = {}): string {
    for (const id of ids) {
      if (!Number.isInteger(id) || this.#hf.id_to_token(id) === undefined) {
        throw new RangeError(`decode: expected token ids of ${this.dir} (0..${this.vocabSize - 1}), got ${id}`);
      }
    }
    if (ids.length === 0) return "";
    return this.#hf.decode([...ids], {
      skip_special_tokens: skipSpecialTokens,
      clean_up_tokenization_spaces: cleanUpTokenizationSpaces ?? this.#cleanUp,
    });
  }

  /** The token string of `id`, or undefined when no token has it. */
  idToToken(id: number): string | undefined {
    return this.#hf.id_to_token(id);
  }

  /** The id of token string `token` (a vocabulary or added token, not text), or undefined. */
  tokenToId(token: string): number | undefined {
    return this.#hf.token_to_id(token);
  }

  /** The default chat template's source, or undefined when the folder has none. */
  get chatTemplate(): string | undefined {
    return this.chatTemplates.get("default")?.source;
  }

  /**
   * Renders `messages` with the folder's chat template as transformers' `apply_chat_template` does: variables
   * `messages`, `add_generation_prompt`, `tools`, `documents`, the special tokens (`bos_token`, `eos_token`, ...),
   * `raise_exception`, `strftime_now`, plus `enable_thinking` and any extra keys of `options`.
   */
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions & { tokenize: true }): number[];
  applyChatTemplate(messages: readonly ChatMessage[], options?: ChatTemplateOptions & { tokenize?: false }): string;
  applyChatTemplate(messages: readonly ChatMessage[], options?: ChatTemplateOptions): string | number[];
  applyChatTemplate(messages: readonly ChatMessage[], options: ChatTemplateOptions = {}): string | number[] {
    const {
      addGenerationPrompt = false,
      continueFinalMessage = false,
      tools = null,
      documents = null,
      enableThinking,
      chatTemplate,
      tokenize = false,
      ...extra
    } = options;
    if (messages.length === 0) throw new Error("applyChatTemplate: expected at least one message, got none");
    if (continueFinalMessage && addGenerationPrompt) {
      throw new Error("applyChatTemplate: continueFinalMessage and addGenerationPrompt cannot both be set");
    }
    const { template, origin } = this.#template(chatTemplate, tools !== null);
    let chat = messages;
    const tag = "CONTINUE_FINAL_MESSAGE_TAG ";
    let final = "";
    if (continueFinalMessage) [chat, final] = tagFinalMessage(messages, tag);
    const vars: Json = { ...this.#templateVars, ...extra, messages: chat, tools, documents };
    vars.add_generation_prompt = addGenerationPrompt;
    if (enableThinking !== undefined) vars.enable_thinking = enableThinking;
    let text: string;
    try {
      text = template.render(vars);
    } catch (e) {
      throw new Error(`chat template of ${origin} failed: ${(e as Error).message}`, { cause: e });
    }
    if (continueFinalMessage) {
      if (!text.includes(final.trim()) || !text.includes(tag.trim())) {
        throw new Error(`chat template of ${origin} drops part of the final message; cannot continue it`);
      }
      const at = text.lastIndexOf(tag.trim());
      text = text.slice(at, at + tag.length) === tag ? text.slice(0, at) : text.slice(0, at).trimEnd();
    }
    return tokenize ? this.encode(text, { addSpecialTokens: false }) : text;
  }

  /** transformers' `get_chat_template`: a name, an inline source, `tool_use` when tools are given, or `default`. */
  #template(nameOrSource: string | undefined, withTools: boolean): { template: JinjaTemplate; origin: string } {
    let key: string;
    if (nameOrSource !== undefined && !this.chatTemplates.has(nameOrSource)) {
      key = `inline:${nameOrSource}`;
    } else if (nameOrSource !== undefined) key = nameOrSource;
    else if (withTools && this.chatTemplates.has("tool_use")) key = "tool_use";
    else if (this.chatTemplates.has("default")) key = "default";
    else if (this.chatTemplates.size === 0) {
      throw new Error(
        `${this.dir} has no chat template (tokenizer_config.json "chat_template" or chat_template.jinja)`,
      );
    } else {
      throw new Error(
        `${this.dir} has several chat templates and none named "default"; pass chatTemplate, one of ${
          [
            ...this.chatTemplates.keys(),
          ].join(", ")
        }`,
      );
    }
    const entry = this.chatTemplates.get(key) ?? { source: nameOrSource!, origin: "the chatTemplate option" };
    let template = this.#compiled.get(key);
    if (!template) {
      try {
        template = new JinjaTemplate(entry.source);
      } catch (e) {
        throw new Error(`chat template of ${entry.origin} does not parse: ${(e as Error).message}`, { cause: e });
      }
      this.#compiled.set(key, template);
    }
    return { template, origin: entry.origin };
  }
}

/** Appends the continuation tag to the final message's text (its last text part), as transformers does. */
function tagFinalMessage(messages: readonly ChatMessage[], tag: string): [ChatMessage[], string] {
  const chat = structuredClone(messages) as ChatMessage[];
  const last = chat[chat.length - 1];
  if (typeof last.content === "string") {
    const final = last.content;
    last.content = final + tag;
    return [chat, final];
  }
  if (Array.isArray(last.content)) {
    for (let i = last.content.length - 1; i >= 0; i--) {
      const part = last.content[i] as Json;
      if (typeof part.text === "string") {
        const final = part.text;
        part.text = final + tag;
        return [chat, final];
      }
    }
  }
  throw new Error("applyChatTemplate: continueFinalMessage is set but the final message has no text to continue");
}

/** A special token of `tokenizer_config.json`: a string, an AddedToken object `{content, ...}`, or null. */
function tokenContent(value: unknown, what: string): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === "string") return value;
  if (typeof value === "object" && typeof (value as Json).content === "string") {
    return (value as Json).content as string;
  }
  throw new Error(`${what}: expected a string or {content: string}, got ${JSON.stringify(value)}`);
}

async function readJson(path: string): Promise<Json> {
  const text = await Deno.readTextFile(path);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${path} is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
}

async function readTextIfExists(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/**
 * Chat templates of a folder, as transformers finds them: `tokenizer_config.json` "chat_template" (a string, or a
 * list of `{name, template}`), replaced by `chat_template.jinja` (default) and `additional_chat_templates/*.jinja`
 * when the folder has any of those.
 */
async function loadTemplates(dir: string, config: Json): Promise<Map<string, { source: string; origin: string }>> {
  const templates = new Map<string, { source: string; origin: string }>();
  const where = `${dir}/tokenizer_config.json "chat_template"`;
  const ct = config.chat_template;
  if (typeof ct === "string") templates.set("default", { source: ct, origin: where });
  else if (Array.isArray(ct)) {
    for (const [i, t] of ct.entries()) {
      if (typeof t?.name !== "string" || typeof t?.template !== "string") {
        throw new Error(`${where}[${i}]: expected {name: string, template: string}, got ${JSON.stringify(t)}`);
      }
      templates.set(t.name, { source: t.template, origin: `${where} "${t.name}"` });
    }
  } else if (ct !== undefined && ct !== null) {
    throw new Error(`${where}: expected a string or a list of {name, template}, got ${typeof ct}`);
  }
  // Template files, when present, replace every template of tokenizer_config.json.
  const files = new Map<string, { source: string; origin: string }>();
  const file = `${dir}/chat_template.jinja`;
  const source = await readTextIfExists(file);
  if (source !== undefined) files.set("default", { source, origin: file });
  const extraDir = `${dir}/additional_chat_templates`;
  try {
    for await (const entry of Deno.readDir(extraDir)) {
      if (!entry.isFile || !entry.name.endsWith(".jinja")) continue;
      const path = `${extraDir}/${entry.name}`;
      files.set(entry.name.slice(0, -".jinja".length), { source: await Deno.readTextFile(path), origin: path });
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  if (files.size > 0) return files;
  return templates;
}

/**
 * Loads the tokenizer of a Hugging Face model folder. `tokenizer.json` is required; `tokenizer_config.json` and
 * chat template files are optional.
 */
export async function loadTokenizer(dir: string): Promise<Tokenizer> {
  dir = dir.replace(/\/+$/, "") || "/";
  const path = `${dir}/tokenizer.json`;
  let tokenizerJson: Json;
  try {
    tokenizerJson = await readJson(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new Error(`folder ${dir} has no tokenizer.json (expected ${path})`, { cause: e });
    }
    throw e;
  }
  const configPath = `${dir}/tokenizer_config.json`;
  const configText = await readTextIfExists(configPath);
  const config = configText === undefined ? {} : await readJson(configPath);
  return new Tokenizer(dir, tokenizerJson, config, await loadTemplates(dir, config));
}
