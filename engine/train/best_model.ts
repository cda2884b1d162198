/**
 * HF's best-model tracking and LLaMA-Factory's early stopping, at each evaluation:
 *
 * - `metric_for_best_model` (`eval_` prepended when missing; "loss" when `load_best_model_at_end` sets none) and
 *   `greater_is_better` (default: the name does not end in "loss"): `Trainer._determine_best_metric` keeps
 *   `best_metric` and `best_global_step` (strictly better only; the first evaluation always sets them).
 * - `early_stopping_steps` (LF adds transformers' `EarlyStoppingCallback(early_stopping_patience=...)`, threshold 0):
 *   its `on_evaluate` runs before the best metric is updated, so an evaluation counts as an improvement when it beats
 *   the best of the earlier ones; `patience` evaluations in a row without one stop the training.
 * - `load_best_model_at_end`: the run ends by loading `checkpoint-<best_global_step>` (session_run.ts).
 * @module
 */
import type { TrainArgs } from "../config/args.ts";

/** What the tracking keeps across evaluations (best_metric and best_global_step go to trainer_state.json). */
export interface BestState {
  best_metric: number | null;
  best_global_step: number | null;
  /** EarlyStoppingCallback's early_stopping_patience_counter. */
  patience_counter: number;
}

/** A fresh {@linkcode BestState}. */
export const newBestState = (): BestState => ({ best_metric: null, best_global_step: null, patience_counter: 0 });

/** The metrics key checked (`eval_` + metric_for_best_model), or null when no metric is tracked. */
export function bestMetricKey(a: Pick<TrainArgs, "metric_for_best_model">): string | null {
  const m = a.metric_for_best_model;
  return m === null ? null : m.startsWith("eval_") ? m : `eval_${m}`;
}

/** What an evaluation decided. */
export interface BestDecision {
  /** The evaluation set a new best metric. */
  newBest: boolean;
  /** Early stopping ends the training after this evaluation. */
  stop: boolean;
}

/**
 * Updates `s` with the evaluation `metrics` at `step` (HF's order: EarlyStoppingCallback.on_evaluate, then
 * `_determine_best_metric`). Throws naming `metric_for_best_model` when the metrics lack it (HF's KeyError).
 */
export function onEvaluate(
  a: Pick<TrainArgs, "metric_for_best_model" | "greater_is_better" | "early_stopping_steps">,
  s: BestState,
  metrics: Record<string, unknown>,
  step: number,
): BestDecision {
  const key = bestMetricKey(a);
  if (key === null) return { newBest: false, stop: false };
  const value = metrics[key];
  if (typeof value !== "number") {
    throw new Error(
      `metric_for_best_model: '${key}' is not among the evaluation metrics (${Object.keys(metrics).join(", ")})`,
    );
  }
  const better = (x: number, best: number) => (a.greater_is_better ? x > best : x < best);
  let stop = false;
  if (a.early_stopping_steps !== null) {
    if (s.best_metric === null || (better(value, s.best_metric) && Math.abs(value - s.best_metric) > 0)) {
      s.patience_counter = 0;
    } else s.patience_counter++;
    stop = s.patience_counter >= a.early_stopping_steps;
  }
  const best = s.best_metric ?? (a.greater_is_better ? -Infinity : Infinity);
  const newBest = better(value, best);
  if (newBest) {
    s.best_metric = value;
    s.best_global_step = step;
  }
  return { newBest, stop };
}
