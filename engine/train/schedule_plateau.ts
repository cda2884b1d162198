/**
 * `lr_scheduler_type: reduce_lr_on_plateau`: torch's `ReduceLROnPlateau`, which transformers' `get_scheduler` returns
 * for it with `lr_scheduler_kwargs` as its keyword arguments. Its lr moves with evaluations, not with steps.
 * @module
 */

/** torch's `ReduceLROnPlateau` options (its defaults: min, 0.1, 10, 1e-4, rel, 0, 0, 1e-8). */
export interface PlateauOptions {
  mode?: "min" | "max";
  factor?: number;
  patience?: number;
  threshold?: number;
  thresholdMode?: "rel" | "abs";
  cooldown?: number;
  minLr?: number;
  eps?: number;
}

/**
 * torch.optim.lr_scheduler.ReduceLROnPlateau (torch 2.x `step`, `_reduce_lr`, `_is_better`) for one param group:
 * the lr starts at `baseLr` (no warmup: HF builds it without one) and is cut by `factor` when the metric fed to
 * {@linkcode PlateauScheduler.step} (HF Trainer: `eval_<metric_for_best_model>` after each evaluation) has not
 * improved for more than `patience` evaluations. Training steps leave it alone.
 */
export class PlateauScheduler {
  /** The lr the next optimizer steps use. */
  lr: number;
  best: number;
  numBadEpochs = 0;
  cooldownCounter = 0;
  lastEpoch = 0;
  readonly o: Required<PlateauOptions>;

  constructor(baseLr: number, o: PlateauOptions = {}) {
    this.o = {
      mode: o.mode ?? "min",
      factor: o.factor ?? 0.1,
      patience: o.patience ?? 10,
      threshold: o.threshold ?? 1e-4,
      thresholdMode: o.thresholdMode ?? "rel",
      cooldown: o.cooldown ?? 0,
      minLr: o.minLr ?? 0,
      eps: o.eps ?? 1e-8,
    };
    if (this.o.factor >= 1.0) throw new Error("lr_scheduler_kwargs.factor: Factor should be < 1.0.");
    this.lr = baseLr;
    this.best = this.o.mode === "min" ? Infinity : -Infinity;
  }

  /** From `lr_scheduler_kwargs` (snake_case, as checked by {@linkcode schedulerKwargsProblems}). */
  static fromKwargs(baseLr: number, kw: Record<string, unknown>): PlateauScheduler {
    return new PlateauScheduler(baseLr, {
      mode: kw.mode as "min" | "max" | undefined,
      factor: kw.factor as number | undefined,
      patience: kw.patience as number | undefined,
      threshold: kw.threshold as number | undefined,
      thresholdMode: kw.threshold_mode as "rel" | "abs" | undefined,
      cooldown: kw.cooldown as number | undefined,
      minLr: kw.min_lr as number | undefined,
      eps: kw.eps as number | undefined,
    });
  }

  #isBetter(a: number): boolean {
    const { mode, thresholdMode: tm, threshold: t } = this.o, best = this.best;
    if (mode === "min" && tm === "rel") return a < best * (1.0 - t);
    if (mode === "min") return a < best - t;
    if (tm === "rel") return a > best * (t + 1.0);
    return a > best + t;
  }

  /** One evaluation's metric. */
  step(metric: number): void {
    this.lastEpoch += 1;
    if (this.#isBetter(metric)) {
      this.best = metric;
      this.numBadEpochs = 0;
    } else this.numBadEpochs += 1;
    if (this.cooldownCounter > 0) {
      this.cooldownCounter -= 1;
      this.numBadEpochs = 0;
    }
    if (this.numBadEpochs > this.o.patience) {
      const newLr = Math.max(this.lr * this.o.factor, this.o.minLr);
      if (this.lr - newLr > this.o.eps) this.lr = newLr;
      this.cooldownCounter = this.o.cooldown;
      this.numBadEpochs = 0;
    }
  }

  /** Puts back a {@linkcode PlateauScheduler.state} (from a checkpoint's scheduler.json). */
  restore(s: Omit<ReturnType<PlateauScheduler["state"]>, "best"> & { best: number | null }): void {
    for (const [k, v] of Object.entries(s)) {
      if (typeof v !== "number" && v !== null) throw new Error(`scheduler.json: plateau.${k}: expected a number`);
    }
    this.lr = s.lr;
    // JSON writes ±Infinity as null: the initial best.
    this.best = s.best ?? (this.o.mode === "min" ? Infinity : -Infinity);
    this.numBadEpochs = s.num_bad_epochs;
    this.cooldownCounter = s.cooldown_counter;
    this.lastEpoch = s.last_epoch;
  }

  /** The state a checkpoint keeps (torch's state_dict fields that change). */
  state(): { lr: number; best: number; num_bad_epochs: number; cooldown_counter: number; last_epoch: number } {
    return {
      lr: this.lr,
      best: this.best,
      num_bad_epochs: this.numBadEpochs,
      cooldown_counter: this.cooldownCounter,
      last_epoch: this.lastEpoch,
    };
  }
}
