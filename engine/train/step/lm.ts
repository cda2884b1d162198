/**
 * The language-model objective of stages pt and sft: per micro-batch k, the summed token cross-entropy of its
 * shifted labels (through the fused LM head when the model has no final soft-cap, so the [tokens × vocab] logits
 * never exist), times `inv_targets` (1 / labelled positions of the whole step): the step's loss is the token mean over
 * all its micro-batches, as HF computes it with `num_items_in_batch`.
 *
 * With `use_dft_loss` (stage sft) each token's cross-entropy is weighted by its detached target probability exp(−ce),
 * LLaMA-Factory's DFT loss ({@linkcode dftLossSum}); the logits are then materialised (no fused head).
 *
 * Inputs per micro-batch k: ids_k, positions_k, segments_k [B, L] i32 and labels_k [B·L] i32 (shifted). Step-wide:
 * inv_targets, and a u32 seed when LoRA dropout is on. With NEFTune, noise_k [B, L, hidden] f32 per micro-batch (added to
 * the input embeddings: engine/nn/neftune.ts); with shift_attn, LongLoRA's S²-attention (engine/nn/longlora.ts). The
 * eval step has neither.
 * @module
 */
import {
  crossEntropy,
  eq,
  exp,
  Graph,
  linearCrossEntropy,
  max,
  mul,
  neg,
  reshape,
  sum,
  type Tensor,
} from "../../graph/mod.ts";
import { cast } from "../../graph/ops/cast.ts";
import { stopGradient } from "../../graph/ops/stop_gradient.ts";
import type { Model } from "../../nn/model.ts";
import { traceDecoder } from "../../nn/decoder.ts";
import { withRouterLoss } from "../../nn/moe.ts";
import { s2AttendHook } from "../../nn/longlora.ts";
import type { MicroBatch } from "../batches.ts";
import { LOSS_SUM } from "./builder.ts";
import type { Objective } from "./objective.ts";
import { adamwStepPlan, type StepPlan, traceStep } from "./plan.ts";
import { paramsOf } from "./params.ts";

export { adamwStepPlan, LOSS_SUM, type StepPlan };

/** Shapes and switches of the LM objective. */
export interface LmOptions {
  B: number;
  L: number;
  /** LoRA dropout: a u32 `seed` input is fed. */
  dropout?: boolean;
  /** Activation checkpointing of each decoder layer. */
  checkpoint?: boolean;
  /** f16 linear inputs with f32 accumulation (fp16 mixed precision). */
  fp16?: boolean;
  /** NEFTune: a `noise_k` [B, L, hidden] input per micro-batch is added to the input embeddings. */
  neftune?: boolean;
  /** LongLoRA's S²-attention in every layer. */
  shiftAttn?: boolean;
  /** LF's DFT loss (`use_dft_loss`) instead of the plain cross-entropy. */
  dft?: boolean;
}

/**
 * LLaMA-Factory's DFT loss, summed (trainer_utils.py `_dft_cross_entropy` before its division by
 * num_items_in_batch): Σ over labelled rows of ce · exp(−ce), the weight without gradient. Ignored rows (-100) have
 * ce = 0 and add nothing. `logits` [N, V], `labels` [N] i32.
 */
export function dftLossSum(logits: Tensor, labels: Tensor): Tensor {
  const ce = crossEntropy(logits, labels, { reduction: "none" });
  return sum(mul(ce, stopGradient(exp(neg(ce)))));
}

/**
 * The loss of one micro-batch (sum over its targets; feeds ids_k, positions_k, segments_k, labels_k), through the
 * fused LM head when possible; with `checkpoint`, each decoder layer is an activation-checkpointed segment. With
 * `scale` (the training objective's 1 / targets) the sum is scaled, and a mixture-of-experts model whose router loss
 * is on (moe_aux_loss_coef) adds coef × its load-balancing loss, unscaled: transformers adds it to each forward's
 * loss and HF's Trainer (loss kwargs, no division by the accumulation steps) sums those over the micro-batches.
 */
