/**
 * Chat with a loaded model through a chat template, as LLaMA-Factory's chat engine does: the conversation is
 * rendered with the template (`encode_oneturn` with an empty answer), generation stops at the template's stop
 * token ids (eos and stop words) or at a stop string, and the answer is decoded without special tokens. Ids past
 * the tokenizer (padded embedding rows) are never generated (`vocabLimit`). Sampling
 * settings default to LF's `GeneratingArguments` and follow its per-request rules (`_process_args`): several
 * answers force sampling (temperature 0 becomes 1), and temperature 0 means greedy.
 *
 * Calls on one engine share one continuous batch (engine/nn/batcher.ts): a call made while others generate joins
 * them at the next decode step, up to `maxBatch` rows; up to `maxQueue` more wait, and a call beyond those throws
 * {@link BatcherFullError}. Each answer is what the call alone would give (greedy: token for token).
 *
 * @example
 * ```ts
 * const chat = await ChatEngine.load("fixtures/tiny/model", { template: "qwen" });
 * const prompt = chat.encode([{ role: "user", content: "What is Whetstone?" }]);
 * const deltas: string[] = [];
 * const r = await chat.complete(prompt, { maxNewTokens: 32, doSample: false }, (delta) => deltas.push(delta));
 * if (deltas.join("") !== r.text) throw new Error("the streamed text is the answer");
 * console.log(r.text, r.finishReason, r.completionTokens);
 * ```
 * @module
 */
import type { LfRopeScaling } from "../nn/rope_lf.ts";
import { GENERATING_DEFAULTS } from "../config/views.ts";
import { loadTokenizer } from "../data/tokenizer.ts";
import { type ChatTemplate, getTemplate, type TemplateMessage } from "../data/template.ts";
import { type ExtractedCall, extractTool } from "../data/tool_extract.ts";
import type { ExecutorKind } from "../exec/pick.ts";
import { resolveModel } from "../io/hub.ts";
import type { GenerateOptions } from "../nn/generate.ts";
import { Batcher, BatcherFullError, type BatcherLimits, type BatcherStats } from "../nn/batcher.ts";
import { loadModel, type Model } from "../nn/model.ts";
import { decodeIds } from "../data/decode_ids.ts";

/** Generation settings of one chat call (LF's GeneratingArguments, camel-cased; defaults: the key table's). */
export interface ChatOptions {
  /** Default 1024. */
  maxNewTokens?: number;
  /** Default true. */
  doSample?: boolean;
  /** Default 0.95; 0 means greedy. */
  temperature?: number;
  /** Default 0.7. */
  topP?: number;
  /** Default 50. */
  topK?: number;
  /** Default 1 (off); must be > 0. */
  repetitionPenalty?: number;
  /** Seed of the sampling RNG; default a random one. */
  seed?: number;
  /** Strings that end the answer (not included in it). */
  stop?: string[];
  /** Stops generating when aborted (the answer so far is returned, finish reason "stop"). */
  signal?: AbortSignal;
}

/** One answer. */
export interface ChatResult {
  text: string;
  /** Generated token ids (the stop id that ended generation included). */
  ids: number[];
  promptTokens: number;
  /** Generated tokens, the stop id included (as LF counts them). */
  completionTokens: number;
  /** "stop": a stop id or stop string ended the answer; "length": max_new_tokens did. */
  finishReason: "stop" | "length";
}

/** LF's per-request rules over its GeneratingArguments defaults; `n` answers at once. */
export function resolveChatOptions(o: ChatOptions, n = 1): GenerateOptions & { maxNewTokens: number } {
  const d = GENERATING_DEFAULTS;
  let doSample = o.doSample ?? d.doSample, temperature = o.temperature ?? d.temperature;
  if (n > 1) {
    doSample = true;
    temperature ||= 1;
  }
  if (!temperature) doSample = false;
  const repetitionPenalty = o.repetitionPenalty ?? d.repetitionPenalty;
  if (!(repetitionPenalty > 0)) throw new RangeError(`repetition_penalty must be > 0, got ${repetitionPenalty}`);
  return {
    maxNewTokens: o.maxNewTokens ?? d.maxNewTokens,
    doSample,
    temperature: doSample ? temperature : 1,
    topP: doSample ? (o.topP ?? d.topP) : 1,
    topK: o.topK ?? d.topK,
    repetitionPenalty,
    seed: o.seed ?? Math.floor(Math.random() * 2 ** 31),
  };
}

/** Index of the first stop string in `text`, or -1. */
function firstStop(text: string, stops: readonly string[]): number {
  let at = -1;
  for (const s of stops) {
    const i = text.indexOf(s);
    if (i >= 0 && (at < 0 || i < at)) at = i;
  }
  return at;
}

/** Length of the longest end of `text` that starts a stop string (held back while streaming). */
function holdback(text: string, stops: readonly string[]): number {
  let n = 0;
  for (const s of stops) {
    for (let k = Math.min(s.length - 1, text.length); k > n; k--) {
      if (text.endsWith(s.slice(0, k))) {
        n = k;
        break;
      }
    }
  }
  return n;
}

/** A model and its chat template, answering conversations. */
export class ChatEngine {
  readonly #batcher: Batcher;

