/**
 * The experiment trackers of `report_to` (HF's integrations): `tensorboard` writes event files
 * (outputs/tensorboard.ts) under `logging_dir`; the others are accepted and write nothing (the config rules add a
 * note naming them; docs/inert_keys.md says why wandb offline is not written).
 * @module
 */
import type { TrainArgs } from "../config/args.ts";
import { defaultLogDir, TensorBoardWriter } from "./outputs/tensorboard.ts";

/** Receives every HF log (`on_log`): the training logs, evaluations and the final metrics. */
export interface RunTracker {
  /** One log at `step` (a `log_history` entry; its `step` field is not a metric and is dropped). */
  log(step: number, logs: Record<string, unknown>): void;
  /** Ends the run's files (idempotent). */
  close(): void;
}

/** True when `report_to` names tensorboard (or "all", every integration Whetstone has). */
export function reportsTo(a: Pick<TrainArgs, "report_to">, name: string): boolean {
  const names = a.report_to ?? [];
  return names.includes(name) || names.includes("all");
}

/** The TensorBoard folder: `logging_dir`, else `$TENSORBOARD_LOGGING_DIR`, else HF's `output_dir/runs/<date>_<host>`. */
export function tensorBoardDir(a: Pick<TrainArgs, "logging_dir" | "output_dir">): string {
  const env = Deno.env.get("TENSORBOARD_LOGGING_DIR");
  return a.logging_dir ?? (env ? env.replace(/^~(?=\/)/, Deno.env.get("HOME") ?? "~") : defaultLogDir(a.output_dir));
}

/** The trackers `report_to` asks for, or undefined when none writes anything. */
export function openTracker(a: TrainArgs): RunTracker | undefined {
  if (!reportsTo(a, "tensorboard")) return undefined;
  let w: TensorBoardWriter | undefined = TensorBoardWriter.open(tensorBoardDir(a));
  return {
    log(step, logs) {
      const { step: _, ...rest } = logs;
      w?.log(step, rest);
    },
    close() {
      w?.close();
      w = undefined;
    },
  };
}
