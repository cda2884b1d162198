/**
 * The losses and metrics of LLaMA-Factory's preference stages as graph functions on per-sequence log-probabilities
 * (all vectors [B] f32, one entry per pair or example of a micro-batch):
 *
 * - dpo (`CustomDPOTrainer`): `pref_loss` sigmoid (with `dpo_label_smoothing`, cDPO), hinge, ipo and kto_pair
 *   against a reference (TRL's old `dpo_loss`; kto_pair as TRL 0.8.6 wrote it, fixtures/pref/make_kto_pair.py), orpo and simpo without one (LF's `odds_ratio_loss`, `simpo_loss`); LF feeds
 *   average log-probs for ipo / orpo / simpo and sums for sigmoid / hinge ({@link averagesLogps}); `pref_ftx` adds
 *   ftx · (−mean log-prob of the chosen response).
 * - kto (`CustomKTOTrainer` over TRL's kto loss): desirable / undesirable weights, the batch KL estimate from the
 *   mismatched (prompt, other response) rows, clamped at 0 and without gradient, and LF's rescaled ftx term.
 * - rm (`PairwiseTrainer`): −log σ(score_chosen − score_rejected) and the pairwise accuracy.
 *
 * Padding rows (a micro-batch that is not full) carry `rows` = 0 and drop out of every mean. Rewards are detached as
 * TRL detaches them. Metric keys are LF's; {@link prefLogs} turns summed metrics into the values LF logs.
 * @module
 */
import {
  add,
  concat,
  div,
  exp,
  gt,
  log,
  maximum,
  mul,
  neg,
  relu,
  reshape,
  sigmoid,
  slice,
  sub,
  sum,
  type Tensor,
} from "../../graph/mod.ts";
import { stopGradient } from "../../graph/ops/stop_gradient.ts";

/** `pref_loss` values of stage dpo that Whetstone implements. */
export const PREF_LOSSES = ["sigmoid", "hinge", "ipo", "kto_pair", "orpo", "simpo"] as const;
/** One of {@link PREF_LOSSES}. */
export type PrefLossType = typeof PREF_LOSSES[number];

/** Hyper-parameters of stage dpo. */
export interface PrefLossConfig {
  loss: PrefLossType;
  /** pref_beta. */
  beta: number;
  /** pref_ftx: weight of the SFT term on the chosen response (0: none). */
  ftx: number;
  /** dpo_label_smoothing (sigmoid only). */
  labelSmoothing: number;
  /** simpo_gamma. */
  simpoGamma: number;
  /** pref_bco_weight: LF's BCO mixture with the losses that use a reference (0: off). */
  bcoWeight?: number;
}

/** Hyper-parameters of stage kto. */
export interface KtoConfig {
  beta: number;
  ftx: number;
  /** kto_chosen_weight (TRL's desirable_weight). */
  chosenWeight: number;
  /** kto_rejected_weight (TRL's undesirable_weight). */
  rejectedWeight: number;
}

/** LF's argument names (RLHFArguments) as they come from YAML. */
export interface PrefArgs {
  pref_beta?: number;
  pref_ftx?: number;
  pref_loss?: string;
  dpo_label_smoothing?: number;
  simpo_gamma?: number;
  pref_bco_weight?: number;
  kto_chosen_weight?: number;
  kto_rejected_weight?: number;
}

function positive(name: string, v: number): number {
  if (!(Number.isFinite(v) && v > 0)) throw new Error(`${name} must be a positive number, got ${v}`);
  return v;
}

function nonNegative(name: string, v: number): number {
  if (!(Number.isFinite(v) && v >= 0)) throw new Error(`${name} must be a number ≥ 0, got ${v}`);
  return v;
}