  constructor(readonly model: Model, readonly template: ChatTemplate, limits: Partial<BatcherLimits> = {}) {
    this.#batcher = new Batcher(model, limits);
  }

  /** Sets how many answers generate at once (`maxBatch`) and how many more may wait (`maxQueue`). */
  setBatchLimits(limits: Partial<BatcherLimits>): void {
    this.#batcher.setLimits(limits);
  }

  /** Throws {@link BatcherFullError} unless `n` more answers can start or wait now. */
  checkRoom(n = 1): void {
    if (!this.#batcher.hasRoom(n)) {
      throw new BatcherFullError(this.#batcher.limits.maxBatch, this.#batcher.limits.maxQueue);
    }
  }

  /** The batch's limits and what it has done (rows running, waiting, most rows in one step). */
  get batchStats(): BatcherStats & BatcherLimits {
    return { ...this.#batcher.stats, ...this.#batcher.limits };
  }

  /**
   * Loads a model folder (or hub id) with an optional adapter and its template; `ropeScaling` is LLaMA-Factory's
   * `rope_scaling` as it applies it for inference (no model_max_length: factor 2).
   */
  static async load(
    pathOrId: string,
    opts: {
      adapter?: string;
      template?: string | null;
      defaultSystem?: string | null;
      executor?: ExecutorKind;
      ropeScaling?: LfRopeScaling | null;
    } = {},
  ): Promise<ChatEngine> {
    const dir = await resolveModel(pathOrId);
    const template = getTemplate(await loadTokenizer(dir), {
      template: opts.template ?? null,
      defaultSystem: opts.defaultSystem ?? null,
    });
    const model = await loadModel(dir, {
      adapter: opts.adapter,
      executor: opts.executor,
      ropeScaling: opts.ropeScaling ? { type: opts.ropeScaling } : undefined,
    });
    return new ChatEngine(model, template);
  }

  /** The prompt ids of a conversation (user/assistant turns ending with a user or tool turn) and its answer. */
  encode(messages: readonly TemplateMessage[], system?: string | null, tools?: string | null): number[] {
    return this.template.encodeOneturn([...messages, { role: "assistant", content: "" }], system, tools)[0];
  }

  /** `template.extract_tool`: the tool calls in an answer per the template's tool format, else the answer. */
  extractTool(text: string): string | ExtractedCall[] {
    return extractTool(this.template.spec.toolFormat, text);
  }

  #decode(ids: readonly number[], stopIds: ReadonlySet<number>): string {
    return decodeIds(this.template, ids.filter((i) => !stopIds.has(i)), true);
  }

  /** One answer after `prompt`; `onDelta` gets the text as it is generated (stop strings never reach it). */
  complete(prompt: number[], opts: ChatOptions = {}, onDelta?: (text: string) => void): Promise<ChatResult> {
    return this.#complete(prompt, resolveChatOptions(opts), opts, onDelta);
  }

  async #complete(
    prompt: number[],
    g: GenerateOptions,
    opts: ChatOptions,
    onDelta?: (text: string) => void,
  ): Promise<ChatResult> {
    const stopIds = new Set(this.model.stopIds(this.template.stopTokenIds()));
    const vocabLimit = this.template.tokenizer.idLimit;
    const stops = (opts.stop ?? []).filter((s) => s.length > 0);
    const ids: number[] = [];
    let text = "", shown = 0, finishReason: ChatResult["finishReason"] = "length";
    const tokens = this.#batcher.stream(prompt, { ...g, stop: [...stopIds], vocabLimit }, opts.signal);
    for await (const t of tokens) {
      ids.push(t);
      if (stopIds.has(t)) {
        finishReason = "stop";
        break;
      }
      text = this.#decode(ids, stopIds);
      const hit = firstStop(text, stops);
      if (hit >= 0) {
        text = text.slice(0, hit);
        finishReason = "stop";
        break;
      }
      if (opts.signal?.aborted) {
        finishReason = "stop";
        break;
      }
      if (!onDelta || text.endsWith("\uFFFD")) continue; // an incomplete UTF-8 sequence: wait for the next token
      const safe = text.length - holdback(text, stops);
      if (safe > shown) {
        onDelta(text.slice(shown, safe));
        shown = safe;
      }
    }
    if (onDelta && text.length > shown) onDelta(text.slice(shown));
    return { text, ids, promptTokens: prompt.length, completionTokens: ids.length, finishReason };
  }

  /** `n` sampled answers after `prompt`, as `n` rows of the batch (answer i samples with seed + i). */
  completeMany(prompt: number[], n: number, opts: ChatOptions = {}): Promise<ChatResult[]> {
    if (n === 1) return this.complete(prompt, opts).then((r) => [r]);
    const g = resolveChatOptions(opts, n);
    // One answer failing (e.g. the batch full) ends the others: they are freed, not left generating.
    const ac = new AbortController();
    const signal = opts.signal ? AbortSignal.any([opts.signal, ac.signal]) : ac.signal;
    return Promise.all(
      Array.from(
        { length: n },
        (_, i) =>
          this.#complete(prompt, { ...g, seed: g.seed! + i }, { ...opts, signal }).catch((e) => {
            ac.abort();
            throw e;
          }),
      ),
    );
  }
}
