/**
 * Chat templates as LLaMA-Factory applies them (`data/template.py`): a template turns a conversation into token ids
 * per message, and {@link ChatTemplate.encodeMultiturn} pairs them as (prompt ids, response ids) per turn.
 *
 * The rules that matter (see `shared/reference/llamafactory-data-rules.md` §2, §9, §11):
 * - every slot element is tokenized on its own with `add_special_tokens=False`; BOS/EOS come only from slots;
 * - message 0 gets the prefix, then the system slot when `system || tools` (an empty system falls back to the
 *   template default, tool text is appended without separator, `tools: "[]"` still emits the slot);
 * - `llama2`-kind templates fuse the system text into the first user message; `reasoning` templates add the empty
 *   thought `<think>\n\n</think>\n\n` to the response (trained) or to the prompt (`enable_thinking: false`);
 * - the tokenizer is "fixed" first: `replace_eos` makes the first stop word the eos, missing stop words become new
 *   tokens, a missing pad becomes the eos ({@link TemplateTokenizer}).
 *
 * @example
 * ```ts
 * const tpl = getTemplate(await loadTokenizer(dir), { template: "llama3" });
 * const [[prompt, answer]] = tpl.encodeMultiturn([{ role: "user", content: "Hi" }, { role: "assistant", content: "Yo" }]);
 * ```
 * @module
 */
import type { ChatMessage, SpecialToken, Tokenizer } from "./tokenizer.ts";
import { formatFunction, formatTools } from "./template_tools.ts";
import { makeTemplate, type Slot, TEMPLATES, type TemplateSpec } from "./templates_registry.ts";
import "./templates_registry_more.ts";
import "./templates_registry_mm.ts";
import "./templates_registry_latest.ts";
import "./template_tools_more.ts";
import "./template_tools_latest.ts";

export { BOS, EOS, registerTemplate, type Slot, TEMPLATES, type TemplateSpec } from "./templates_registry.ts";

/** A message as templates see it (LF roles: user, assistant, function, observation). */
export interface TemplateMessage {
  role: string;
  content: string;
}

/**
 * A tokenizer after LF's `fix_special_tokens`: eos possibly replaced, stop words added (new ids after the vocabulary
 * when missing), pad defaulting to eos. Wraps a shared {@link Tokenizer} without changing it.
 */
export class TemplateTokenizer {
  bos: SpecialToken | null;
  eos: SpecialToken | null;
  pad: SpecialToken | null;
  readonly unk: SpecialToken | null;
  /** Tokens that must be split out of text although `base` does not treat them as special added tokens. */
  readonly #extra = new Map<string, number>();
  readonly #extraById = new Map<number, string>();
  readonly #special: Map<string, number>;
  #size: number;

  constructor(readonly base: Tokenizer) {
    ({ bos: this.bos, eos: this.eos, pad: this.pad, unk: this.unk } = base.specialTokens);
    this.#special = new Map(base.specialTokens.all.map((t) => [t.content, t.id]));
    this.#size = base.vocabSize;
  }

  /** `len(tokenizer)`, counting tokens added by the fixes. */
  get vocabSize(): number {
    return this.#size;
  }

