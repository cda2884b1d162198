/**
 * Autoregressive generation on the engine with a KV cache on the executor, for one prompt or a batch: one
 * prefill graph over the right-padded, bucketed prompts, then one decode-step graph per token for all rows at
 * once (planned once per batch and cache bucket, one submit per token). Sampling runs on the host from the
 * fetched last-token logits, with transformers' logits processors in its order: repetition penalty, then
 * temperature, top-k, top-p. Rows past the tokenizer (`vocabLimit`: models pad their embedding past it, e.g.
 * Qwen2.5's 151,936 rows for 151,665 tokens) are masked to -inf first, so no id the tokenizer cannot decode is chosen.
 *
 * Generation calls on one model must not overlap when they use the same batch and cache bucket (they would
 * share its KV cache): such a call throws. Await each call (or iterate each stream to its end, or break
 * out of it) before the next, or batch the prompts with {@link generateBatch}.
 *
 * @example
 * ```ts
 * import { loadModel } from "./model.ts";
 * const model = await loadModel("fixtures/models/llama");
 * const ids = await generate(model, [1, 5, 9], { maxNewTokens: 10 }); // greedy
 * const rows = await generateBatch(model, [[1, 5, 9], [1, 7]], { maxNewTokens: 10, stop: [2] });
 * for await (const id of generateStream(model, [1, 5, 9], { maxNewTokens: 10 })) console.log(id);
 * ```
 * @module
 */
import { mulberry32 } from "../util/rng.ts";
import { Graph } from "../graph/mod.ts";
import type { CompiledGraph } from "../exec/executor.ts";
import { bucketLength, type ModelAdapter, type ModelCore } from "./model_core.ts";
import {
  batchBucket,
  cacheBucket,
  cacheName,
  cacheShape,
  decodeMask,
  layerWindows,
  traceCached,
} from "./kv_decoder.ts";
import type { DecoderConfig } from "./config.ts";

/** Options of {@link generate}. */
export interface GenerateOptions {
  /** How many tokens to generate at most. */
  maxNewTokens: number;
  /** Sample (true) or take the argmax (false, default). */
  doSample?: boolean;
  /** Divides the logits when sampling (default 1). */
  temperature?: number;
  /** Nucleus sampling: keep the smallest set of tokens whose probability reaches topP (default 1 = off). */
  topP?: number;
  /** Keep the topK most likely tokens when sampling (default 0 = off). */
  topK?: number;
  /** transformers' repetition penalty over prompt and generated ids (default 1 = off). */
  repetitionPenalty?: number;
  /**
   * Ids at or past this are never chosen: their logits are -inf before every processor (transformers'
   * `suppress_tokens`), so greedy, top-k, top-p and the draw all see only the tokenizer's ids. Pass the
   * tokenizer's id limit (`TemplateTokenizer.idLimit`) whenever the model's vocabulary may be larger than its
   * tokenizer's (released models pad theirs: Qwen2.5 has 151,936 rows for 151,665 tokens). Default: every row.
   */
  vocabLimit?: number;
  /** Token ids that end generation (included in the result, as transformers does). */
  stop?: number[];
  /**
   * A one-off generation (e.g. the train verb's sample answer): its graphs are compiled at its own sizes only, without
   * the probes that let one ONNX Runtime session serve every size (~1 s for a 135M model's prefill and decode).
   */
  oneShot?: boolean;
  /** Seed of the sampling RNG (default 0); in a batch, row i samples with its own RNG seeded `seed + i`. */
  seed?: number;
  /** Called with each new token id as soon as it is chosen, and its row (prompt index; 0 unbatched). */
  onToken?: (id: number, row: number) => void;
  /** Called with the raw logits [V] each token is chosen from (before any processing), and its row. */
  onLogits?: (logits: Float32Array, row: number) => void;
}

interface Graphs {
  adapter?: ModelAdapter;
  compiled: Map<string, Promise<CompiledGraph>>;
  /** Cache keys (batch × length buckets) a generation is using now. */
  busy: Set<string>;
}
const GRAPHS = new WeakMap<ModelCore, Graphs>();

function graphs(model: ModelCore): Graphs {
  let gs = GRAPHS.get(model);
  if (!gs || gs.adapter !== model.adapter) {
    GRAPHS.set(model, gs = { adapter: model.adapter, compiled: new Map(), busy: gs?.busy ?? new Set() });
  }
  return gs;
}

