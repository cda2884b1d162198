/**
 * Autoregressive generation on the engine with a KV cache on the executor: one prefill graph over the
 * bucketed prompt, then one decode-step graph per token (planned once per cache bucket, one submit per
 * token). Sampling runs on the host from the fetched last-token logits, with transformers' logits
 * processors in its order: repetition penalty, then temperature, top-k, top-p.
 *
 * @example
 * ```ts
 * const model = await loadModel("fixtures/models/llama");
 * const ids = await generate(model, [1, 5, 9], { maxNewTokens: 10 }); // greedy
 * ```
 * @module
 */
import { mulberry32 } from "../util/rng.ts";
import { Graph } from "../graph/mod.ts";
import type { CompiledGraph } from "../exec/executor.ts";
import type { Model, ModelAdapter } from "./model.ts";
import { bucketLength } from "./model.ts";
import { cacheBucket, cacheName, decodeMask, layerWindows, traceCached } from "./kv_decoder.ts";

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
  /** Token ids that end generation (included in the result, as transformers does). */
  stop?: number[];
  /** Seed of the sampling RNG (default 0). */
  seed?: number;
  /** Called with each new token id as soon as it is chosen. */
  onToken?: (id: number) => void;
  /** Called with the raw logits [V] each token is chosen from (before any processing). */
  onLogits?: (logits: Float32Array) => void;
}

interface Graphs {
  adapter?: ModelAdapter;
  compiled: Map<string, Promise<CompiledGraph>>;
}
const GRAPHS = new WeakMap<Model, Graphs>();

function compiled(model: Model, key: string, C: number, L: number, decode: boolean): Promise<CompiledGraph> {
  let gs = GRAPHS.get(model);
  if (!gs || gs.adapter !== model.adapter) GRAPHS.set(model, gs = { adapter: model.adapter, compiled: new Map() });
  let p = gs.compiled.get(key);
  if (!p) {
    const g = new Graph();
    const cache = (layer: number, kind: "k" | "v") =>
      g.param(model.prefix + cacheName(C, layer, kind), [1, C, model.config.kvHeads, model.config.headDim], "f32");
    traceCached(g, model.config, model.weights(g), cache, { C, L, decode });
    p = model.executor.compile(g);
    gs.compiled.set(key, p);
  }
  return p;
}

/** A small seeded RNG (mulberry32) giving floats in [0, 1). */
export const seededRandom = mulberry32;

/**
 * Chooses the next token from `logits` [V] as transformers does: repetition penalty over `seen`, then (when
 * sampling) temperature, top-k, top-p and a draw from the softmax; greedy takes the first argmax.
 */
export function chooseToken(
  logits: ArrayLike<number>,
  seen: readonly number[],
  opts: Omit<GenerateOptions, "maxNewTokens">,
  random: () => number,
): number {
  const s = Float64Array.from(logits);
  const V = s.length;
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

/** Generates up to `opts.maxNewTokens` tokens after `inputIds`; resolves with the new token ids. */
export async function generate(model: Model, inputIds: number[], opts: GenerateOptions): Promise<number[]> {
  const c = model.config, n = inputIds.length;
  if (!n) throw new Error("generate: inputIds is empty");
  inputIds.forEach((t, i) => {
    if (!Number.isInteger(t) || t < 0 || t >= c.vocab) {
      throw new Error(`generate: inputIds[${i}] = ${t} is not a token id in [0, ${c.vocab})`);
    }
  });
  if (!Number.isInteger(opts.maxNewTokens) || opts.maxNewTokens < 0) {
    throw new Error(`generate: maxNewTokens must be an integer >= 0, got ${opts.maxNewTokens}`);
  }
  const out: number[] = [];
  if (!opts.maxNewTokens) return out;
  const C = cacheBucket(n + opts.maxNewTokens), Lb = Math.min(bucketLength(n), C);
  const shape = [1, C, c.kvHeads, c.headDim];
  for (let i = 0; i < c.layers; i++) {
    for (const kind of ["k", "v"] as const) {
      const name = model.prefix + cacheName(C, i, kind);
      if (!model.executor.hasParam(name)) {
        model.executor.setParam(name, new Float32Array(C * c.kvHeads * c.headDim), shape);
      }
    }
  }
  const random = seededRandom(opts.seed ?? 0);
  const stop = new Set(opts.stop ?? []);
  const seen = [...inputIds];

  const prefill = await compiled(model, `prefill:${C}:${Lb}`, C, Lb, false);
  const ids = new Int32Array(Lb), positions = new Int32Array(Lb), segments = new Int32Array(Lb);
  for (let i = 0; i < Lb; i++) {
    ids[i] = i < n ? inputIds[i] : 0;
    positions[i] = i;
    segments[i] = i < n ? 1 : 0;
  }
  const f32 = (x: ArrayLike<number>) => (x instanceof Float32Array ? x : Float32Array.from(x));
  let logits = f32((await prefill.run({ ids, positions, segments, last: [n - 1] }, ["logits"])).logits);

  const windows = layerWindows(c);
  const step = await compiled(model, `decode:${C}`, C, 1, true);
  const keep = new Float32Array(C).fill(1);
  for (;;) {
    opts.onLogits?.(logits);
    const t = chooseToken(logits, seen, opts, random);
    out.push(t);
    seen.push(t);
    opts.onToken?.(t);
    if (stop.has(t) || out.length >= opts.maxNewTokens) return out;
    const pos = n + out.length - 1;
    keep.fill(1);
    keep[pos] = 0;
    const feeds: Record<string, ArrayLike<number>> = { ids: [t], positions: [pos], keep };
    for (const w of windows) feeds[`mask${w}`] = decodeMask(C, pos, w);
    logits = f32((await step.run(feeds, ["logits"])).logits);
  }
}
