/**
 * The value head of a reward model, as TRL's `AutoModelForCausalLMWithValueHead` builds it and LLaMA-Factory trains
 * and saves it (stage rm, and the reward model of ppo): `v_head.summary` = Linear(hidden → 1) on the decoder's last
 * hidden state (after the final norm: transformers' `hidden_states[-1]`), one value per token. A sequence's score is
 * the value at its last real token (LF's `PairwiseTrainer`: index `attention_mask.sum(-1) - 1`, right padding).
 * LF writes the head to `value_head.safetensors` with the keys `v_head.summary.weight` [1, hidden] and
 * `v_head.summary.bias` [1]; Whetstone stores them in the executor under the same names (after the model's prefix),
 * in f32, so a trainer lists them among its trainable parameters by name.
 *
 * @example
 * ```ts
 * initValueHead(model, { seed: 42 }); // or: await loadValueHead(model, "saves/rm/value_head.safetensors")
 * const out = traceDecoder(model.config, inp, model.weights(g));
 * const scores = lastTokenScores(traceValues(g, model, out.hidden), inp.segments!); // [R]
 * ```
 * @module
 */
import {
  add,
  cast,
  concat,
  dropout,
  expand,
  gt,
  matmul,
  mul,
  reshape,
  slice,
  sub,
  sum,
  type Tensor,
} from "../graph/mod.ts";
import type { Graph } from "../graph/graph.ts";
import { openSafetensors, writeSafetensors } from "../io/safetensors.ts";
import { Rng } from "../util/rng.ts";
import type { Model } from "./model.ts";

/** Store name of the head's weight [1, hidden] (TRL's and LF's key). */
export const V_HEAD_WEIGHT = "v_head.summary.weight";
/** Store name of the head's bias [1]. */
export const V_HEAD_BIAS = "v_head.summary.bias";
/** The file LF writes next to a reward model's weights or adapter (`V_HEAD_SAFE_WEIGHTS_NAME`). */
export const VALUE_HEAD_FILE = "value_head.safetensors";

/** Whether `name` is a value-head parameter (not a decoder or adapter one). */
export const isValueHeadParam = (name: string): boolean => name.startsWith("v_head.");

/** Names and shapes of the head's parameters. */
export function valueHeadParams(hidden: number): Map<string, number[]> {
  return new Map([[V_HEAD_WEIGHT, [1, hidden]], [V_HEAD_BIAS, [1]]]);
}

/** The graph tensor of a value-head parameter of `model` (f32, under the model's store prefix). */
export function valueHeadWeight(g: Graph, model: Model, name: string): Tensor {
  const shape = valueHeadParams(model.config.hidden).get(name);
  if (!shape) throw new Error(`"${name}" is not a value-head parameter; expected ${V_HEAD_WEIGHT} or ${V_HEAD_BIAS}`);
  return g.param(model.prefix + name, shape, "f32");
}

/** Options of {@link traceValues}. */
export interface ValueOptions {
  /**
   * Dropout on the hidden state before the head (TRL's `summary_dropout_prob`, 0.1 by default there and active in
   * LF's RM training); applied only with `seed` (a u32 scalar input).
   */
  dropout?: number;
  seed?: Tensor;
  /** Dropout site offset (default 0x7fff0, clear of LoRA's sites). */
  offset?: number;
}

/** Per-token values: hidden [R, L, H] (f32) → [R, L] = hidden · wᵀ + b. */
export function traceValues(g: Graph, model: Model, hidden: Tensor, opts: ValueOptions = {}): Tensor {
  const [R, L, H] = hidden.shape;
  if (hidden.rank !== 3 || H !== model.config.hidden) {
    throw new Error(`traceValues: hidden must be [R, L, ${model.config.hidden}], got [${hidden.shape.join(", ")}]`);
  }
  const x = opts.seed && opts.dropout
    ? dropout(hidden, opts.seed, { p: opts.dropout, offset: opts.offset ?? 0x7fff0 })
    : hidden;
  const v = matmul(reshape(x, [R * L, H]), valueHeadWeight(g, model, V_HEAD_WEIGHT), { transB: true }); // [R·L, 1]
  return reshape(add(v, valueHeadWeight(g, model, V_HEAD_BIAS)), [R, L]);
}

/**
 * 1 at each row's last real token, else 0: segments [R, L] i32 (0 padding, ≥ 1 real, right padding) → [R, L] f32,
 * m[t] · (1 − m[t + 1]) with m = (segments > 0) and m[L] = 0.
 */
export function lastTokenMask(segments: Tensor): Tensor {
  const [R, L] = segments.shape;
  const m = gt(cast(segments, "f32"), 0);
  const next = L > 1
    ? concat([slice(m, 1, 1, L), expand(m.graph.scalar(0), [R, 1])], 1)
    : expand(m.graph.scalar(0), [R, 1]);
  return mul(m, sub(1, next));
}

/** Each row's score: values [R, L] at the last real token of segments [R, L] → [R] (0 for an all-padding row). */
export function lastTokenScores(values: Tensor, segments: Tensor): Tensor {
  if (values.shape.join() !== segments.shape.join()) {
    throw new Error(`lastTokenScores: values [${values.shape}] and segments [${segments.shape}] must have one shape`);
  }
  return sum(mul(values, lastTokenMask(segments)), 1);
}

/**
 * A new head, initialised as torch's nn.Linear is (what TRL leaves in place by default): weight and bias uniform in
 * [−1/√hidden, 1/√hidden], seeded.
 */
export function initValueHead(model: Model, opts: { seed?: number } = {}): void {
  const H = model.config.hidden, bound = 1 / Math.sqrt(H), rng = new Rng(opts.seed ?? 42);
  const draw = (n: number) => Float32Array.from({ length: n }, () => (2 * rng.uniform() - 1) * bound);
  model.executor.setParam(model.prefix + V_HEAD_WEIGHT, draw(H), [1, H], "f32");
  model.executor.setParam(model.prefix + V_HEAD_BIAS, draw(1), [1], "f32");
}

/** Loads a head from LF's `value_head.safetensors` (a path to the file or to the folder holding it). */
export async function loadValueHead(model: Model, path: string): Promise<void> {
  const file = path.endsWith(".safetensors") ? path : `${path.replace(/\/$/, "")}/${VALUE_HEAD_FILE}`;
  const f = await openSafetensors(file);
  try {
    for (const [name, shape] of valueHeadParams(model.config.hidden)) {
      const t = f.tensors.get(name);
      if (!t) throw new Error(`${file}: no tensor "${name}" (has ${[...f.tensors.keys()].join(", ") || "none"})`);
      if (t.shape.join() !== shape.join()) {
        throw new Error(`${file}: "${name}" is [${t.shape.join(", ")}], expected [${shape.join(", ")}]`);
      }
      model.executor.setParam(model.prefix + name, await f.readF32(name), shape, "f32");
    }
  } finally {
    f.close();
  }
}

/** Writes the head as LF does: `<dir>/value_head.safetensors` (f32, metadata format "pt"). */
export async function saveValueHead(model: Model, dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
  for (const [name, shape] of valueHeadParams(model.config.hidden)) {
    tensors[name] = {
      dtype: "F32",
      shape,
      data: Float32Array.from(await model.executor.getParam(model.prefix + name)),
    };
  }
  await writeSafetensors(`${dir}/${VALUE_HEAD_FILE}`, tensors, { format: "pt" });
}
