/**
 * Learning-rate schedules, computed exactly as transformers' `get_scheduler` builds them (a torch `LambdaLR` whose
 * lr is `base_lr * lr_lambda(last_epoch)`), and the warmup length as `TrainingArguments.get_warmup_steps` computes it.
 *
 * ## Step convention
 *
 * `step` is the 0-based index of the optimizer step about to run, i.e. the scheduler's `last_epoch` at that time:
 * `lrAt(k, o)` is the lr the optimizer uses for its (k+1)-th update. HF Trainer calls `optimizer.step()` and then
 * `lr_scheduler.step()`, so after `global_step` updates the scheduler holds `lrAt(global_step, o)`.
 *
 * What lands in the logs (`trainer_state.json` `log_history[].learning_rate`, LLaMA-Factory's `trainer_log.jsonl` `lr`)
 * for the record with `step == global_step`:
 * - transformers >= 4.51 (huggingface/transformers#36973, and 5.x): the lr of the step just taken,
 *   `lrAt(global_step - 1, o)` — see {@linkcode loggedLrAt};
 * - transformers < 4.51: the lr of the *next* step, `lrAt(global_step, o)`.
 *
 * The goldens in `fixtures/schedules/golden.json` (made by `fixtures/schedules/make_schedules.py` with a real Trainer)
 * record both (`used` / `logged`, and `after` for the old convention).
 * @module
 */
import { SCHEDULER_TYPES, schedulerKwargsProblems, type SchedulerType, type WsdShape } from "../config/schedulers.ts";

export { SCHEDULER_KWARGS, SCHEDULER_TYPES, schedulerKwargsProblems } from "../config/schedulers.ts";
export type { SchedulerType, WsdShape } from "../config/schedulers.ts";

/** A schedule: HF's `get_scheduler(type, optimizer(lr=baseLr), warmupSteps, totalSteps, kwargs)`. */
export interface ScheduleOptions {
  type: SchedulerType;
  /** The optimizer's initial lr (`learning_rate`). */
  baseLr: number;
  /** Warmup steps (already resolved; see {@linkcode warmupStepsOf}). Ignored by `constant`. */
  warmupSteps: number;
  /** Total optimizer steps (`max_steps`). Used by the decaying schedules. */
  totalSteps: number;
  /** Cosine waves (`num_cycles`, default 0.5: a half cosine from baseLr down to 0 / the minimum). */
  numCycles?: number;
  /** `cosine_with_min_lr` / `cosine_warmup_with_min_lr`: the final lr (`minLrRate = minLr / baseLr` as HF does). */
  minLr?: number;
  /** The same as a fraction of baseLr. Exactly one of `minLr`, `minLrRate` must be set. */
  minLrRate?: number;
  /** `cosine_warmup_with_min_lr`: the first warmup step's lr as a fraction of baseLr (unset: `1 / warmupSteps`). */
  warmupLrRate?: number;
  /** `polynomial`: the final lr (`lr_end`, default 1e-7; must be below baseLr) and the power (default 1). */
  lrEnd?: number;
  power?: number;
  /** `inverse_sqrt`: `timescale` (default: the warmup steps, or 10000 without warmup). */
  timescale?: number;
  /** `warmup_stable_decay`: `num_decay_steps` (required), `num_stable_steps` (default: the rest). */
  decaySteps?: number;
  stableSteps?: number;
  /** `warmup_stable_decay`: shapes (default linear warmup, cosine decay) and `min_lr_ratio` (default 0). */
  warmupType?: WsdShape;
  decayType?: WsdShape;
  minLrRatio?: number;
}

function warmup(step: number, warmupSteps: number): number {
  return step / Math.max(1, warmupSteps);
}

function cosineFactor(step: number, o: ScheduleOptions, minLrRate: number): number {
  if (step < o.warmupSteps) return warmup(step, o.warmupSteps);
  const progress = (step - o.warmupSteps) / Math.max(1, o.totalSteps - o.warmupSteps);
  // Same operation order as transformers (math.pi * num_cycles * 2.0 * progress) so results agree to the last bit
  // wherever Math.cos agrees with libm's cos.
  let factor = 0.5 * (1.0 + Math.cos(Math.PI * (o.numCycles ?? 0.5) * 2.0 * progress));
  if (minLrRate !== 0) factor = factor * (1 - minLrRate) + minLrRate;
  return Math.max(0, factor);
}