  /** One past the largest id a token has, counting tokens added by the fixes (`GenerateOptions.vocabLimit`). */
  get idLimit(): number {
    return Math.max(this.base.idLimit, this.#size);
  }

  /** Tokens added or promoted to special by the fixes, by content. */
  get addedTokens(): ReadonlyMap<string, number> {
    return this.#extra;
  }

  /** `add_special_tokens` for one token: its id, adding it after the vocabulary when it is not a token yet. */
  addSpecialToken(content: string): { id: number; added: boolean } {
    const known = this.#special.get(content) ?? this.#extra.get(content);
    if (known !== undefined) return { id: known, added: false };
    const existing = this.base.tokenToId(content);
    const id = existing ?? this.#size++;
    this.#extra.set(content, id);
    this.#extraById.set(id, content);
    return { id, added: existing === undefined };
  }

  /** `convert_tokens_to_ids`: the id of a token string, else the unk id, else null. */
  tokenToId(content: string): number | null {
    return this.#special.get(content) ?? this.#extra.get(content) ?? this.base.tokenToId(content) ?? this.unk?.id ??
      null;
  }

  /** The token string of an id (including added ones). */
  idToToken(id: number): string | undefined {
    return this.#extraById.get(id) ?? this.base.idToToken(id);
  }

  /** `tokenizer.encode(text, add_special_tokens=False)`, special-token text parsed as the token. */
  encode(text: string): number[] {
    if (text.length === 0) return [];
    if (this.#extra.size === 0) return this.base.encode(text, { addSpecialTokens: false });
    const ids: number[] = [];
    let rest = text;
    while (rest.length > 0) {
      let at = -1;
      let tok = "";
      for (const t of this.#extra.keys()) {
        const i = rest.indexOf(t);
        if (i >= 0 && (at < 0 || i < at || (i === at && t.length > tok.length))) [at, tok] = [i, t];
      }
      if (at < 0) {
        ids.push(...this.base.encode(rest, { addSpecialTokens: false }));
        break;
      }
      if (at > 0) ids.push(...this.base.encode(rest.slice(0, at), { addSpecialTokens: false }));
      ids.push(this.#extra.get(tok)!);
      rest = rest.slice(at + tok.length);
    }
    return ids;
  }

  /** Text of ids (special tokens kept), including tokens added by the fixes. */
  decode(ids: readonly number[]): string {
    if (this.#extraById.size === 0) return this.base.decode(ids);
    let out = "";
    let run: number[] = [];
    for (const id of ids) {
      const t = this.#extraById.get(id);
      if (t !== undefined && this.base.idToToken(id) === undefined) {
        out += this.base.decode(run) + t;
        run = [];
      } else run.push(id);
    }
    return out + this.base.decode(run);
  }
}

/** Options of {@link getTemplate}: LF's data arguments that shape the template. */
export interface TemplateOptions {
  /** A registered name; undefined/null parses the tokenizer's own chat template (or `empty` without one). */
  template?: string | null;
  /** Overrides the tool format of the function and tool formatters (`tool_format`). */
  toolFormat?: string | null;
  /** Overrides the template's default system prompt (`default_system`). */
  defaultSystem?: string | null;
  /** `enable_thinking` for reasoning templates (default true). */
  enableThinking?: boolean | null;
  /** `preserve_thinking` for reasoning templates (default false). */
  preserveThinking?: boolean | null;
  /** `train_on_prompt`, only to reject it with `efficient_eos` templates as LF does. */
  trainOnPrompt?: boolean;
  /** The date the llama3 tool prompt embeds (LF uses `datetime.now()`). */
  now?: Date;
}

const replaceFirst = (s: string, pattern: string, value: string): string => {
  const i = s.indexOf(pattern);
  return i < 0 ? s : s.slice(0, i) + value + s.slice(i + pattern.length);
};

/** `StringFormatter.apply`: replaces the first `{{name}}` of every string slot, for each argument in order. */
export function applySlots(slots: readonly Slot[], args: Record<string, string>): Slot[] {
  return slots.map((slot) => {
    if (typeof slot !== "string") return slot;
    for (const [name, value] of Object.entries(args)) slot = replaceFirst(slot, `{{${name}}}`, value);
    return slot;
  });
}

/** A template bound to its fixed tokenizer. Create with {@link getTemplate}. */
export class ChatTemplate {
  readonly #now: Date;
  #thoughtIds?: number[];

  constructor(
    readonly spec: TemplateSpec,
    readonly tokenizer: TemplateTokenizer,
    /** The requested template name (null when parsed from the tokenizer); pre-training checks for "llama3". */
    readonly requestedName: string | null,
    now?: Date,
  ) {
    this.#now = now ?? new Date();
  }

  /** The ids of the fixed tokenizer's special tokens. */
  get eosId(): number {
    return this.tokenizer.eos!.id;
  }
  get padId(): number {
    return this.tokenizer.pad!.id;
  }

  /** `get_stop_token_ids`: eos plus every stop word, ascending. */
  stopTokenIds(): number[] {
    const ids = new Set([this.eosId]);
    for (const w of this.spec.stopWords) {
      const id = this.tokenizer.tokenToId(w);
      if (id !== null) ids.add(id);
    }
    return [...ids].sort((a, b) => a - b);
  }

  /** The slot elements of every message (LF's `_render`), before tokenization. */
  render(messages: readonly TemplateMessage[], system?: string | null, tools?: string | null): Slot[][] {
    const s = this.spec;
    const sys = system || s.defaultSystem;
    const toolText = () => {
      if (!tools) return "";
      const text = s.toolsSlot !== null
        ? replaceFirst(s.toolsSlot, "{{content}}", tools)
        : formatTools(s.toolFormat, tools, this.#now);
      return s.toolTextLstripWithoutSystem && !sys ? text.replace(/^\n+/, "") : text;
    };
    const systemText = () => sys + toolText();
    return messages.map((m, i) => {
      const elements: Slot[] = [];
      let fused = "";
      if (i === 0) {
        elements.push(...s.prefix);
        if (sys || tools) {
          const formatted = applySlots(s.system, { content: systemText() });
          if (s.kind === "llama2") {
            if (typeof formatted[0] !== "string") throw new Error(`template ${s.name}: system slot must be text`);
            fused = formatted[0];
          } else elements.push(...formatted);
        }
      }
      switch (m.role) {
        case "user":
          elements.push(
            ...(s.kind === "llama2"
              ? applySlots(s.user, { content: fused + m.content })
              : applySlots(s.user, { content: m.content, idx: String(Math.floor(i / 2)) })),
          );
          break;
        case "assistant":
          elements.push(...applySlots(s.assistant, { content: m.content }));
          break;
        case "observation":
          elements.push(...applySlots(s.observation, { content: m.content }));
          break;
        case "function": {
          const text = s.kind === "llama2"
            ? formatFunction(s.function.toolFormat, m.content)
            : formatFunction(s.function.toolFormat, m.content, s.thoughtWords, s.toolCallWords);
          elements.push(...applySlots(s.function.slots, { content: text }));
          break;
        }
        default:
          throw new Error(`Unexpected role: ${m.role} (expected user, assistant, function or observation)`);
      }
      return elements;
    });
  }

  /** `_convert_elements_to_ids`. */
  slotsToIds(elements: readonly Slot[]): number[] {
    const ids: number[] = [];
    for (const e of elements) {
      if (typeof e === "string") {
        if (e.length !== 0) ids.push(...this.tokenizer.encode(e));
      } else if ("token" in e) {
        const id = this.tokenizer.tokenToId(e.token);
        if (id === null) throw new Error(`template ${this.spec.name}: token ${e.token} is not in the vocabulary`);
        ids.push(id);
      } else {
        const t = e.special === "bos_token" ? this.tokenizer.bos : this.tokenizer.eos;
        if (t) ids.push(t.id);
      }
    }
    return ids;
  }

  /** Token ids per message (LF's `_encode`). */
  encodeMessages(messages: readonly TemplateMessage[], system?: string | null, tools?: string | null): number[][] {
    return this.render(messages, system, tools).map((e) => this.slotsToIds(e));
  }

  /** (prompt, response): all messages but the last, and the last (LF's `encode_oneturn`). */
  encodeOneturn(
    messages: readonly TemplateMessage[],
    system?: string | null,
    tools?: string | null,
  ): [number[], number[]] {
    let msgs = messages;
    const s = this.spec;
    if (s.kind === "reasoning") {
      msgs = messages.map((m) => ({ ...m }));
      if (!s.preserveThinking) {
        for (let i = 1; i < msgs.length - 2; i += 2) msgs[i].content = this.removeThought(msgs[i].content);
      }
      if (s.enableThinking === false) {
        msgs[msgs.length - 1].content = this.removeThought(msgs[msgs.length - 1].content);
      }
    }
    const encoded = this.encodeMessages(msgs, system, tools);
    const prompt = encoded.slice(0, -1).flat();
    let response = encoded[encoded.length - 1];
    if (s.kind === "reasoning" && !this.#hasThought(msgs[msgs.length - 1].content)) {
      if (!s.enableThinking) prompt.push(...this.thoughtIds());
      else response = [...this.thoughtIds(), ...response];
    }
    return [prompt, response];
  }

  /**
   * (prompt ids, response ids) per turn (LF's `encode_multiturn`). `discardingHistoryCot` (set by `mask_history`)
   * removes thoughts of all but the last assistant turn and adds the empty thought to the last turn only.
   */
  encodeMultiturn(
    messages: readonly TemplateMessage[],
    system?: string | null,
    tools?: string | null,
    discardingHistoryCot = false,
  ): [number[], number[]][] {
    const s = this.spec;
    let msgs = messages;
    if (s.kind === "reasoning") {
      msgs = messages.map((m) => ({ ...m }));
      if (s.enableThinking === false) {
        for (let i = 1; i < msgs.length; i += 2) msgs[i].content = this.removeThought(msgs[i].content);
      }
      if (discardingHistoryCot) {
        for (let i = 1; i < msgs.length - 2; i += 2) msgs[i].content = this.removeThought(msgs[i].content);
      }
    }
    const encoded = this.encodeMessages(msgs, system, tools);
    if (s.kind === "reasoning") {
      const turns = discardingHistoryCot
        ? [msgs.length - 2]
        : Array.from({ length: msgs.length >> 1 }, (_, k) => 2 * k);
      for (const i of turns) {
        if (this.#hasThought(msgs[i + 1].content)) continue;
        if (!s.enableThinking) encoded[i] = [...encoded[i], ...this.thoughtIds()];
        else encoded[i + 1] = [...this.thoughtIds(), ...encoded[i + 1]];
      }
    }
    const pairs: [number[], number[]][] = [];
    for (let i = 0; i < encoded.length; i += 2) pairs.push([encoded[i], encoded[i + 1] ?? []]);
    return pairs;
  }

  /** Ids of the empty thought (`add_thought()`), e.g. `<think>\n\n</think>\n\n`. */
  thoughtIds(): number[] {
    const [a, b] = this.spec.thoughtWords;
    return this.#thoughtIds ??= this.tokenizer.encode(this.spec.emptyThoughtCloseOnly ? b : a + b);
  }

  /** `remove_thought`: drops every thought block, then leading newlines. */
  removeThought(content: string): string {
    const esc = (x: string) => x.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    const [a, b] = this.spec.thoughtWords;
    return content.replace(new RegExp(`${esc(a)}[\\s\\S]*?${esc(b)}`, "g"), "").replace(/^\n+/, "");
  }

  #hasThought(content: string): boolean {
    return content.includes(this.spec.thoughtWords[0].trim()) || content.includes(this.spec.thoughtWords[1].trim());
  }
}

/** LF's `parse_template`: derives slots from the tokenizer's Jinja chat template by rendering probes. */
export function parseTemplate(tok: Tokenizer): TemplateSpec {
  const findDiff = (short: string, long: string): string => {
    let i = 0, j = 0, diff = "";
    while (i < short.length && j < long.length) {
      if (short[i] === long[j]) [i, j] = [i + 1, j + 1];
      else diff += long[j++];
    }
    return diff;
  };
  const prefix = tok.decode(tok.encode(""));
  const render = (messages: ChatMessage[], addGenerationPrompt: boolean): string =>
    tok.applyChatTemplate(messages, { addGenerationPrompt, tokenize: false }).slice(prefix.length);
  const C = "{{content}}";
  const systemSlot = render([{ role: "system", content: C }], false);
  const userSlotEmptySystem = render([{ role: "system", content: "" }, { role: "user", content: C }], true);
  let userSlot = render([{ role: "user", content: C }], true);
  let assistantSlot = render([{ role: "user", content: C }, { role: "assistant", content: C }], false)
    .slice(userSlot.length);
  const reasoning = assistantSlot.includes("<think>");
  assistantSlot = assistantSlot.replaceAll("<think>", "").replaceAll("</think>", "").replace(/^\n+/, "");
  let defaultSystem = "";
  if (userSlot.length > userSlotEmptySystem.length) {
    defaultSystem = findDiff(userSlotEmptySystem, userSlot);
    userSlot = userSlot.slice(replaceFirst(systemSlot, C, defaultSystem).length);
  }
  return makeTemplate(`jinja:${tok.dir}`, {
    user: [userSlot],
    assistant: [assistantSlot],
    system: [systemSlot],
    function: { slots: [assistantSlot], toolFormat: "default" },
    observation: [userSlot],
    prefix: prefix ? [prefix] : [],
    defaultSystem,
    kind: reasoning ? "reasoning" : "plain",
  });
}

/**
 * LF's `get_template_and_fix_tokenizer`: picks the template (a registered name, else the tokenizer's parsed Jinja
 * template, else `empty`), applies the data-argument overrides and fixes a copy of the tokenizer's special tokens.
 */
export function getTemplate(tok: Tokenizer, opts: TemplateOptions = {}): ChatTemplate {
  let spec: TemplateSpec;
  if (opts.template === undefined || opts.template === null) {
    spec = tok.chatTemplate !== undefined ? parseTemplate(tok) : TEMPLATES.get("empty")!;
  } else {
    const t = TEMPLATES.get(opts.template);
    if (!t) {
      throw new Error(`Template ${opts.template} does not exist (known: ${[...TEMPLATES.keys()].join(", ")}).`);
    }
    spec = t;
  }
  if (opts.trainOnPrompt && spec.efficientEos) throw new Error("Current template does not support `train_on_prompt`.");
  const patch: { -readonly [K in keyof TemplateSpec]?: TemplateSpec[K] } = {};
  if (opts.toolFormat) {
    const slots: Slot[] = spec.efficientEos ? ["{{content}}"] : ["{{content}}", { special: "eos_token" }];
    patch.function = { slots, toolFormat: opts.toolFormat };
    patch.toolFormat = opts.toolFormat;
    patch.toolsSlot = null; // LF replaces format_tools with a ToolFormatter
  }
  if (opts.defaultSystem !== undefined && opts.defaultSystem !== null) patch.defaultSystem = opts.defaultSystem;
  if (spec.kind === "reasoning") {
    patch.enableThinking = opts.enableThinking === undefined ? true : opts.enableThinking;
    patch.preserveThinking = opts.preserveThinking ?? false;
  }
  spec = { ...spec, ...patch };

  const fixed = new TemplateTokenizer(tok);
  let stopWords = [...spec.stopWords];
  const setEos = (content: string) => {
    if (fixed.eos?.content === content) return;
    fixed.eos = { content, id: fixed.addSpecialToken(content).id };
  };
  if (spec.replaceEos) {
    if (stopWords.length === 0) throw new Error("Stop words are required to replace the EOS token.");
    setEos(stopWords[0]);
    stopWords = stopWords.slice(1);
  }
  if (fixed.eos === null) setEos("<|endoftext|>");
  if (fixed.pad === null) fixed.pad = fixed.eos;
  for (const w of stopWords) fixed.addSpecialToken(w);
  return new ChatTemplate(spec, fixed, opts.template ?? null, opts.now);
}
