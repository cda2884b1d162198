/**
 * What a training session writes about its run, as the trainer does: `checkpoint-<step>` folders (the model or
 * adapter, optimizer states, scheduler, rng state and trainer state, pruned to save_total_limit), the final model in
 * output_dir, `trainer_state.json`, the train metrics of `train_results.json`, and the loss plots of each stage.
 * The stepping itself is in session_run.ts.
 * @module
 */
import { pruneCheckpoints, writeCheckpointAtomic } from "./checkpoint.ts";
import { plotLoss, plotLosses } from "./plot.ts";
import { saveModel, saveOptimizer } from "./model_files.ts";
import type { RunInit } from "../session_records.ts";
import { type TrainerState as TrainerStateFile, writeTrainerState } from "./trainer_log.ts";

/** The `trainer_state.json` of a run at step `at`. */
export function trainerStateOf(i: RunInit, at: number): TrainerStateFile {
  const a = i.args;
  return {
    global_step: at,
    epoch: i.state.epoch,
    max_steps: i.total,
    num_train_epochs: a.num_train_epochs,
    logging_steps: a.logging_steps,
    save_steps: a.save_steps,
    eval_steps: a.eval_steps ?? undefined,
    train_batch_size: a.per_device_train_batch_size,
    num_input_tokens_seen: i.state.total_tokens,
    log_history: i.state.log_history,
    ...(i.state.best?.best_global_step == null ? {} : {
      best_metric: i.state.best.best_metric,
      best_global_step: i.state.best.best_global_step,
      best_model_checkpoint: `${a.output_dir}/checkpoint-${i.state.best.best_global_step}`,
    }),
  };
}

/** Writes the run's adapter (or model folder, with the value head of rm and ppo) into `dir`. */
export async function saveRunModel(i: RunInit, dir: string): Promise<void> {
  const a = i.args;
  await saveModel(i.model, dir, a.model_name_or_path, a.finetuning_type !== "lora" && a.finetuning_type !== "oft", {
    valueHead: i.stage.valueHead,
  });
}

/**
 * Writes `checkpoint-<step>` at the run's current step, with the stage's logging window (steps since the last logging
 * step, ...) in its rng state (then prunes to save_total_limit); returns its path.
 */
export async function writeCheckpoint(i: RunInit): Promise<string> {
  const { args: a, model, sched } = i;
  const step = i.state.global_step;
  const path = await writeCheckpointAtomic(a.output_dir, step, async (tmp) => {
    await saveRunModel(i, tmp);
    if (!a.save_only_model) await saveOptimizer(model, tmp, i.optimizer.states());
    const plateau = i.plateau ? { plateau: i.plateau.state() } : {};
    await Deno.writeTextFile(`${tmp}/scheduler.json`, JSON.stringify({ last_step: step, ...sched, ...plateau }) + "\n");
    await Deno.writeTextFile(
      `${tmp}/rng_state.json`,
      JSON.stringify({ seed: a.seed, step, ...i.stage.checkpointState() }) + "\n",
    );
    await writeTrainerState(tmp, trainerStateOf(i, step));
  });
  // HF's rotation never deletes the best model's checkpoint.
  const best = i.state.best?.best_global_step;
  if (a.save_total_limit) {
    await pruneCheckpoints(a.output_dir, a.save_total_limit, best == null ? [step] : [step, best]);
  }
  return path;
}

/** Writes the adapter (or model folder) and trainer_state.json at the current step into output_dir. */
export async function writeOutputs(i: RunInit): Promise<void> {
  await saveRunModel(i, i.args.output_dir);
  await writeTrainerState(i.args.output_dir, trainerStateOf(i, i.state.global_step));
}

/**
 * The metrics of `train_results.json`: `losses` are the logged (step, loss) pairs, `seconds` the time spent in
 * steps, `startStep` the step this session started from (resumed runs count only their own steps).
 */
export function trainMetrics(
  i: RunInit,
  losses: { step: number; loss: number }[],
  seconds: number,
  startStep: number,
): Record<string, number> {
  const state = i.state;
  return {
    epoch: state.epoch,
    total_flos: 0,
    train_loss: losses.length ? losses.reduce((x, l) => x + l.loss, 0) / losses.length : 0,
    train_runtime: seconds,
    train_samples_per_second: (i.records.length * state.epoch) / Math.max(seconds, 1e-9),
    train_steps_per_second: (state.global_step - startStep) / Math.max(seconds, 1e-9),
  };
}

/** With `plot_loss`, the loss plots LF's stage writes into output_dir (`evalLosses`: the evaluations' losses). */
export async function plotRun(i: RunInit, evalLosses: { step: number; eval_loss: number }[]): Promise<void> {
  const a = i.args, keys = i.stage.plotKeys;
  if (!a.plot_loss) return;
  const out = a.output_dir, history = i.state.log_history;
  if (keys) {
    await plotLosses(out, history, [...keys]);
    return;
  }
  await plotLoss(out, history.filter((h) => h.loss !== undefined).map((h) => ({ step: h.step, loss: h.loss })));
  if (evalLosses.length) await plotLoss(out, evalLosses.map((h) => ({ step: h.step, loss: h.eval_loss })), "eval_loss");
}