/** Stage dpo's config from LF's arguments, with LF's defaults (beta 0.1, sigmoid, simpo_gamma 0.5) and checks. */
export function prefLossConfig(a: PrefArgs = {}): PrefLossConfig {
  const loss = a.pref_loss ?? "sigmoid";
  if (!(PREF_LOSSES as readonly string[]).includes(loss)) {
    throw new Error(`pref_loss must be one of ${PREF_LOSSES.join(", ")}, got "${loss}"`);
  }
  const labelSmoothing = a.dpo_label_smoothing ?? 0;
  if (!(labelSmoothing >= 0 && labelSmoothing <= 0.5)) {
    throw new Error(`dpo_label_smoothing must be in [0, 0.5], got ${labelSmoothing}`);
  }
  if (loss !== "sigmoid" && labelSmoothing > 1e-6) {
    throw new Error(`\`dpo_label_smoothing\` is only valid for sigmoid loss function (pref_loss is "${loss}").`);
  }
  return {
    loss: loss as PrefLossType,
    beta: positive("pref_beta", a.pref_beta ?? 0.1),
    ftx: nonNegative("pref_ftx", a.pref_ftx ?? 0),
    labelSmoothing,
    simpoGamma: nonNegative("simpo_gamma", a.simpo_gamma ?? 0.5),
    bcoWeight: nonNegative("pref_bco_weight", a.pref_bco_weight ?? 0),
  };
}

/** Stage kto's config from LF's arguments (beta 0.1, weights 1 and 1 by default). */
export function ktoConfig(a: PrefArgs = {}): KtoConfig {
  return {
    beta: positive("pref_beta", a.pref_beta ?? 0.1),
    ftx: nonNegative("pref_ftx", a.pref_ftx ?? 0),
    chosenWeight: nonNegative("kto_chosen_weight", a.kto_chosen_weight ?? 1),
    rejectedWeight: nonNegative("kto_rejected_weight", a.kto_rejected_weight ?? 1),
  };
}

/** LF feeds average log-probs (sum / response tokens) to ipo, orpo and simpo, sums to sigmoid and hinge. */
export const averagesLogps = (loss: PrefLossType): boolean => loss === "ipo" || loss === "orpo" || loss === "simpo";

/** Whether the loss needs a reference model (LF's `use_ref_model`: stage dpo except orpo and simpo; kto always). */
export const usesReference = (loss: PrefLossType): boolean => loss !== "orpo" && loss !== "simpo";

/**
 * log σ(x), finite for every x, with the exact gradient σ(−x) everywhere (0 included): with s = [x < 0] (constant),
 * log σ(x) = s·x − log(1 + exp(−|x|)) where −|x| = (2s − 1)·x.
 */
export function logSigmoid(x: Tensor): Tensor {
  const s = gt(0, x);
  return sub(mul(s, x), log(add(exp(mul(sub(mul(s, 2), 1), x)), 1)));
}

/** log(1 − exp(x)) for x < 0 (LF's `torch.log1p(-torch.exp(x))`). */
export const log1mExp = (x: Tensor): Tensor => log(sub(1, exp(x)));

/** Σ x·rows / max(Σ rows, 1): the mean over the real rows of a micro-batch. */
export function maskedMean(x: Tensor, rows: Tensor): Tensor {
  return div(sum(mul(x, rows)), maximum(sum(rows), 1));
}

/** Per-pair log-probabilities of stage dpo (each [B]). */
export interface DpoLogps {
  /** Policy log-probs of the chosen / rejected responses, as the loss takes them (means or sums). */
  chosen: Tensor;
  rejected: Tensor;
  /** Reference log-probs, same kind (losses with a reference only). */
  refChosen?: Tensor;
  refRejected?: Tensor;
  /** Mean log-prob per token of the chosen response under the policy (LF's `chosen_logps_avg`). */
  chosenAvg: Tensor;
}

/** Per-pair results of {@link dpoLosses} (each [B]). */
export interface DpoLosses {
  /** Losses, the ftx term included. */
  losses: Tensor;
  /** Detached rewards: β·(policy − reference), or β·policy without a reference. */
  chosenRewards: Tensor;
  rejectedRewards: Tensor;
  /** −chosenAvg. */
  sftLoss: Tensor;
}

/**
 * kto_pair's per-pair losses (TRL 0.8.6 `dpo_loss`, "eqn (7) of the HALOs paper"): KL estimates are the batch means
 * (over the real rows) of the log-ratios, clamped at 0 and not detached; each half takes the other half's KL. TRL
 * averages the 2B losses; the pair's mean of its two halves averaged over pairs is the same number.
 */
function ktoPairLosses(chosenRatio: Tensor, rejectedRatio: Tensor, rows: Tensor, beta: number): Tensor {
  const chosenKl = relu(maskedMean(chosenRatio, rows)), rejectedKl = relu(maskedMean(rejectedRatio, rows));
  const lc = sub(1, sigmoid(mul(sub(chosenRatio, rejectedKl), beta)));
  const lr = sub(1, sigmoid(mul(sub(chosenKl, rejectedRatio), beta)));
  return mul(add(lc, lr), 0.5);
}