/** The `min_lr_rate` of `cosine_with_min_lr` / `cosine_warmup_with_min_lr` as HF resolves it from `min_lr` / `min_lr_rate`. */
function resolveMinLrRate(o: ScheduleOptions): number {
  if (o.minLr !== undefined && o.minLrRate !== undefined) {
    throw new Error(`${o.type}: expected only one of minLr or minLrRate, got both (${o.minLr}, ${o.minLrRate})`);
  }
  if (o.minLr !== undefined) return o.minLr / o.baseLr;
  if (o.minLrRate !== undefined) return o.minLrRate;
  throw new Error(`${o.type}: expected one of minLr or minLrRate, got neither`);
}

/**
 * transformers' `_get_cosine_with_min_lr_schedule_with_warmup_lr_rate_lambda`: the warmup starts at `1 / warmupSteps`
 * (or `warmupLrRate`) rather than 0 and reaches baseLr on the last warmup step, and the cosine is one step ahead of
 * `cosine_with_min_lr`'s (`progress` counts the step about to run as done).
 */
function warmupCosineFactor(step: number, o: ScheduleOptions): number {
  const w = o.warmupSteps, minLrRate = resolveMinLrRate(o);
  if (step < w) {
    if (o.warmupLrRate === undefined) return (step + 1.0) / Math.max(1.0, w);
    return o.warmupLrRate + (1.0 - o.warmupLrRate) * step / Math.max(1, w - 1);
  }
  const progress = (step - w + 1.0) / Math.max(1.0, o.totalSteps - w);
  let factor = 0.5 * (1.0 + Math.cos(Math.PI * (o.numCycles ?? 0.5) * 2.0 * progress));
  factor = factor * (1 - minLrRate) + minLrRate;
  return Math.max(0, factor);
}

/** transformers' `_get_cosine_with_hard_restarts_schedule_with_warmup_lr_lambda` (num_cycles default 1). */
function restartsFactor(step: number, o: ScheduleOptions): number {
  if (step < o.warmupSteps) return warmup(step, o.warmupSteps);
  const progress = (step - o.warmupSteps) / Math.max(1, o.totalSteps - o.warmupSteps);
  if (progress >= 1.0) return 0.0;
  return Math.max(0.0, 0.5 * (1.0 + Math.cos(Math.PI * (((o.numCycles ?? 1) * progress) % 1.0))));
}

/** transformers' `_get_polynomial_decay_schedule_with_warmup_lr_lambda` (lr_init = baseLr). */
function polynomialFactor(step: number, o: ScheduleOptions): number {
  const lrEnd = o.lrEnd ?? 1e-7, power = o.power ?? 1.0, lrInit = o.baseLr;
  if (!(lrInit > lrEnd)) throw new Error(`lr_end (${lrEnd}) must be smaller than initial lr (${lrInit})`);
  if (step < o.warmupSteps) return warmup(step, o.warmupSteps);
  if (step > o.totalSteps) return lrEnd / lrInit;
  const lrRange = lrInit - lrEnd, decaySteps = o.totalSteps - o.warmupSteps;
  const pctRemaining = 1 - (step - o.warmupSteps) / decaySteps;
  return (lrRange * pctRemaining ** power + lrEnd) / lrInit;
}

/** transformers' `_get_inverse_sqrt_schedule_lr_lambda` (timescale default: warmup steps, or 10000). */
function inverseSqrtFactor(step: number, o: ScheduleOptions): number {
  const timescale = o.timescale ?? (o.warmupSteps || 10_000);
  if (step < o.warmupSteps) return warmup(step, o.warmupSteps);
  const shift = timescale - o.warmupSteps;
  return 1.0 / Math.sqrt((step + shift) / timescale);
}

