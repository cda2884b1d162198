/**
 * The precision of a training step: what multiplies the loss before the backward, how the global gradient norm is
 * clipped, and what gates the optimizer update.
 *
 * - {@link f32Precision}: the plain step; `grad_norm` is torch's clip_grad_norm_ total norm and the gradients are
 *   scaled by min(1, max_grad_norm / (norm + 1e-6)).
 * - {@link fp16Precision}: dynamic loss scaling as torch.cuda.amp.GradScaler does it, inside the one step graph: the
 *   loss is multiplied by the scale before the backward, the gradients are unscaled before clipping, and when any
 *   gradient is inf/NaN the optimizer update is skipped (the fused optimizer ops get a gate: they write nothing when
 *   it is 0) and the scale halves; after {@link GROWTH_INTERVAL} finite steps in a row it doubles. The scale and the
 *   growth counter are params of the store ({@link LOSS_SCALE}, {@link SCALE_GROWTH}), so no step reads anything back.
 * @module
 */
import { add, assign, clipScale, div, ge, type Graph, gt, minimum, mul, type Tensor, where } from "../../graph/mod.ts";
import type { Executor } from "../../exec/executor.ts";

/** The current loss scale [1] (a param of the store). */
export const LOSS_SCALE = "train.loss_scale";
/** Finite steps since the scale last changed [1] (a param of the store). */
export const SCALE_GROWTH = "train.scale_growth";

/** GradScaler's defaults. */
export const INIT_SCALE = 2 ** 16;
export const GROWTH_FACTOR = 2;
export const BACKOFF_FACTOR = 0.5;
export const GROWTH_INTERVAL = 2000;

/** What the precision decided about this step's gradients. */
export interface Clipped {
  /** Multiplies every gradient in the update (unscaling and clipping); none: 1. */
  gradScale?: Tensor;
  /** An f32 scalar: the update is written only where it is not 0 (fp16's finite check); none: always. */
  gate?: Tensor;
}

/** A precision (see the module doc). */
export interface Precision {
  readonly key: string;
  /** Whether the decoder's linears read f16 activations (f32 accumulation). */
  readonly f16: boolean;
  /** Declares what the precision needs on `g` and returns what multiplies the loss before the backward. */
  lossScale(g: Graph): Tensor | undefined;
  /** Outputs `grad_norm` (and its own outputs) and returns the update's gradient scale and gate. */
  clip(g: Graph, grads: readonly Tensor[], maxGradNorm: number): Clipped;
}

/** f32 compute, torch's global-norm clipping (`maxGradNorm` 0: none). */
export const f32Precision: Precision = {
  key: "f32",
  f16: false,
  lossScale: () => undefined,
  clip(g, grads, maxGradNorm) {
    const { scale, norm } = clipScale([...grads], maxGradNorm > 0 ? maxGradNorm : 1e30);
    g.output("grad_norm", norm);
    return { gradScale: maxGradNorm > 0 ? scale : undefined };
  },
};

/**
 * fp16 compute with dynamic loss scaling. `grad_norm` is the norm of the unscaled gradients (inf/NaN on a skipped
 * step, as torch logs it) and `loss_scale` the scale this step used; the scale and counter update as
 * GradScaler.update does.
 */
export const fp16Precision: Precision = {
  key: "fp16",
  f16: true,
  lossScale: (g) => g.param(LOSS_SCALE, [1]),
  clip(g, grads, maxGradNorm) {
    const scale = g.param(LOSS_SCALE, [1]);
    const { norm: scaledNorm } = clipScale([...grads], 1e30);
    // ok: 1 when the global norm is finite (inf and NaN compare false), else 0.
    const ok = gt(3e38, scaledNorm);
    const inv = div(1, scale);
    const norm = mul(scaledNorm, inv);
    g.output("grad_norm", norm);
    g.output("loss_scale", scale);
    const clip = maxGradNorm > 0 ? minimum(div(maxGradNorm, add(norm, 1e-6)), 1) : undefined;
    // GradScaler.update: backoff on overflow, growth after GROWTH_INTERVAL finite steps in a row.
    const growth = g.param(SCALE_GROWTH, [1]);
    const counted = add(growth, 1);
    const grow = ge(counted, GROWTH_INTERVAL);
    assign(scale, where(ok, where(grow, mul(scale, GROWTH_FACTOR), scale), mul(scale, BACKOFF_FACTOR)));
    assign(growth, where(ok, where(grow, 0, counted), 0));
    return { gradScale: clip ? mul(inv, clip) : inv, gate: ok };
  },
};

/** Sets the scaler's params to their start values (scale 2^16, counter 0). */
export function initLossScaler(ex: Executor, scale = INIT_SCALE): void {
  ex.setParam(LOSS_SCALE, [scale], [1]);
  ex.setParam(SCALE_GROWTH, [0], [1]);
}

/**
 * Whether a run with `fp16: true` computes in f16: on the WebGPU executor of an adapter whose start-up probe found
 * shader-f16 working, when the objective and the optimizer have an f16 path and the base is not quantized. Otherwise
 * it logs one line saying why and the run stays f32. `bf16: true` always keeps f32 compute (WGSL has no bf16
 * arithmetic).
 */
export async function chooseFp16(
  args: { fp16: boolean; bf16: boolean },
  executor: Executor,
  run: { objective: boolean; optimizer: boolean; quantized: boolean },
  log: (line: string) => void,
): Promise<boolean> {
  if (args.bf16) log("bf16: compute stays f32 (WGSL has no bf16 arithmetic); bf16 weights stay stored as bf16");
  if (!args.fp16) return false;
  let why = "";
  if (executor.name !== "webgpu") why = `the ${executor.name} executor computes in f32`;
  else if (!run.objective) why = "this stage's objective has no f16 path";
  else if (!run.optimizer) why = "this optimizer has no gated (skippable) update";
  else if (run.quantized) why = "QLoRA's quantized linears have no f16 path";
  else {
    const { openGpu } = await import("../../gpu/device.ts");
    if (!(await openGpu()).f16) why = "the adapter's shader-f16 probe failed (or it lacks shader-f16)";
  }
  log(why ? `fp16: keeping f32 compute: ${why}` : "fp16: f16 linear inputs, f32 accumulation, dynamic loss scaling");
  return !why;
}
