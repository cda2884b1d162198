/**
 * Dynamic loss scaling for fp16 training, as torch.cuda.amp.GradScaler does it, inside the one step graph:
 * the loss is multiplied by the scale before the backward, the gradients are unscaled before clipping, and when
 * any gradient is inf/NaN the optimizer update is skipped (params and states keep their old values) and the scale
 * halves; after `GROWTH_INTERVAL` finite steps in a row it doubles.
 *
 * The finite check is one f32 scalar computed on the device (the global norm of the scaled gradients is finite),
 * which gates the fused optimizer ops (`adamw` / `sgd` with `gate`: they write nothing when it is 0) and the scale
 * updates (`where` written with `assign`), so no step reads anything back. The scale and
 * the growth counter are params of the store ({@link LOSS_SCALE}, {@link SCALE_GROWTH}).
 * @module
 */
import {
  adamw,
  add,
  assign,
  clipScale,
  div,
  ge,
  type Graph,
  gt,
  minimum,
  mul,
  sgd,
  type Tensor,
  where,
} from "../graph/mod.ts";
import type { Executor } from "../exec/executor.ts";
import type { Model } from "../nn/model.ts";
import { LoraAdapter } from "../nn/lora.ts";
import { decays, stateNames, type StepPlan } from "./step.ts";

/** The current loss scale [1] (a param of the store). */
export const LOSS_SCALE = "train.loss_scale";
/** Finite steps since the scale last changed [1] (a param of the store). */
export const SCALE_GROWTH = "train.scale_growth";

/** GradScaler's defaults. */
export const INIT_SCALE = 2 ** 16;
export const GROWTH_FACTOR = 2;
export const BACKOFF_FACTOR = 0.5;
export const GROWTH_INTERVAL = 2000;

/** Sets the scaler's params to their start values (scale 2^16, counter 0). */
export function initLossScaler(ex: Executor, scale = INIT_SCALE): void {
  ex.setParam(LOSS_SCALE, [scale], [1]);
  ex.setParam(SCALE_GROWTH, [0], [1]);
}

/** The scale param [1] of the step graph `g`. */
export function lossScaleOf(g: Graph): Tensor {
  return g.param(LOSS_SCALE, [1]);
}

/**
 * The end of an fp16 train step: `grads` are the gradients of the loss times `scale` ([1], from
 * {@link lossScaleOf}). Outputs `grad_norm` (of the unscaled gradients; inf/NaN on a skipped step, as torch logs
 * it) and `loss_scale` (the scale this step used); updates params and optimizer states only when every gradient
 * is finite, and the scale and counter as GradScaler.update does.
 */
export function scaledOptimizerUpdate(
  model: Model,
  g: Graph,
  p: StepPlan,
  params: readonly Tensor[],
  grads: readonly Tensor[],
  lr: Tensor,
  step: Tensor,
  scale: Tensor,
): void {
  const { norm: scaledNorm } = clipScale([...grads], 1e30);
  // ok: 1 when the global norm is finite (inf and NaN compare false), else 0.
  const ok = gt(3e38, scaledNorm);
  const inv = div(1, scale);
  const norm = mul(scaledNorm, inv);
  g.output("grad_norm", norm);
  g.output("loss_scale", scale);
  const clip = p.maxGradNorm > 0 ? minimum(div(p.maxGradNorm, add(norm, 1e-6)), 1) : undefined;
  const gs = clip ? mul(inv, clip) : inv; // [1]: unscale, then clip
  const lrB = p.loraplusRatio > 0 && p.loraplusRatio !== 1 ? mul(lr, p.loraplusRatio) : lr;
  const isLora = model.adapter instanceof LoraAdapter;
  params.forEach((w, i) => {
    const name = p.trainable[i];
    const wd = decays(name) ? p.weightDecay : 0;
    const plr = isLora && name.endsWith("lora_B.weight") ? lrB : lr;
    // The fused ops with gradScale gs and gate ok: nothing is written on an overflowed step.
    if (p.optim === "adamw") {
      const st = stateNames(name);
      const m = g.param(model.prefix + st.m, w.shape), v = g.param(model.prefix + st.v, w.shape);
      adamw(
        w,
        grads[i],
        m,
        v,
        plr,
        step,
        { beta1: p.beta1, beta2: p.beta2, eps: p.eps, weightDecay: wd, gate: ok },
        gs,
      );
    } else {
      sgd(w, grads[i], plr, { weightDecay: wd, gate: ok }, undefined, gs);
    }
  });
  // GradScaler.update: backoff on overflow, growth after GROWTH_INTERVAL finite steps in a row.
  const growth = g.param(SCALE_GROWTH, [1]);
  const counted = add(growth, 1);
  const grow = ge(counted, GROWTH_INTERVAL);
  assign(scale, where(ok, where(grow, mul(scale, GROWTH_FACTOR), scale), mul(scale, BACKOFF_FACTOR)));
  assign(growth, where(ok, where(grow, 0, counted), 0));
}

/**
 * Whether a run with `fp16: true` computes in f16: only the plain train step (pt / sft, AdamW or SGD, no QLoRA) on
 * the WebGPU executor of an adapter whose start-up probe found shader-f16 working. Otherwise it logs one line saying
 * why and the run stays f32. `bf16: true` always keeps f32 compute (WGSL has no bf16 arithmetic).
 */
export async function chooseFp16(
  args: { fp16: boolean; bf16: boolean },
  executor: Executor,
  run: { plainStep: boolean; quantized: boolean },
  log: (line: string) => void,
): Promise<boolean> {
  if (args.bf16) log("bf16: compute stays f32 (WGSL has no bf16 arithmetic); bf16 weights stay stored as bf16");
  if (!args.fp16) return false;
  let why = "";
  if (executor.name !== "webgpu") why = `the ${executor.name} executor computes in f32`;
  else if (!run.plainStep) why = "only the pt / sft step with adamw or sgd has an f16 path";
  else if (run.quantized) why = "QLoRA's quantized linears have no f16 path";
  else {
    const { openGpu } = await import("../gpu/device.ts");
    if (!(await openGpu()).f16) why = "the adapter's shader-f16 probe failed (or it lacks shader-f16)";
  }
  log(why ? `fp16: keeping f32 compute: ${why}` : "fp16: f16 linear inputs, f32 accumulation, dynamic loss scaling");
  return !why;
}