/** transformers' `_get_wsd_scheduler_lambda` as `get_wsd_schedule` sets it up. */
function wsdFactor(step: number, o: ScheduleOptions): number {
  if (o.decaySteps === undefined) {
    throw new Error("warmup_stable_decay: lr_scheduler_kwargs.num_decay_steps is required");
  }
  const w = o.warmupSteps, d = o.decaySteps, s = o.stableSteps ?? o.totalSteps - w - d;
  const min = o.minLrRatio ?? 0, cycles = o.numCycles ?? 0.5;
  const shape = (f: number) => Math.max(0.0, f * (1.0 - min) + min);
  if (step < w) {
    const progress = step / Math.max(1, w), t = o.warmupType ?? "linear";
    return shape(
      t === "linear"
        ? progress
        : t === "cosine"
        ? 0.5 * (1.0 - Math.cos(Math.PI * progress))
        : 1.0 - Math.sqrt(1.0 - progress),
    );
  }
  if (step < w + s) return 1.0;
  if (step < w + s + d) {
    const progress = (step - w - s) / Math.max(1, d), t = o.decayType ?? "cosine";
    return shape(
      t === "linear"
        ? 1.0 - progress
        : t === "cosine"
        ? 0.5 * (1.0 + Math.cos(Math.PI * cycles * 2.0 * progress))
        : 1.0 - Math.sqrt(progress),
    );
  }
  return min;
}

/**
 * The schedule's multiplier `lr_lambda(step)` (the lr is `baseLr * lrFactor(step, o)`).
 * @param step 0-based index of the optimizer step about to run (the scheduler's `last_epoch`).
 */
export function lrFactor(step: number, o: ScheduleOptions): number {
  if (!Number.isInteger(step) || step < 0) throw new Error(`lr schedule: expected a step integer >= 0, got ${step}`);
  switch (o.type) {
    case "constant":
      return 1;
    case "constant_with_warmup":
      return step < o.warmupSteps ? step / Math.max(1.0, o.warmupSteps) : 1.0;
    case "linear":
      if (step < o.warmupSteps) return warmup(step, o.warmupSteps);
      return Math.max(0.0, (o.totalSteps - step) / Math.max(1, o.totalSteps - o.warmupSteps));
    case "cosine":
      return cosineFactor(step, o, 0);
    case "cosine_with_min_lr":
      return cosineFactor(step, o, resolveMinLrRate(o));
    case "cosine_warmup_with_min_lr":
      return warmupCosineFactor(step, o);
    case "cosine_with_restarts":
      return restartsFactor(step, o);
    case "polynomial":
      return polynomialFactor(step, o);
    case "inverse_sqrt":
      return inverseSqrtFactor(step, o);
    case "warmup_stable_decay":
      return wsdFactor(step, o);
    case "reduce_lr_on_plateau":
      throw new Error("reduce_lr_on_plateau has no lr_lambda: its lr follows the evaluations (schedule_plateau.ts)");
    default:
      throw new Error(`lr schedule: expected one of ${SCHEDULER_TYPES.join(", ")}, got ${JSON.stringify(o.type)}`);
  }
}

/**
 * The lr the optimizer uses for the optimizer step `step` (0-based), exactly as HF's scheduler sets it.
 * After `n` completed steps the scheduler holds `lrAt(n, o)`; see the module docs for what HF logs.
 */
export function lrAt(step: number, o: ScheduleOptions): number {
  return o.baseLr * lrFactor(step, o);
}

/**
 * The `learning_rate` HF Trainer (transformers >= 4.51) logs in the record with `step == globalStep` (>= 1): the lr
 * of the step just taken, `lrAt(globalStep - 1, o)`. Pass `legacy: true` for transformers < 4.51, which logged
 * `lrAt(globalStep, o)` (the lr of the next step).
 */
export function loggedLrAt(globalStep: number, o: ScheduleOptions, legacy = false): number {
  if (!Number.isInteger(globalStep) || globalStep < 1) {
    throw new Error(`loggedLrAt: expected a global step integer >= 1 (steps completed), got ${globalStep}`);
  }
  return lrAt(legacy ? globalStep : globalStep - 1, o);
}

/**
 * Warmup length as HF computes it for `totalSteps` optimizer steps.
 *
 * - `warmupSteps >= 1`: `int(warmupSteps)` (truncated).
 * - `0 < warmupSteps < 1`: a ratio, `ceil(totalSteps * warmupSteps)` (transformers 5 accepts the ratio there).
 * - `warmupSteps == 0`: `ceil(totalSteps * warmupRatio)` (transformers 4's `warmup_ratio`; 0 gives 0).
 */
