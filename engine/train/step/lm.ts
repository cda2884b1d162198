/**
 * The language-model objective of stages pt and sft: per micro-batch k, the summed token cross-entropy of its
 * shifted labels (through the fused LM head when the model has no final soft-cap, so the [tokens × vocab] logits
 * never exist), times `inv_targets` (1 / labelled positions of the whole step): the step's loss is the token mean over
 * all its micro-batches, as HF computes it with `num_items_in_batch`.
 *
 * Inputs per micro-batch k: ids_k, positions_k, segments_k [B, L] i32 and labels_k [B·L] i32 (shifted). Step-wide:
 * inv_targets, and a u32 seed when LoRA dropout is on. With NEFTune, noise_k [B, L, hidden] f32 per micro-batch (added to
 * the input embeddings: engine/nn/neftune.ts); with shift_attn, LongLoRA's S²-attention (engine/nn/longlora.ts). The
 * eval step has neither.
 * @module
 */
import { crossEntropy, Graph, linearCrossEntropy, mul, reshape, type Tensor } from "../../graph/mod.ts";
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
  const ce = c.finalSoftcap
    ? crossEntropy(reshape(out.logits, [B * L, c.vocab]), labels, { reduction: "sum" })
    : linearCrossEntropy(reshape(out.hidden, [B * L, c.hidden]), out.head, labels, { reduction: "sum" });
  return scale ? withRouterLoss(c.moe, out.routes, mul(ce, scale), inp.segments) : ce;
}

/** The LM objective (see the module doc). */
export function lmObjective(model: Model, o: LmOptions): Objective {
  return {
    key: "lm",
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

/** Traces the eval step: the loss sum (`loss_sum`) of one [B, L] batch (feeds of micro-batch 0). */
export function traceEvalStep(model: Model, B: number, L: number): Graph {
  const g = new Graph();
  g.output("loss_sum", microLoss(model, g, 0, { B, L }));
  return g;
}
