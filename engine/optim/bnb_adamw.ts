/**
 * bitsandbytes' AdamW with 8-bit states as HF Trainer builds it for `optim: adamw_8bit` (and its aliases
 * `adamw_bnb_8bit`, `paged_adamw_8bit`): `bnb.optim.AdamW(params, lr, betas=(adam_beta1, adam_beta2),
 * eps=adam_epsilon, optim_bits=8, is_paged=…)` with HF's param groups (weight decay, none on biases and norms),
 * bitsandbytes' defaults `min_8bit_size=4096`, `percentile_clipping=100`, `block_wise=True`, `max_unorm=0`.
 *
 * Per param, as `Optimizer2State.init_state` decides (bitsandbytes/optim/optimizer.py):
 * - at least {@link MIN_8BIT_SIZE} elements: 8-bit blockwise states `state1` / `state2` (uint8 codes, stored four to
 *   an i32 word) and `absmax1` / `absmax2` (f32 per 256), updated by the `adamw_8bit` op (engine/graph/ops/optim8.ts;
 *   the kernel's math in engine/quant/optim8.ts);
 * - fewer: f32 `state1` / `state2`, updated as the 32-bit kernel `kOptimizer32bit2State<T, ADAM>` does (csrc/kernels.cu),
 *   traced here as graph ops (t = step, from 1):
 *
 *     c1 ← 1 − β1^t;  c2 ← √(1 − β2^t);  step_size ← −lr·c2 / c1
 *     s1 ← s1·β1 + (1 − β1)·g;  s2 ← s2·β2 + (1 − β2)·g²
 *     p ← p + step_size · s1 / (√s2 + eps·c2)
 *     p ← p·(1 − lr·wd)                      # bitsandbytes decays after the update (torch's AdamW before it)
 *
 * Paging (`paged_adamw_8bit`) moves the states between GPU and CPU memory under CUDA's unified memory when the GPU
 * runs short: a memory matter on one CUDA device, the same update, so Whetstone runs it as `adamw_8bit`.
 * @module
 */
import { add, assign, div, graphOf, mul, pow, sqrt, sub, type Tensor, where } from "../graph/mod.ts";
import { adamw8bit } from "../graph/ops/optim8.ts";
import { MIN_8BIT_SIZE, optim8Layout } from "../quant/optim8.ts";
import { checkBetas } from "./lion.ts";

/** A state of a param: its name (suffix of the param's), shape and stored dtype. */
export interface BnbState {
  name: string;
  shape: number[];
  dtype: "f32" | "i32";
  /** For 8-bit codes (i32 words): the param's shape, as bitsandbytes' uint8 state has it (a checkpoint stores that). */
  codes?: number[];
}

/** Whether a param of `shape` keeps 8-bit states (bitsandbytes' `min_8bit_size`). */
export const uses8bit = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1) >= MIN_8BIT_SIZE;

/** A param's states, named as in bitsandbytes' state dict (`state1`, `state2`, `absmax1`, `absmax2`). */
export function bnbAdamwStates(name: string, shape: readonly number[]): BnbState[] {
  if (!uses8bit(shape)) {
    return [
      { name: `${name}.state1`, shape: [...shape], dtype: "f32" },
      { name: `${name}.state2`, shape: [...shape], dtype: "f32" },
    ];
  }
  const { words, blocks } = optim8Layout(shape.reduce((a, b) => a * b, 1));
  return [
    { name: `${name}.state1`, shape: [words], dtype: "i32", codes: [...shape] },
    { name: `${name}.state2`, shape: [words], dtype: "i32", codes: [...shape] },
    { name: `${name}.absmax1`, shape: [blocks], dtype: "f32" },
    { name: `${name}.absmax2`, shape: [blocks], dtype: "f32" },
  ];
}

/** AdamW's settings for one param (its group's weight decay). */
export interface BnbAdamwOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/**
 * One bitsandbytes AdamW step of `param` (see the module doc): `states` the params {@link bnbAdamwStates} names, in
 * order (zeros at the start); `lr`, `step` f32 scalar inputs; `gradScale` multiplies the gradient; `gate` (fp16's
 * finite check) keeps every value where it is 0.
 */
export function bnbAdamw(
  param: Tensor,
  grad: Tensor,
  states: readonly Tensor[],
  lr: Tensor,
  step: Tensor,
  o: BnbAdamwOptions,
  gradScale?: Tensor,
  gate?: Tensor,
): void {
  graphOf(param, grad, lr, step, ...states);
  checkBetas("adamw_8bit", { ...o });
  if (uses8bit(param.shape)) {
    const [state1, state2, absmax1, absmax2] = states;
    adamw8bit(param, grad, { state1, state2, absmax1, absmax2 }, lr, step, o, gradScale, gate);
    return;
  }
  const [s1, s2] = states;
  const keep = (old: Tensor, next: Tensor) => (gate ? where(gate, next, old) : next);
  const g = gradScale ? mul(grad, gradScale) : grad;
  const c1 = sub(1, pow(o.beta1, step)), c2 = sqrt(sub(1, pow(o.beta2, step)));
  const stepSize = div(mul(lr, c2), c1);
  const m1 = add(mul(s1, o.beta1), mul(g, 1 - o.beta1));
  const v1 = add(mul(s2, o.beta2), mul(mul(g, g), 1 - o.beta2));
  let p1 = sub(param, mul(stepSize, div(m1, add(sqrt(v1), mul(c2, o.eps)))));
  if (o.weightDecay > 0) p1 = mul(p1, sub(1, mul(lr, o.weightDecay)));
  assign(s1, keep(s1, m1));
  assign(s2, keep(s2, v1));
  assign(param, keep(param, p1));
}
