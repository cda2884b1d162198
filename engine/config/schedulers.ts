/**
 * The learning-rate schedules (`lr_scheduler_type`) Whetstone computes and the `lr_scheduler_kwargs` each takes, as
 * transformers' `get_scheduler` passes them on (engine/train/schedule.ts computes the lrs).
 * @module
 */

/** The scheduler names (`lr_scheduler_type`) supported here. */
export type SchedulerType =
  | "linear"
  | "cosine"
  | "constant"
  | "constant_with_warmup"
  | "cosine_with_min_lr"
  | "cosine_warmup_with_min_lr"
  | "cosine_with_restarts"
  | "polynomial"
  | "inverse_sqrt"
  | "warmup_stable_decay"
  | "reduce_lr_on_plateau";

/** The scheduler names supported here, for validation of user input. */
export const SCHEDULER_TYPES: readonly SchedulerType[] = [
  "linear",
  "cosine",
  "constant",
  "constant_with_warmup",
  "cosine_with_min_lr",
  "cosine_warmup_with_min_lr",
  "cosine_with_restarts",
  "polynomial",
  "inverse_sqrt",
  "warmup_stable_decay",
  "reduce_lr_on_plateau",
];

/** `warmup_stable_decay`'s warmup and decay shapes (`warmup_type`, `decay_type`). */
export type WsdShape = "linear" | "cosine" | "1-sqrt";

/** A kwarg's kind: a number, an integer, or one of some strings. */
type KwargKind = "num" | "int" | readonly string[];
const SHAPES = ["linear", "cosine", "1-sqrt"] as const;

/**
 * The `lr_scheduler_kwargs` each schedule takes (the keyword arguments of transformers' schedule function, or of
 * torch's `ReduceLROnPlateau`), with their kinds; `constant` / `constant_with_warmup` ignore kwargs as HF does.
 */
export const SCHEDULER_KWARGS: Record<SchedulerType, Record<string, KwargKind>> = {
  linear: {},
  cosine: { num_cycles: "num" },
  cosine_with_min_lr: { num_cycles: "num", min_lr: "num", min_lr_rate: "num" },
  cosine_warmup_with_min_lr: { num_cycles: "num", min_lr: "num", min_lr_rate: "num", warmup_lr_rate: "num" },
  constant: {},
  constant_with_warmup: {},
  cosine_with_restarts: { num_cycles: "int" },
  polynomial: { lr_end: "num", power: "num" },
  inverse_sqrt: { timescale: "int" },
  warmup_stable_decay: {
    num_decay_steps: "int",
    num_stable_steps: "int",
    warmup_type: SHAPES,
    decay_type: SHAPES,
    min_lr_ratio: "num",
    num_cycles: "num",
  },
  reduce_lr_on_plateau: {
    mode: ["min", "max"],
    factor: "num",
    patience: "int",
    threshold: "num",
    threshold_mode: ["rel", "abs"],
    cooldown: "int",
    min_lr: "num",
    eps: "num",
  },
};

/**
 * Checks `lr_scheduler_kwargs` against {@linkcode SCHEDULER_KWARGS}: the problems, each naming the kwarg (empty when
 * they are fine). Unknown kwargs are an error (HF raises a TypeError) except for the two constant schedules.
 */
export function schedulerKwargsProblems(type: SchedulerType, kwargs: Record<string, unknown>): string[] {
  if (type === "constant" || type === "constant_with_warmup") return [];
  const takes = SCHEDULER_KWARGS[type], out: string[] = [];
  for (const [k, v] of Object.entries(kwargs)) {
    const kind = takes[k];
    if (kind === undefined) {
      const allowed = Object.keys(takes).length ? Object.keys(takes).join(", ") : "no arguments";
      out.push(`${type} takes ${allowed}, got ${JSON.stringify(k)}`);
    } else if (Array.isArray(kind)) {
      if (!kind.includes(v as string)) out.push(`${k}: expected one of ${kind.join(", ")}, got ${JSON.stringify(v)}`);
    } else if (typeof v !== "number" || !Number.isFinite(v) || (kind === "int" && !Number.isInteger(v))) {
      out.push(`${k}: expected ${kind === "int" ? "an integer" : "a number"}, got ${JSON.stringify(v)}`);
    }
  }
  return out;
}
