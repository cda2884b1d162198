/**
 * The traced graphs of stage ppo (TRL 0.9's `PPOTrainer` as LLaMA-Factory runs it), all on one executor's store:
 *
 * - {@link traceScores}: the reward model's score of each query + response, its value head at the last real token
 *   (LF's `get_rewards`); with LoRA the reward model is a {@link ModelView} of the policy's base with the reward
 *   adapter and head under its own prefix, so no second base model is loaded.
 * - {@link traceRollout}: per token of each sequence, the policy's log-prob of the next token, the reference's (the
 *   same weights without the adapter, or a frozen model) and the policy's value (its value head, the critic).
 *
 * With `shiftAttn` (LongLoRA's S²-attention, engine/nn/longlora.ts): LF patches the attention of the model it loads
 * for training, and the patch acts in training mode only; LF's `ppo_train` generates and scores in eval mode and runs
 * TRL's `step` in train mode. So S² is in the rollout's policy forward (log-probs, values), in its reference when that
 * is the policy without its adapter (LoRA: TRL's `optional_peft_ctx`; a separate reference model is loaded for
 * inference and keeps plain attention) and in the PPO update; not in {@link traceScores} nor in generation.
 * - {@link tracePpoStep}: one optimizer update over G micro-batches of B sequences: TRL's clipped policy loss and
 *   clipped value loss (masked means over the micro-batch's response tokens, summed as pg + vf_coef·vf, a micro-batch
 *   whose mean ratio exceeds `ratio_threshold` contributing nothing), averaged over the G micro-batches, then the
 *   shared clipping and AdamW / SGD update of the step builder (builder.ts).
 *
 * Feeds per micro-batch k: ids_k, positions_k, segments_k [B, L] i32 and labels_k [B·L] i32 (shifted: position t holds
 * token t + 1 where t + 1 is a response token, −100 elsewhere, so labels ≥ 0 is TRL's response mask); the PPO step
 * also takes old_logprobs_k, old_values_k, advantages_k, returns_k [B·L] f32 (0 off the mask), and inv_accum, lr, step.
 * Outputs of the PPO step: the builder's (loss: the update's mean loss, grad_norm, loss_sum) and stats [G, 5] (per
 * micro-batch: total loss, policy loss, value loss, mean ratio, policy clip fraction).
 * @module
 */
import {
  add,
  cast,
  concat,
  crossEntropy,
  div,
  exp,
  ge,
  Graph,
  gt,
  maximum,
  minimum,
  mul,
  neg,
  reshape,
  sub,
  sum,
  type Tensor,
} from "../../graph/mod.ts";
import { type DecoderInputs, traceDecoder } from "../../nn/decoder.ts";
import { stopGradient } from "../../graph/ops/stop_gradient.ts";
import type { Model } from "../../nn/model.ts";
import { lastTokenScores, traceValues } from "../../nn/value_head.ts";
import { PPO_DEFAULTS } from "../stages/ppo_math.ts";
import type { Objective } from "./objective.ts";
import { paramsOf } from "./params.ts";
import { type StepPlan, traceStep } from "./plan.ts";
import { baseWeights } from "./pref.ts";
import { s2AttendHook } from "../../nn/longlora.ts";
import type { DecoderWeights } from "../../nn/decoder.ts";

/** The reference of the rollout: "base" (the policy without its adapter) or a frozen model in the same executor. */
export type PpoReference = "base" | Model;

/** One PPO update: a {@link StepPlan} of G micro-batches of B sequences of length L. */
export type PpoStepPlan = StepPlan;

function inputs(g: Graph, k: number, B: number, L: number): DecoderInputs {
  return {
    ids: g.input(`ids_${k}`, [B, L], "i32"),
    positions: g.input(`positions_${k}`, [B, L], "i32"),
    segments: g.input(`segments_${k}`, [B, L], "i32"),
  };
}

/** Per-token log-probs [B·L] of `labels` (0 where a label is −100) from decoder logits [B, L, V]. */
function tokenLogprobs(logits: Tensor, labels: Tensor, B: number, L: number, V: number): Tensor {
  return neg(crossEntropy(reshape(logits, [B * L, V]), labels, { reduction: "none" }));
}

/** The reward model's scores [B] of B right-padded sequences (feeds of micro-batch 0): output `scores`. */
export function traceScores(reward: Model, B: number, L: number): Graph {
  const g = new Graph();
  const inp = inputs(g, 0, B, L);
  const out = traceDecoder(reward.config, inp, reward.weights(g));
  g.output("scores", lastTokenScores(traceValues(g, reward, out.hidden), inp.segments!));
  return g;
}

/**
 * The rollout's per-token numbers for B sequences (feeds of micro-batch 0): outputs `logprobs`, `ref_logprobs` and
 * `values`, each [B·L] (a position's value is the critic's at that position, which predicts the next token).
 */
