/**
 * When a run logs, evaluates and saves, as HF's `Trainer` decides it (`DefaultFlowCallback`), from the keys
 * `logging_strategy` / `logging_steps` / `logging_first_step`, `eval_strategy` / `eval_steps` and `save_strategy` /
 * `save_steps`:
 *
 * - a step count below 1 is a ratio of the total optimizer steps, `ceil(total * ratio)` ({@linkcode resolveSteps},
 *   as HF's `_inner_training_loop` resolves it once the total is known);
 * - "steps": at every step that is a multiple of the count; "epoch": at each epoch's end (the run's last step ends
 *   an epoch too, as HF calls `on_epoch_end` after a `max_steps` stop); "no": never;
 * - `logging_first_step`: also log after step 1; with save_strategy "steps" the last step also saves.
 *
 * The loop makes the plan once ({@linkcode intervalPlan}) and asks {@linkcode stepActions} after each optimizer step.
 * @module
 */
import type { TrainArgs } from "./train_args.ts";

/** One of logging, evaluation, saving: never, every `every` steps, or at each epoch's end. */
export type Interval = { strategy: "no" } | { strategy: "steps"; every: number } | { strategy: "epoch" };

/** The resolved schedule of a run's logging, evaluation and saving. */
export interface IntervalPlan {
  logging: Interval;
  eval: Interval;
  save: Interval;
  /** HF's `logging_first_step`: log after step 1 too. */
  logFirstStep: boolean;
}

/** What to do after an optimizer step. */
export interface StepActions {
  log: boolean;
  evaluate: boolean;
  save: boolean;
}

/**
 * HF's reading of logging_steps / eval_steps / save_steps: below 1, a ratio of the total steps (rounded up, at least
 * 1 when the ratio is positive); otherwise the count itself.
 */
export function resolveSteps(ratioOrSteps: number, totalSteps: number): number {
  if (!(ratioOrSteps >= 0)) throw new RangeError(`expected a step count or a ratio >= 0, got ${ratioOrSteps}`);
  if (ratioOrSteps >= 1) return Math.trunc(ratioOrSteps);
  return ratioOrSteps > 0 ? Math.max(1, Math.ceil(totalSteps * ratioOrSteps)) : 0;
}

function interval(strategy: string, steps: number | null, totalSteps: number): Interval {
  if (strategy === "epoch") return { strategy: "epoch" };
  const every = strategy === "steps" && steps ? resolveSteps(steps, totalSteps) : 0;
  return every > 0 ? { strategy: "steps", every } : { strategy: "no" };
}

/** The run's plan, once its total optimizer steps are known. */
export function intervalPlan(
  a: Pick<
    TrainArgs,
    | "logging_strategy"
    | "logging_steps"
    | "logging_first_step"
    | "eval_strategy"
    | "eval_steps"
    | "save_strategy"
    | "save_steps"
  >,
  totalSteps: number,
): IntervalPlan {
  return {
    logging: interval(a.logging_strategy, a.logging_steps, totalSteps),
    eval: interval(a.eval_strategy, a.eval_steps, totalSteps),
    save: interval(a.save_strategy, a.save_steps, totalSteps),
    logFirstStep: a.logging_first_step,
  };
}

function due(i: Interval, step: number, epochEnd: boolean): boolean {
  return i.strategy === "steps" ? step % i.every === 0 : i.strategy === "epoch" && epochEnd;
}

/**
 * HF's `DefaultFlowCallback` after optimizer step `step` (1-based) of `totalSteps`: `epochEnd` when the step ends
 * an epoch (or the run). Saving at the last step follows HF (save_strategy "steps" saves there too).
 */
export function stepActions(p: IntervalPlan, step: number, totalSteps: number, epochEnd: boolean): StepActions {
  const last = step >= totalSteps;
  return {
    log: due(p.logging, step, epochEnd || last) || (p.logFirstStep && step === 1),
    evaluate: due(p.eval, step, epochEnd || last),
    save: due(p.save, step, epochEnd || last) || (last && p.save.strategy === "steps"),
  };
}