/**
 * The prefill (L = bucketed prompt length) or decode-step (L = 1, `decode`) graph of B rows against the caches
 * `<prefix><ns>kv<B>x<C>.*`, compiled once per model and key. `ns` keeps another user's caches apart (the
 * continuous batcher's are "cb."); its rows are separate requests, so there each row gets the "dynamic" / "longrope"
 * RoPE frequencies of its own length (rope_feed.ts), where a batch of `generateBatch` shares its longest row's, as
 * transformers' batched `generate` does.
 */
export function compiled(
  model: ModelCore,
  B: number,
  C: number,
  L: number,
  decode: boolean,
  ns = "",
  oneShot = false,
): Promise<CompiledGraph> {
  const gs = graphs(model), key = `${ns}${decode ? "decode" : "prefill"}:${B}:${C}:${L}${oneShot ? ":once" : ""}`;
  let p = gs.compiled.get(key);
  if (!p) {
    const trace = (s: Record<string, number>) => {
      const g = new Graph();
      const shape = cacheShape(model.config, s.B, s.C);
      const cache = (layer: number, kind: "k" | "v") =>
        g.param(model.prefix + ns + cacheName(s.B, s.C, layer, kind), shape, "f32");
      const mode = { B: s.B, C: s.C, L: s.L ?? 1, decode, ropePerRow: ns !== "" };
      traceCached(g, model.config, model.weights(g), cache, mode);
      return g;
    };
    // One session for every batch, cache and prompt bucket on executors that can (ONNX Runtime: onnx/symbolic.ts).
    const sizes: Record<string, number> = decode ? { B, C } : { B, L, C };
    p = model.executor.compile(trace(sizes), oneShot ? {} : { symbolic: { sizes, trace } });
    p.catch(() => gs.compiled.delete(key)); // a failed plan is not cached
    gs.compiled.set(key, p);
  }
  return p;
}

/** A small seeded RNG (mulberry32) giving floats in [0, 1). */
export const seededRandom = mulberry32;

/**
 * Chooses the next token from `logits` [V] as transformers does: ids at or past `vocabLimit` suppressed, then
 * repetition penalty over `seen`, then (when sampling) temperature, top-k, top-p and a draw from the softmax;
 * greedy takes the first argmax.
 */
export function chooseToken(
  logits: ArrayLike<number>,
  seen: readonly number[],
  opts: Omit<GenerateOptions, "maxNewTokens">,
  random: () => number,
): number {
  const s = Float64Array.from(logits);
  const V = s.length;
  const limit = opts.vocabLimit ?? V;
  if (!(Number.isInteger(limit) && limit >= 1)) {
    throw new RangeError(`vocabLimit must be an integer >= 1 (the tokenizer's id limit), got ${limit}`);
  }
  if (limit < V) s.fill(-Infinity, limit);
  const rp = opts.repetitionPenalty ?? 1;
  if (rp !== 1) { for (const t of new Set(seen)) s[t] = s[t] < 0 ? s[t] * rp : s[t] / rp; }
  const argmax = () => s.reduce((best, x, i) => (x > s[best] ? i : best), 0);
  if (!opts.doSample) return argmax();
  const temp = opts.temperature ?? 1;
  if (!(temp > 0)) throw new Error(`temperature must be > 0 when sampling, got ${temp}`);
  for (let i = 0; i < V; i++) s[i] /= temp;
  const topK = Math.min(opts.topK ?? 0, V);
  if (topK > 0) {
    const kth = Float64Array.from(s).sort()[V - topK];
    for (let i = 0; i < V; i++) if (s[i] < kth) s[i] = -Infinity;
  }
  const topP = opts.topP ?? 1;
  if (topP < 1) {
    // Sorted ascending; drop tokens whose cumulative probability stays <= 1 - topP (always keep the last).
    const order = Array.from(s.keys()).sort((a, b) => s[a] - s[b] || a - b);
    const m = s[order[V - 1]];
    const e = order.map((i) => Math.exp(s[i] - m));
    const z = e.reduce((x, y) => x + y, 0);
    let cum = 0;
    for (let r = 0; r < V - 1; r++) {
      cum += e[r] / z;
      if (cum <= 1 - topP) s[order[r]] = -Infinity;
    }
  }
  const m = s[argmax()];
  const p = Array.from(s, (x) => Math.exp(x - m));
  let u = random() * p.reduce((x, y) => x + y, 0);
  for (let i = 0; i < V; i++) if (p[i] > 0 && (u -= p[i]) < 0) return i;
  return argmax();
}

