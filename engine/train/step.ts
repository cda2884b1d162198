/**
 * The traced training step: G micro-batches of [B, L] → forward, token-level loss, backward, global-norm
 * clipping and one optimizer update of every trainable parameter, all in one graph (one submit per
 * optimizer step). Micro-batches are traced one after another, so each one's activations die before the
 * next one's forward; only the summed gradients live across them.
 *
 * Inputs per micro-batch k: ids_k, positions_k, segments_k [B, L] i32 and labels_k [B·L] i32 (shifted).
 * Scalars: inv_targets (1 / labelled positions of the whole step), lr, step (1-based), and a u32 seed
 * when LoRA dropout is on. Outputs: loss (token mean over the step), grad_norm, loss_sum (running sum of
 * step losses kept on the device in `train.loss_sum`, so no step reads anything back).
 * @module
 */
import {
  adamw,
  add,
  assign,
  backward,
  clipScale,
  crossEntropy,
  Graph,
  linearCrossEntropy,
  mul,
  reshape,
  sgd,
  type Tensor,
} from "../graph/mod.ts";
import type { Model } from "../nn/model.ts";
import type { MicroBatch } from "./batches.ts";
import { traceDecoder } from "../nn/decoder.ts";
import { LoraAdapter } from "../nn/lora.ts";
import { lossScaleOf, scaledOptimizerUpdate } from "./loss_scale.ts";

/** What the step updates and how. */
export interface StepPlan {
  /** Micro-batches per optimizer step (gradient_accumulation_steps). */
  G: number;
  B: number;
  L: number;
  /** Parameter names that train (f32 in the store). */
  trainable: string[];
  optim: "adamw" | "sgd";
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 0: no clipping. */
  maxGradNorm: number;
  /** LoRA+: the lr of lora_B matrices is multiplied by this (0 or 1: off). */
  loraplusRatio: number;
  /** LoRA dropout active (a seed input is fed). */
  dropout: boolean;
  /** Activation checkpointing: each decoder layer's forward is recomputed in the backward pass (default off). */
  checkpoint?: boolean;
  /**
   * fp16 mixed precision (default off): decoder linears read f16 activations (f32 accumulation) and the step uses
   * dynamic loss scaling (loss_scale.ts). Only for executors that compute f16 (WebGPU with shader-f16).
   */
  fp16?: boolean;
}

/**
 * A one-micro-batch AdamW plan with torch's defaults (betas 0.9/0.999, eps 1e-8, no weight decay), clipping at 1,
 * no LoRA+ and no dropout; `extra` overrides any field. For benches and memory planning.
 *
 * @example
 * ```ts
 * const g = traceTrainStep(model, adamwStepPlan(4, 256, trainable, { checkpoint: true }));
 * ```
 */
export function adamwStepPlan(B: number, L: number, trainable: string[], extra: Partial<StepPlan> = {}): StepPlan {
  return {
    G: 1,
    B,
    L,
    trainable,
    optim: "adamw",
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weightDecay: 0,
    maxGradNorm: 1,
    loraplusRatio: 0,
    dropout: false,
    ...extra,
  };
}

/** Optimizer state names of a param. */
export const stateNames = (p: string) => ({ m: `${p}.exp_avg`, v: `${p}.exp_avg_sq`, buf: `${p}.momentum_buffer` });

/** Running loss sum between logging steps (a param of the store). */
export const LOSS_SUM = "train.loss_sum";

/** HF's rule: no weight decay on biases and norm weights. */
export function decays(name: string): boolean {
  return !(name.endsWith(".bias") || /norm\.weight$/.test(name) || name.endsWith("lora_magnitude_vector"));
}

/**
 * The per-step loss of one micro-batch (sum over its targets), through the fused LM head when possible; with
 * `checkpoint`, each decoder layer is an activation-checkpointed segment.
 */
export function microLoss(
  model: Model,
  g: Graph,
  k: number,
  B: number,
  L: number,
  seed?: Tensor,
  checkpoint = false,
  fp16 = false,
): Tensor {
  const inp = {
    ids: g.input(`ids_${k}`, [B, L], "i32"),
    positions: g.input(`positions_${k}`, [B, L], "i32"),
    segments: g.input(`segments_${k}`, [B, L], "i32"),
  };
  const labels = g.input(`labels_${k}`, [B * L], "i32");
  const weights = model.weights(g, { seed });
  const opts = { ...(checkpoint ? { checkpoint } : {}), ...(fp16 ? { computeDtype: "f16" as const } : {}) };
  const out = traceDecoder(model.config, inp, checkpoint || fp16 ? { ...weights, ...opts } : weights);
  const c = model.config;
  if (c.finalSoftcap) return crossEntropy(reshape(out.logits, [B * L, c.vocab]), labels, { reduction: "sum" });
  return linearCrossEntropy(reshape(out.hidden, [B * L, c.hidden]), out.head, labels, { reduction: "sum" });
}