/**
 * LF's BCO term (CustomDPOTrainer.bco_loss): −log σ(β·chosen log-ratio − δ) − log σ(−(β·rejected log-ratio − δ)),
 * δ the running mean of the batches' mean reward (TRL's RunningMoments, updated before use; without gradient).
 */
export function bcoLosses(chosenRatio: Tensor, rejectedRatio: Tensor, delta: Tensor, beta: number): Tensor {
  return sub(
    neg(logSigmoid(sub(mul(chosenRatio, beta), delta))),
    logSigmoid(neg(sub(mul(rejectedRatio, beta), delta))),
  );
}

/**
 * TRL's `RunningMoments.update` of the mean with one scalar (LF passes the batch's mean reward, so count grows by
 * 1): `running` [2] = (mean, count) → the updated (mean, count). The count starts at 1e-24 (TRL's default).
 */
export function runningMeanUpdate(running: Tensor, x: Tensor): Tensor {
  const mean = reshape(slice(running, 0, 0, 1), []), count = reshape(slice(running, 0, 1, 2), []);
  const tot = add(count, 1);
  const next = add(mean, div(sub(x, mean), tot));
  return concat([reshape(next, [1]), reshape(tot, [1])], 0);
}

/** Stage dpo's per-pair losses, as LF's `compute_preference_loss` + ftx (`rows`: kto_pair's batch KL means). */
export function dpoLosses(
  x: DpoLogps,
  cfg: PrefLossConfig,
  rows?: Tensor,
  bco?: { delta: Tensor },
): DpoLosses {
  const { beta } = cfg;
  const c = x.chosen, r = x.rejected;
  let losses: Tensor, chosenRewards: Tensor, rejectedRewards: Tensor;
  if (!usesReference(cfg.loss)) {
    if (cfg.loss === "orpo") {
      // log_odds = (c − r) − (log(1 − e^c) − log(1 − e^r)); loss = −c + β·(−log σ(log_odds))
      const logOdds = sub(sub(c, r), sub(log1mExp(c), log1mExp(r)));
      losses = add(neg(c), mul(neg(logSigmoid(logOdds)), beta));
    } else {
      // simpo: −log σ(β·((c − r) − γ/β))
      losses = neg(logSigmoid(mul(sub(sub(c, r), cfg.simpoGamma / beta), beta)));
    }
    chosenRewards = mul(stopGradient(c), beta);
    rejectedRewards = mul(stopGradient(r), beta);
  } else {
    if (!x.refChosen || !x.refRejected) throw new Error(`pref_loss "${cfg.loss}" needs reference log-probs`);
    const rc = stopGradient(x.refChosen), rr = stopGradient(x.refRejected);
    const logits = sub(sub(c, r), sub(rc, rr)); // π log-ratio − reference log-ratio
    if (cfg.loss === "sigmoid") {
      const ls = cfg.labelSmoothing;
      const bl = mul(logits, beta);
      losses = mul(logSigmoid(bl), -(1 - ls));
      if (ls > 0) losses = sub(losses, mul(logSigmoid(neg(bl)), ls));
    } else if (cfg.loss === "hinge") {
      losses = relu(sub(1, mul(logits, beta)));
    } else if (cfg.loss === "kto_pair") {
      if (!rows) throw new Error('pref_loss "kto_pair" needs the batch rows (its KL estimate is a batch mean)');
      losses = ktoPairLosses(sub(c, rc), sub(r, rr), rows, beta);
    } else {
      const d = sub(logits, 1 / (2 * beta));
      losses = mul(d, d);
    }
    chosenRewards = mul(stopGradient(sub(c, rc)), beta);
    rejectedRewards = mul(stopGradient(sub(r, rr)), beta);
    const w = cfg.bcoWeight ?? 0;
    if (w > 1e-6) {
      if (!bco) throw new Error("pref_bco_weight needs the running reward mean");
      // losses = (losses + bco · w) / (1 + w): LF re-weights W_p and W_q.
      losses = mul(add(losses, mul(bcoLosses(sub(c, rc), sub(r, rr), bco.delta, beta), w)), 1 / (1 + w));
    }
  }
  const sftLoss = neg(x.chosenAvg);
  if (cfg.ftx > 1e-6) losses = add(losses, mul(sftLoss, cfg.ftx));
  return { losses, chosenRewards, rejectedRewards, sftLoss };
}