export function traceRollout(model: Model, reference: PpoReference, B: number, L: number, shiftAttn = false): Graph {
  const g = new Graph(), c = model.config;
  const inp = inputs(g, 0, B, L);
  const labels = g.input("labels_0", [B * L], "i32");
  const pol = traceDecoder(c, inp, s2(model, model.weights(g), shiftAttn));
  g.output("logprobs", tokenLogprobs(pol.logits, labels, B, L, c.vocab));
  g.output("values", reshape(traceValues(g, model, pol.hidden), [B * L]));
  const rw = reference === "base" ? s2(model, baseWeights(model, g), shiftAttn) : reference.weights(g);
  const ref = traceDecoder(c, inp, rw);
  g.output("ref_logprobs", tokenLogprobs(ref.logits, labels, B, L, c.vocab));
  return g;
}

/** `w` with S²-attention when `on` (see the module doc). */
function s2(model: Model, w: DecoderWeights, on: boolean): DecoderWeights {
  return on ? { ...w, attend: s2AttendHook(model.config.attnScale) } : w;
}

/** TRL's `clip_by_value`. */
const clip = (x: Tensor, lo: Tensor, hi: Tensor) => maximum(minimum(x, hi), lo);

/**
 * Micro-batch k's PPO loss (TRL's `PPOTrainer.loss`): pg = masked mean of max(−A·r, −A·clip(r, 1 ± ε)), vf = ½ masked
 * mean of max((v − R)², (clip(v, v_old ± ε_v) − R)²), loss = pg + vf_coef·vf, zeroed when the mean ratio exceeds the
 * threshold. Returns the loss and its stats [total, pg, vf, mean ratio, clip fraction].
 */
export function ppoMicroLoss(
  model: Model,
  g: Graph,
  k: number,
  B: number,
  L: number,
  shiftAttn = false,
): { loss: Tensor; stats: Tensor } {
  const c = model.config, d = PPO_DEFAULTS;
  const inp = inputs(g, k, B, L);
  const labels = g.input(`labels_${k}`, [B * L], "i32");
  const f = (name: string) => g.input(`${name}_${k}`, [B * L]);
  const oldLogprobs = f("old_logprobs"), oldValues = f("old_values"), adv = f("advantages"), ret = f("returns");
  const mask = ge(cast(labels, "f32"), 0);
  const n = maximum(sum(mask), 1);
  const mmean = (x: Tensor) => div(sum(mul(x, mask)), n);
  const out = traceDecoder(c, inp, s2(model, model.weights(g), shiftAttn));
  const logprobs = tokenLogprobs(out.logits, labels, B, L, c.vocab);
  const vpred = reshape(traceValues(g, model, out.hidden), [B * L]);
  const vclipped = clip(vpred, sub(oldValues, d.cliprangeValue), add(oldValues, d.cliprangeValue));
  const sq = (x: Tensor) => mul(x, x);
  const vf = mul(mmean(maximum(sq(sub(vpred, ret)), sq(sub(vclipped, ret)))), 0.5);
  const ratio = exp(mul(sub(logprobs, oldLogprobs), mask));
  const pg1 = mul(neg(adv), ratio);
  const pg2 = mul(neg(adv), clip(ratio, g.scalar(1 - d.cliprange), g.scalar(1 + d.cliprange)));
  const pg = mmean(maximum(pg1, pg2));
  const avgRatio = stopGradient(mmean(ratio));
  const keep = ge(d.ratioThreshold, avgRatio);
  const loss = mul(add(pg, mul(vf, d.vfCoef)), keep);
  const clipfrac = mmean(gt(stopGradient(pg2), stopGradient(pg1)));
  const one = (x: Tensor) => reshape(stopGradient(x), [1]);
  const stats = concat([one(loss), one(mul(pg, keep)), one(mul(vf, keep)), one(avgRatio), one(clipfrac)], 0);
  return { loss, stats };
}

/** PPO's objective (see {@link ppoMicroLoss}): micro-batch losses times `inv_accum`, stats rows [G, 5]. */
export function ppoObjective(model: Model, B: number, L: number, shiftAttn = false): Objective {
  return {
    key: shiftAttn ? "ppo:s2" : "ppo",
    stats: 5,
    params: (g, names) => paramsOf(model, g, names),
    begin(g) {
      const invAccum = g.input("inv_accum", []);
      return (k) => {
        const mo = ppoMicroLoss(model, g, k, B, L, shiftAttn);
        return { loss: mul(mo.loss, invAccum), stats: mo.stats };
      };
    },
  };
}

/** Traces one PPO optimizer update of the policy (its adapter or trainable weights, and its value head). */
export function tracePpoStep(model: Model, p: PpoStepPlan): Graph {
  return traceStep(model, p, ppoObjective(model, p.B, p.L));
}