/** Checks prompts and options; `name(b)` names prompt b in messages (e.g. `prompts[1]`). */
export function checkInputs(
  fn: string,
  model: ModelCore,
  prompts: number[][],
  opts: GenerateOptions,
  name: (b: number) => string,
) {
  const V = model.config.vocab;
  prompts.forEach((p, b) => {
    if (!Array.isArray(p)) throw new Error(`${fn}: ${name(b)} must be an array of token ids, got ${typeof p}`);
    if (!p.length) throw new Error(`${fn}: ${name(b)} is empty; every prompt needs at least one token`);
    p.forEach((t, i) => {
      if (!Number.isInteger(t) || t < 0 || t >= V) {
        throw new Error(`${fn}: ${name(b)}[${i}] = ${t} is not a token id in [0, ${V})`);
      }
    });
  });
  if (!Number.isInteger(opts.maxNewTokens) || opts.maxNewTokens < 0) {
    throw new Error(`${fn}: maxNewTokens must be an integer >= 0, got ${opts.maxNewTokens}`);
  }
}

/**
 * The decode loop of every generation entry: prefill all prompts (padded to B = {@link batchBucket} rows), then
 * one decode step per token for all rows. Yields, per step, the token each row chose (undefined for rows that
 * had already stopped). Rows that stopped keep decoding dummy tokens until every row has stopped.
 */
async function* decodeSteps(
  fn: string,
  model: ModelCore,
  prompts: number[][],
  opts: GenerateOptions,
): AsyncGenerator<(number | undefined)[]> {
  const c = model.config, V = c.vocab, R = prompts.length, max = opts.maxNewTokens;
  if (!R || !max) return;
  const B = batchBucket(R);
  const lens = Array.from({ length: B }, (_, b) => (b < R ? prompts[b].length : 1)); // padding rows: one token 0
  const n = Math.max(...lens);
  const C = cacheBucket(n + max);
  const gs = graphs(model), busyKey = `${B}x${C}`;
  if (gs.busy.has(busyKey)) {
    throw new Error(
      `${fn}: another generation with ${B} row(s) and a ${C}-slot cache is running on this model and would ` +
        `share its KV cache; await it (or finish its stream) first, or batch the prompts with generateBatch`,
    );
  }
  gs.busy.add(busyKey);
  try {
    const shape = cacheShape(c, B, C);
    for (let i = 0; i < c.layers; i++) {
      for (const kind of ["k", "v"] as const) {
        const name = model.prefix + cacheName(B, C, i, kind);
        if (!model.executor.hasParam(name)) {
          model.executor.setParam(name, new Float32Array(shape[0] * C * c.headDim), shape);
        }
      }
    }
    const f32 = (x: ArrayLike<number>) => (x instanceof Float32Array ? x : Float32Array.from(x));

    // Prefill: row b holds its sequence then padding (segment 0); `last` picks its last real token.
    const prefillRows = async (seqs: number[][]) => {
      const L = Math.min(bucketLength(Math.max(...seqs.map((s) => s.length))), C);
      const prefill = await compiled(model, B, C, L, false, "", opts.oneShot);
      const ids = new Int32Array(B * L), positions = new Int32Array(B * L), segments = new Int32Array(B * L);
      const last = new Int32Array(B);
      seqs.forEach((seq, b) => {
        seq.forEach((t, i) => [ids[b * L + i], segments[b * L + i]] = [t, 1]);
        for (let i = 0; i < L; i++) positions[b * L + i] = i;
        last[b] = b * L + seq.length - 1;
      });
      return f32((await prefill.run({ ids, positions, segments, last }, ["logits"])).logits);
    };
    let logits = await prefillRows(lens.map((n, b) => b < R ? prompts[b] : new Array(n).fill(0)));
    const reprefillAt = longropeReprefill(c);
    const windows = layerWindows(c);
    const step = await compiled(model, B, C, 1, true, "", opts.oneShot);
    const stop = new Set(opts.stop ?? []);
    const rows = prompts.map((p, b) => ({
      seen: [...p],
      count: 0,
      done: false,
      random: seededRandom((opts.seed ?? 0) + b),
    }));
    const next = new Int32Array(B), pos = new Int32Array(B);
    const masks = windows.map(() => new Float32Array(B * (C + 1)));
    for (let k = 0;; k++) {
      const chosen = rows.map((r, b) => {
        if (r.done) return undefined;
        const l = logits.subarray(b * V, (b + 1) * V);
        opts.onLogits?.(l, b);
        const t = chooseToken(l, r.seen, opts, r.random);
        r.seen.push(t);
        r.done = stop.has(t) || ++r.count >= max;
        next[b] = t;
        opts.onToken?.(t, b);
        return t;
      });
      yield chosen;
      if (rows.every((r) => r.done)) return;
      // Phi-3 (longrope): when the batch's length first passes original_max_position_embeddings, transformers drops
      // the KV cache and runs the whole sequences again, so every key gets the long factors (see longropeReprefill).
      if (n + k === reprefillAt) {
        logits = await prefillRows(lens.map((len, b) => {
          const seq = b < R ? rows[b].seen.slice(0, len + k + 1) : [];
          while (seq.length < len + k + 1) seq.push(b < R ? next[b] : 0); // finished rows: unread tokens
          return seq;
        }));
        continue;
      }
      // Step k + 1 feeds each row's token k at position len + k (finished and padding rows decode on, unread).
      for (let b = 0; b < B; b++) {
        pos[b] = lens[b] + k;
        windows.forEach((w, i) => masks[i].set(decodeMask(C, pos[b], w), b * (C + 1)));
      }
      const feeds: Record<string, ArrayLike<number>> = { ids: next, positions: pos };
      windows.forEach((w, i) => feeds[`mask${w}`] = masks[i]);
      logits = f32((await step.run(feeds, ["logits"])).logits);
    }
  } finally {
    gs.busy.delete(busyKey);
  }
}