/** Optional logit means for the `logits/…` metrics: Σ over completion positions of the vocabulary-mean logit. */
export interface LogitSums {
  chosenSum: Tensor;
  chosenCount: Tensor;
  rejectedSum: Tensor;
  rejectedCount: Tensor;
}

/** Names of the metric vector of a stage, in order (LF's keys; kto's are sums and counts, rm's counts). */
export function metricNames(stage: "dpo" | "kto" | "rm", loss?: PrefLossType): string[] {
  if (stage === "kto") {
    return [
      "rewards/chosen_sum",
      "logps/chosen_sum",
      "count/chosen",
      "rewards/rejected_sum",
      "logps/rejected_sum",
      "count/rejected",
      "kl",
    ];
  }
  if (stage === "rm") return ["correct", "pairs"];
  const names = [
    "rewards/chosen",
    "rewards/rejected",
    "rewards/accuracies",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
    "logits/chosen",
    "logits/rejected",
  ];
  return loss === "orpo" ? [...names, "sft_loss", "odds_ratio_loss"] : names;
}

/**
 * Stage dpo's micro-batch loss (mean over real pairs) and metrics (means over real pairs; `logits/…` as TRL 1.13
 * computes them: the vocabulary-mean logit averaged over the completion positions, 0 when `logits` is not given).
 */
export function dpoObjective(
  x: DpoLogps,
  rows: Tensor,
  cfg: PrefLossConfig,
  logits?: LogitSums,
  bco?: { running: Tensor },
): { loss: Tensor; metrics: Tensor[]; running?: Tensor } {
  let running: Tensor | undefined, delta: Tensor | undefined;
  if ((cfg.bcoWeight ?? 0) > 1e-6 && usesReference(cfg.loss)) {
    if (!bco || !x.refChosen || !x.refRejected) throw new Error("pref_bco_weight needs the running reward mean");
    // LF: rewards = cat(chosen_rewards, rejected_rewards).mean().detach(); running.update(rewards); δ = running.mean.
    const cr = mul(sub(x.chosen, x.refChosen), cfg.beta), rr = mul(sub(x.rejected, x.refRejected), cfg.beta);
    running = runningMeanUpdate(bco.running, stopGradient(maskedMean(mul(add(cr, rr), 0.5), rows)));
    delta = stopGradient(reshape(slice(running, 0, 0, 1), []));
  }
  const o = dpoLosses(x, cfg, rows, delta && { delta });
  const m = (t: Tensor) => maskedMean(stopGradient(t), rows);
  const zero = rows.graph.scalar(0);
  const ratio = (s: Tensor, n: Tensor) => div(stopGradient(s), maximum(n, 1));
  const metrics = [
    m(o.chosenRewards),
    m(o.rejectedRewards),
    m(gt(o.chosenRewards, o.rejectedRewards)),
    m(sub(o.chosenRewards, o.rejectedRewards)),
    m(x.chosen),
    m(x.rejected),
    logits ? ratio(logits.chosenSum, logits.chosenCount) : zero,
    logits ? ratio(logits.rejectedSum, logits.rejectedCount) : zero,
  ];
  if (cfg.loss === "orpo") metrics.push(m(o.sftLoss), m(div(sub(o.losses, o.sftLoss), cfg.beta)));
  return { loss: maskedMean(o.losses, rows), metrics, ...(running ? { running } : {}) };
}

/** Per-example log-probabilities of stage kto (each [B]). */
export interface KtoLogps {
  /** Policy log-prob sums of the examples. */
  logps: Tensor;
  /** Mean log-prob per response token (for ftx). */
  avg: Tensor;
  /** 1 desirable (kto_tag true), 0 undesirable. */
  tags: Tensor;
  /** Policy log-prob sums of the KL rows (no gradient flows through them). */
  klLogps: Tensor;
  refLogps: Tensor;
  refKlLogps: Tensor;
}

/**
 * Stage kto's micro-batch loss and metrics, as TRL's kto loss and LF's `get_batch_loss_metrics`:
 * kl = max(mean(KL policy − KL reference), 0) (detached); desirable 1 − σ(β(logratio − kl)), undesirable
 * 1 − σ(β(kl − logratio)), weighted, averaged over all real rows; ftx adds ftx · mean(−avg over desirable) / n_d · n.
 */