export function microLoss(model: Model, g: Graph, k: number, o: LmOptions, seed?: Tensor, scale?: Tensor): Tensor {
  const { B, L } = o;
  const inp = {
    ids: g.input(`ids_${k}`, [B, L], "i32"),
    positions: g.input(`positions_${k}`, [B, L], "i32"),
    segments: g.input(`segments_${k}`, [B, L], "i32"),
    ...(o.neftune ? { noise: g.input(`noise_${k}`, [B, L, model.config.hidden]) } : {}),
  };
  const labels = g.input(`labels_${k}`, [B * L], "i32");
  const base = model.weights(g, { seed });
  const weights = o.shiftAttn ? { ...base, attend: s2AttendHook(model.config.attnScale) } : base;
  const opts = { ...(o.checkpoint ? { checkpoint: true } : {}), ...(o.fp16 ? { computeDtype: "f16" as const } : {}) };
  const out = traceDecoder(model.config, inp, o.checkpoint || o.fp16 ? { ...weights, ...opts } : weights);
  const c = model.config;
  const ce = o.dft
    ? dftLossSum(reshape(out.logits, [B * L, c.vocab]), labels)
    : c.finalSoftcap
    ? crossEntropy(reshape(out.logits, [B * L, c.vocab]), labels, { reduction: "sum" })
    : linearCrossEntropy(reshape(out.hidden, [B * L, c.hidden]), out.head, labels, { reduction: "sum" });
  return scale ? withRouterLoss(c.moe, out.routes, mul(ce, scale), inp.segments) : ce;
}

/** The LM objective (see the module doc). */
export function lmObjective(model: Model, o: LmOptions): Objective {
  return {
    key: o.dft ? "lm:dft" : "lm",
    f16: !!o.fp16,
    params: (g, names) => paramsOf(model, g, names),
    begin(g) {
      const seed = o.dropout ? g.input("seed", [], "u32") : undefined;
      const invTargets = g.input("inv_targets", []);
      return (k) => ({ loss: microLoss(model, g, k, o, seed, invTargets) });
    },
  };
}

/** The LM objective of a plan's shapes and switches. */
export const lmObjectiveOf = (model: Model, p: StepPlan): Objective =>
  lmObjective(model, {
    B: p.B,
    L: p.L,
    dropout: p.dropout,
    checkpoint: p.checkpoint,
    fp16: p.fp16,
    neftune: !!p.neftune,
    shiftAttn: p.shiftAttn,
    dft: p.dft,
  });

/** Traces the whole pt / sft optimizer step for `model` (its adapter, if any, included) under plan `p`. */
export function traceTrainStep(model: Model, p: StepPlan): Graph {
  return traceStep(model, p, lmObjectiveOf(model, p));
}

/** Feeds of an LM step from its G micro-batches (all but lr, step and seed), and their real tokens. */
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

/**
 * 1 where the label's logit is the largest of its row (LF's ComputeAccuracy compares argmax(logits) with the label;
 * an exact tie counts here as correct, where numpy's argmax takes the first index), else 0 ([N] f32). The label's
 * logit is picked exactly by a one-hot product against `vocabIds` [V] (0, 1, ..., V−1 as f32); ignored labels
 * (-100) pick 0 and are masked by the caller.
 */
export function argmaxMatches(logits: Tensor, labels: Tensor, vocabIds: Tensor): Tensor {
  const [N, V] = logits.shape;
  const oneHot = eq(reshape(cast(labels, "f32"), [N, 1]), reshape(vocabIds, [1, V]));
  const picked = sum(mul(logits, oneHot), -1);
  return eq(picked, max(logits, -1));
}

/**
 * Traces the eval step: the loss sum (`loss_sum`) of one [B, L] batch (feeds of micro-batch 0); `dft`: the DFT loss,
 * as HF's prediction_step computes the eval loss with the trainer's compute_loss_func. `accuracy` (LF's
 * compute_accuracy) also outputs `correct` [B·L] ({@linkcode argmaxMatches}; feed `vocab_ids`).
 */
export function traceEvalStep(model: Model, B: number, L: number, dft = false, accuracy = false): Graph {
  const g = new Graph();
  if (!accuracy) {
    g.output("loss_sum", microLoss(model, g, 0, { B, L, dft }));
    return g;
  }
  // The logits exist anyway for the accuracy: the loss is taken from them (no fused head).
  const c = model.config;
  const out = traceDecoder(c, {
    ids: g.input("ids_0", [B, L], "i32"),
    positions: g.input("positions_0", [B, L], "i32"),
    segments: g.input("segments_0", [B, L], "i32"),
  }, model.weights(g, {}));
  const labels = g.input("labels_0", [B * L], "i32");
  const logits = reshape(out.logits, [B * L, c.vocab]);
  g.output("loss_sum", dft ? dftLossSum(logits, labels) : crossEntropy(logits, labels, { reduction: "sum" }));
  g.output("correct", argmaxMatches(logits, labels, g.input("vocab_ids", [c.vocab])));
  return g;
}