/**
 * The end of every train step graph: global-norm clipping of `grads` (output `grad_norm`), then one AdamW (or SGD)
 * update of each of `params` (named `p.trainable`, in that order) with its states under the model's prefix, no weight
 * decay on biases and norms, and LoRA+'s lr ratio on lora_B matrices.
 */
export function optimizerUpdate(
  model: Model,
  g: Graph,
  p: StepPlan,
  params: readonly Tensor[],
  grads: readonly Tensor[],
  lr: Tensor,
  step: Tensor,
): void {
  const { scale, norm } = clipScale([...grads], p.maxGradNorm > 0 ? p.maxGradNorm : 1e30);
  g.output("grad_norm", norm);
  const gradScale = p.maxGradNorm > 0 ? scale : undefined;
  const lrB = p.loraplusRatio > 0 && p.loraplusRatio !== 1 ? mul(lr, p.loraplusRatio) : lr;
  const isLora = model.adapter instanceof LoraAdapter;
  params.forEach((w, i) => {
    const name = p.trainable[i];
    const st = stateNames(name);
    const wd = decays(name) ? p.weightDecay : 0;
    const plr = isLora && name.endsWith("lora_B.weight") ? lrB : lr;
    if (p.optim === "adamw") {
      const m = g.param(model.prefix + st.m, w.shape), v = g.param(model.prefix + st.v, w.shape);
      adamw(w, grads[i], m, v, plr, step, { beta1: p.beta1, beta2: p.beta2, eps: p.eps, weightDecay: wd }, gradScale);
    } else {
      sgd(w, grads[i], plr, { weightDecay: wd }, undefined, gradScale);
    }
  });
}

/** Traces the whole optimizer step for `model` (its adapter, if any, included). */
export function traceTrainStep(model: Model, p: StepPlan): Graph {
  const g = new Graph();
  const seed = p.dropout ? g.input("seed", [], "u32") : undefined;
  const invTargets = g.input("inv_targets", []);
  const lr = g.input("lr", []);
  const step = g.input("step", []);
  const params = p.trainable.map((n) => model.weights(g).weight(n));
  let loss: Tensor | undefined;
  let grads: Tensor[] | undefined;
  const scale = p.fp16 ? lossScaleOf(g) : undefined;
  for (let k = 0; k < p.G; k++) {
    const lk = mul(microLoss(model, g, k, p.B, p.L, seed, p.checkpoint, p.fp16), invTargets);
    const gk = backward(scale ? mul(lk, reshape(scale, [])) : lk, params);
    loss = loss ? add(loss, lk) : lk;
    grads = grads ? grads.map((x, i) => add(x, gk[i])) : gk;
  }
  g.output("loss", loss!);
  const acc = g.param(LOSS_SUM, [1]);
  const accNext = add(acc, reshape(loss!, [1]));
  g.output("loss_sum", accNext);
  assign(acc, accNext);
  if (scale) scaledOptimizerUpdate(model, g, p, params, grads!, lr, step, scale);
  else optimizerUpdate(model, g, p, params, grads!, lr, step);
  return g;
}

/** Feeds of {@link traceTrainStep} from its G micro-batches (all but lr, step and seed), and their real tokens. */
export function trainStepFeeds(
  mbs: readonly MicroBatch[],
): { feeds: Record<string, ArrayLike<number>>; tokens: number } {
  const targets = mbs.reduce((t, m) => t + m.targets, 0);
  const feeds: Record<string, ArrayLike<number>> = { inv_targets: [1 / Math.max(1, targets)] };
  mbs.forEach((m, k) => {
    feeds[`ids_${k}`] = m.ids;
    feeds[`positions_${k}`] = m.positions;
    feeds[`segments_${k}`] = m.segments;
    feeds[`labels_${k}`] = m.labels;
  });
  return { feeds, tokens: mbs.reduce((t, m) => t + m.tokens, 0) };
}

/** Traces the eval step: loss sum and labelled-position count of one [B, L] batch. */
export function traceEvalStep(model: Model, B: number, L: number): Graph {
  const g = new Graph();
  g.output("loss_sum", microLoss(model, g, 0, B, L));
  return g;
}