/**
 * The length (the batch's longest sequence, prompt and tokens so far) at which generation runs the whole sequences
 * again instead of a decode step: Phi-3 with longrope scaling, whose `prepare_inputs_for_generation` in transformers
 * drops the cache when the input reaches original_max_position_embeddings + 1 tokens while the cache holds at most
 * original_max_position_embeddings (so the keys switch from the short to the long factors); -1 otherwise (other
 * families keep the cached keys, and each new token gets the frequencies of its step's length: rope_feed.ts).
 */
export function longropeReprefill(c: DecoderConfig): number {
  if (c.family !== "phi3") return -1;
  const r = c.layerRope.find((r) => r?.scaling.type === "longrope")?.scaling;
  return r?.type === "longrope" ? r.originalMaxPositionEmbeddings : -1;
}

/**
 * Generates up to `opts.maxNewTokens` tokens after `inputIds`; resolves with the new token ids (a stop id that
 * ended generation included, as transformers does).
 */
export async function generate(model: ModelCore, inputIds: number[], opts: GenerateOptions): Promise<number[]> {
  checkInputs("generate", model, [inputIds], opts, () => "inputIds");
  const out: number[] = [];
  for await (const [t] of decodeSteps("generate", model, [inputIds], opts)) if (t !== undefined) out.push(t);
  return out;
}

/**
 * Generates after each of `prompts` (of any lengths) at once: one prefill and one decode step per token for
 * the whole batch (rows padded up to 1, 2, 4, 8, ... so graphs are reused). Each row stops on its own (a stop
 * id or `maxNewTokens`); resolves with each row's new token ids. Greedy rows equal what {@link generate} gives
 * for each prompt alone; sampling row i uses its own RNG seeded `seed + i`. `onToken` and `onLogits` get the
 * row index as their second argument.
 *
 * @example
 * ```ts
 * import { loadModel } from "./model.ts";
 * const model = await loadModel("fixtures/models/llama");
 * const [a, b] = await generateBatch(model, [[1, 5, 9], [1, 7, 7, 3, 2]], { maxNewTokens: 8, stop: [2] });
 * ```
 */
export async function generateBatch(model: ModelCore, prompts: number[][], opts: GenerateOptions): Promise<number[][]> {
  if (!Array.isArray(prompts)) throw new Error(`generateBatch: prompts must be an array of prompts`);
  checkInputs("generateBatch", model, prompts, opts, (b) => `prompts[${b}]`);
  const out = prompts.map((): number[] => []);
  for await (const step of decodeSteps("generateBatch", model, prompts, opts)) {
    step.forEach((t, b) => t !== undefined && out[b].push(t));
  }
  return out;
}

/**
 * {@link generate} as a stream: yields each new token id as soon as it is chosen. Input errors are thrown by
 * the first `next()`. Breaking out of a `for await` loop ends generation early.
 *
 * @example
 * ```ts
 * import { loadModel } from "./model.ts";
 * const model = await loadModel("fixtures/models/llama");
 * for await (const id of generateStream(model, [1, 5, 9], { maxNewTokens: 10, stop: [2] })) {
 *   console.log(id);
 * }
 * ```
 */
export async function* generateStream(
  model: ModelCore,
  inputIds: number[],
  opts: GenerateOptions,
): AsyncGenerator<number> {
  checkInputs("generateStream", model, [inputIds], opts, () => "inputIds");
  for await (const [t] of decodeSteps("generateStream", model, [inputIds], opts)) if (t !== undefined) yield t;
}