export function ktoObjective(x: KtoLogps, rows: Tensor, cfg: KtoConfig): { loss: Tensor; metrics: Tensor[] } {
  const { beta } = cfg;
  const kl = maximum(maskedMean(stopGradient(sub(x.klLogps, x.refKlLogps)), rows), 0);
  const logratio = sub(x.logps, stopGradient(x.refLogps));
  const chosenLoss = sub(1, sigmoid(mul(sub(logratio, kl), beta)));
  const rejectedLoss = sub(1, sigmoid(mul(sub(kl, logratio), beta)));
  const yes = mul(x.tags, rows), no = mul(sub(1, x.tags), rows);
  const losses = add(
    mul(chosenLoss, mul(x.tags, cfg.chosenWeight)),
    mul(rejectedLoss, mul(sub(1, x.tags), cfg.rejectedWeight)),
  );
  let loss = maskedMean(losses, rows);
  const nYes = sum(yes), nNo = sum(no);
  if (cfg.ftx > 1e-6) {
    // LF: ftx · sft_loss.nanmean() / len(chosen) · len(batch); 0 when the micro-batch has no desirable example.
    const n = maximum(nYes, 1);
    loss = add(loss, mul(div(div(mul(sum(mul(neg(x.avg), yes)), sum(rows)), n), n), cfg.ftx));
  }
  const rewards = mul(stopGradient(logratio), beta);
  const lp = stopGradient(x.logps);
  const metrics = [
    sum(mul(rewards, yes)),
    sum(mul(lp, yes)),
    nYes,
    sum(mul(rewards, no)),
    sum(mul(lp, no)),
    nNo,
    kl,
  ];
  return { loss, metrics };
}

/** Stage rm's micro-batch loss (mean over real pairs of −log σ(c − r)) and metrics [pairs with c > r, pairs]. */
export function rmObjective(chosen: Tensor, rejected: Tensor, rows: Tensor): { loss: Tensor; metrics: Tensor[] } {
  const loss = maskedMean(neg(logSigmoid(sub(chosen, rejected))), rows);
  const correct = sum(mul(gt(stopGradient(chosen), stopGradient(rejected)), rows));
  return { loss, metrics: [correct, sum(rows)] };
}

/**
 * The metric values LF logs, from metric vectors summed over `microBatches` micro-batches (the `metric_sums` of a
 * step graph between two logs): dpo — each key's mean over micro-batches (LF averages its stored per-batch means);
 * kto — rewards/chosen, logps/chosen, rewards/rejected, logps/rejected as totals over counts, rewards/margins, kl
 * (TRL's `log`); rm — accuracy = correct / pairs, which LF reports only at evaluation (`eval_accuracy`), so it is
 * returned only with the "eval_" prefix. `prefix` is "" (training) or "eval_".
 */
export function prefLogs(
  stage: "dpo" | "kto" | "rm",
  names: readonly string[],
  sums: ArrayLike<number>,
  microBatches: number,
  prefix = "",
): Record<string, number> {
  if (sums.length !== names.length) throw new Error(`prefLogs: ${sums.length} sums for ${names.length} metrics`);
  const v = (k: string) => sums[names.indexOf(k)];
  const out: Record<string, number> = {};
  if (stage === "dpo") {
    if (microBatches > 0) names.forEach((k, i) => (out[prefix + k] = sums[i] / microBatches));
  } else if (stage === "kto") {
    for (const s of ["chosen", "rejected"]) {
      const n = v(`count/${s}`);
      if (n > 0) {
        out[`${prefix}rewards/${s}`] = v(`rewards/${s}_sum`) / n;
        out[`${prefix}logps/${s}`] = v(`logps/${s}_sum`) / n;
      }
    }
    if (`${prefix}rewards/chosen` in out && `${prefix}rewards/rejected` in out) {
      out[`${prefix}rewards/margins`] = out[`${prefix}rewards/chosen`] - out[`${prefix}rewards/rejected`];
    }
    if (microBatches > 0) out[`${prefix}kl`] = v("kl") / microBatches;
  } else if (prefix === "eval_" && v("pairs") > 0) {
    out.eval_accuracy = v("correct") / v("pairs");
  }
  return out;
}
