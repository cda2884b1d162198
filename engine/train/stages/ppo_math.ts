/**
 * The host-side arithmetic of stage ppo, as TRL 0.9's `PPOTrainer` (which LLaMA-Factory's `CustomPPOTrainer` runs)
 * computes it, per sequence over its response tokens: the per-token rewards (KL penalty against the reference, the
 * score added at the last token), GAE advantages and returns, masked whitening, the adaptive KL controller and the
 * running score moments of `ppo_score_norm`. All in f64 on arrays of a batch's response positions (the mask of TRL's
 * padded tensors is the response span, so a ragged list of per-sequence arrays holds the same numbers).
 * @module
 */

/** TRL's PPOConfig values that LF leaves at their defaults. */
export const PPO_DEFAULTS = {
  /** Initial KL coefficient (`init_kl_coef`). */
  initKlCoef: 0.2,
  /** KL controller horizon. */
  horizon: 10000,
  gamma: 1,
  lam: 0.95,
  /** Policy ratio clip range. */
  cliprange: 0.2,
  /** Value clip range. */
  cliprangeValue: 0.2,
  /** Weight of the value loss. */
  vfCoef: 0.1,
  /** A mini-batch whose mean ratio exceeds this is skipped (its loss zeroed). */
  ratioThreshold: 10,
} as const;

/** TRL's `AdaptiveKLController` (Ziegler et al.): the coefficient moves towards `target` KL. */
export class AdaptiveKlController {
  constructor(public value: number, readonly target: number, readonly horizon: number) {}

  /** After a step with mean KL `current` over `nSteps` sequences. */
  update(current: number, nSteps: number): void {
    const err = Math.min(Math.max(current / this.target - 1, -0.2), 0.2);
    this.value *= 1 + (err * nSteps) / this.horizon;
  }
}

/** TRL's `RunningMoments`: running mean and (unbiased) std of the scores, merged batch by batch. */
export class RunningMoments {
  mean = 0;
  std = 1;
  var = 1;
  count = 1e-24;

  /** Merges a batch; returns its own mean and unbiased std. */
  update(xs: readonly number[]): { mean: number; std: number } {
    const n = xs.length;
    const m = xs.reduce((a, b) => a + b, 0) / n;
    const v = xs.reduce((a, b) => a + (b - m) ** 2, 0) / n; // biased
    const delta = m - this.mean, tot = this.count + n;
    const oldSum = this.var * this.count + (delta * delta * this.count * n) / tot;
    const newVar = (oldSum + v * n) / tot;
    this.mean += (delta * n) / tot;
    this.std = Math.sqrt((newVar * tot) / (tot - 1));
    this.var = newVar;
    this.count = tot;
    return { mean: m, std: Math.sqrt((v * n) / (n - 1)) };
  }
}

/** Masked mean and unbiased variance over every position of every sequence (TRL's `masked_mean`, `masked_var`). */
export function moments(xs: readonly (readonly number[])[]): { mean: number; var: number } {
  let n = 0, s = 0;
  for (const x of xs) for (const v of x) (s += v, n++);
  const mean = n ? s / n : 0;
  let q = 0;
  for (const x of xs) for (const v of x) q += (v - mean) ** 2;
  if (n < 2) return { mean, var: 0 };
  return { mean, var: (q / n) * (n / (n - 1)) };
}

/** TRL's `masked_whiten`: (x − mean) / √(var + 1e−8), the mean added back when `shiftMean` is false. */
export function whiten(xs: readonly (readonly number[])[], shiftMean = true): number[][] {
  const { mean, var: v } = moments(xs);
  const k = 1 / Math.sqrt(v + 1e-8);
  return xs.map((x) => x.map((t) => (t - mean) * k + (shiftMean ? 0 : mean)));
}

/** One sequence's rollout: per response token, log-probs under the policy and reference, and the values. */
export interface Rollout {
  logprobs: readonly number[];
  refLogprobs: readonly number[];
  values: readonly number[];
  /** The (possibly normalised) reward-model score. */
  score: number;
}

/** What {@link computeTargets} returns per sequence (response positions), and the batch's KL statistics. */
export interface Targets {
  /** Per-token rewards: −kl_coef·(logp − ref_logp), plus the score at the last token. */
  rewards: number[][];
  advantages: number[][];
  returns: number[][];
  /** Per sequence Σ_t (logp − ref_logp): TRL's `objective/kl` is their mean. */
  kls: number[];
  /** −kl_coef·Σ kl per sequence (TRL's `objective/kl_coef`-weighted non-score reward). */
  nonScore: number[];
}

/**
 * TRL's `compute_rewards` and `compute_advantages` (kl_penalty "kl"): GAE with γ, λ over each response, values and
 * rewards optionally whitened (rewards without shifting the mean), returns = advantages + values, then the advantages
 * whitened over the batch.
 */
export function computeTargets(
  rollouts: readonly Rollout[],
  klCoef: number,
  opts: { gamma?: number; lam?: number; whitenRewards?: boolean } = {},
): Targets {
  const gamma = opts.gamma ?? PPO_DEFAULTS.gamma, lam = opts.lam ?? PPO_DEFAULTS.lam;
  const kls: number[] = [], nonScore: number[] = [];
  let rewards = rollouts.map((r) => {
    const kl = r.logprobs.map((lp, t) => lp - r.refLogprobs[t]);
    const rw = kl.map((k) => -klCoef * k);
    kls.push(kl.reduce((a, b) => a + b, 0));
    nonScore.push(rw.reduce((a, b) => a + b, 0));
    if (rw.length) rw[rw.length - 1] += r.score;
    return rw;
  });
  if (opts.whitenRewards) rewards = whiten(rewards, false);
  const raw = rollouts.map((r, i) => {
    const v = r.values, rw = rewards[i], n = rw.length, adv = new Array<number>(n);
    let last = 0;
    for (let t = n - 1; t >= 0; t--) {
      const next = t < n - 1 ? v[t + 1] : 0;
      const delta = rw[t] + gamma * next - v[t];
      last = delta + gamma * lam * last;
      adv[t] = last;
    }
    return adv;
  });
  const returns = raw.map((a, i) => a.map((x, t) => x + rollouts[i].values[t]));
  return { rewards, advantages: whiten(raw), returns, kls, nonScore };
}
