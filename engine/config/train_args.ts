/**
 * The types of parsed training arguments and the config error, apart from the parser (`args.ts`) so the cross-field
 * rules (`rules.ts`), the views (`views.ts`) and the interval plan (`intervals.ts`) can use them without importing the
 * parser that calls them.
 * @module
 */
import type { ArgsOf } from "./key_spec.ts";
import type { KEYS, LR_SCHEDULERS } from "./keys.ts";

export type { LrSchedulerKwargs } from "./keys_training.ts";

/** A learning-rate schedule (HF `SchedulerType`). */
export type LrSchedulerType = (typeof LR_SCHEDULERS)[number];

/** When to log, evaluate or save. */
export type IntervalStrategy = "no" | "steps" | "epoch";

/**
 * The parsed training arguments, named as in LF's YAML: one field per `train` row of the key table (`KEYS`, grouped as
 * LF groups them), typed by the row (`ArgsOf`). Types are LF's after its `__post_init__`: comma lists are arrays,
 * `lora_alpha` is resolved (`lora_rank * 2` when unset), `optim` is Whetstone's optimizer ("adamw" for `adamw_torch`
 * and its aliases). `cutoff_len` and `packing` are kept as given: the data worker's `resolveDataArgs` applies LF's
 * packing rules (`dataArgsOf`). The views other layers take (data, template, generating, hub options, one group's
 * keys) are made by the functions of views.ts.
 */
export type TrainArgs = ArgsOf<typeof KEYS> & {
  /** Notes for the user about keys that are ignored here; not a config key. */
  warnings: string[];
};

/** Config problems, one per line, each prefixed with the file name. */
export class ConfigError extends Error {
  constructor(readonly where: string, readonly problems: string[]) {
    super(problems.map((p) => `${where}: ${p}`).join("\n"));
    this.name = "ConfigError";
  }
}