export function warmupStepsOf(warmupSteps: number, warmupRatio: number, totalSteps: number): number {
  if (!(warmupSteps >= 0)) throw new Error(`warmup_steps: expected a number >= 0, got ${warmupSteps}`);
  if (!(warmupRatio >= 0 && warmupRatio <= 1)) throw new Error(`warmup_ratio: expected [0, 1], got ${warmupRatio}`);
  if (warmupSteps >= 1) return Math.trunc(warmupSteps);
  if (warmupSteps > 0) return Math.ceil(totalSteps * warmupSteps);
  return Math.ceil(totalSteps * warmupRatio);
}

/** The HF `TrainingArguments` fields a schedule is made from. */
export interface ScheduleArgs {
  lr_scheduler_type: string;
  learning_rate: number;
  /** Steps (>= 1), or a ratio in (0, 1) as transformers 5 accepts. Default 0. */
  warmup_steps?: number;
  /** transformers 4's ratio, used when `warmup_steps` is 0. Default 0. */
  warmup_ratio?: number;
  /** HF's `lr_scheduler_kwargs` (see {@linkcode SCHEDULER_KWARGS}), snake_case as in the YAML. */
  lr_scheduler_kwargs?: Record<string, unknown> | null;
}

/**
 * {@linkcode ScheduleOptions} from HF training arguments for `totalSteps` optimizer steps, as `Trainer.create_scheduler`
 * builds the scheduler: the warmup is resolved with {@linkcode warmupStepsOf}, and `lr_scheduler_kwargs` are mapped
 * to the options (snake_case → camelCase). Bad kwargs throw (see {@linkcode schedulerKwargsProblems}).
 * `reduce_lr_on_plateau` gives options without an lr_lambda: make its `PlateauScheduler` (schedule_plateau.ts) from
 * the kwargs.
 */
export function scheduleFromArgs(a: ScheduleArgs, totalSteps: number): ScheduleOptions {
  const type = a.lr_scheduler_type as SchedulerType;
  if (!SCHEDULER_TYPES.includes(type)) {
    throw new Error(`lr_scheduler_type: expected one of ${SCHEDULER_TYPES.join(", ")}, got ${JSON.stringify(type)}`);
  }
  const o: ScheduleOptions = {
    type,
    baseLr: a.learning_rate,
    warmupSteps: warmupStepsOf(a.warmup_steps ?? 0, a.warmup_ratio ?? 0, totalSteps),
    totalSteps,
  };
  if (type === "constant" || type === "constant_with_warmup") return o;
  const kw = a.lr_scheduler_kwargs ?? {};
  const problems = schedulerKwargsProblems(type, kw);
  if (problems.length) throw new Error(`lr_scheduler_kwargs: ${problems.join("; ")}`);
  if (type === "reduce_lr_on_plateau") return o;
  const num = (k: string) => kw[k] as number | undefined;
  if (type === "warmup_stable_decay") {
    // LLaMA-Factory's create_custom_scheduler: a third of the steps after warmup stable, the rest decaying, unless set.
    const remaining = totalSteps - o.warmupSteps, stable = Math.floor(remaining / 3);
    o.stableSteps = num("num_stable_steps") ?? stable;
    o.decaySteps = num("num_decay_steps") ?? remaining - stable;
  }
  Object.assign(o, {
    numCycles: num("num_cycles"),
    minLr: num("min_lr"),
    minLrRate: num("min_lr_rate"),
    warmupLrRate: num("warmup_lr_rate"),
    lrEnd: num("lr_end"),
    power: num("power"),
    timescale: num("timescale"),
    warmupType: kw.warmup_type as WsdShape | undefined,
    decayType: kw.decay_type as WsdShape | undefined,
    minLrRatio: num("min_lr_ratio"),
  });
  for (const k of Object.keys(o) as (keyof ScheduleOptions)[]) if (o[k] === undefined) delete o[k];
  // Fail early, as HF does when building the scheduler.
  if (type === "cosine_with_min_lr" || type === "cosine_warmup_with_min_lr") resolveMinLrRate(o);
  if (type === "polynomial") polynomialFactor(0, o);
  return o;
}
