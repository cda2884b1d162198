/**
 * The loop of a {@link TrainSession} (session.ts): the data order, the optimizer steps of its stage (stages/) with
 * their logging, evaluations, checkpoints and final outputs (the files they write: outputs/), and the events
 * a session emits. Every stage is driven the same way: the loop asks it to run a step and reads back what it logged;
 * how a step is made (one traced graph replayed with one submit for pt, sft, rm, dpo and kto; generation, scoring and
 * updates for ppo) is the stage's. The loss is read back at logging steps, or after every step with `readEveryStep`.
 * @module
 */
import type { Executor } from "../exec/executor.ts";
import { type IntervalPlan, intervalPlan, type StepActions, stepActions } from "../config/intervals.ts";
import { epochOrder, lengthGroupedOrder, lengthsOf } from "./batches.ts";
import { savePissaConverted } from "./pissa_convert.ts";
import { loggedLrAt, lrAt } from "./schedule.ts";
import {
  plotRun,
  saveRunModel,
  trainerStateOf,
  trainMetrics,
  writeCheckpoint,
  writeOutputs,
} from "./outputs/run_outputs.ts";
import type { EvalRecord, RunInit, SessionEvent, StepRecord } from "./session_records.ts";
import { type EvalResult, showMetrics } from "./stages/stage.ts";
import { pyRound } from "../util/py_round.ts";
import { type BestState, newBestState, onEvaluate } from "./best_model.ts";
import { loadWeights } from "./outputs/model_files.ts";
import { type TrainerLogRecord, writeResults, writeTrainerState } from "./outputs/trainer_log.ts";
import { mark } from "../util/timings.ts";

export type { EvalRecord, RunInit, SessionEvent, StepRecord } from "./session_records.ts";

/** The stepping machinery of a session (see session.ts for the public API). */
export class SessionRun {
  readonly state: RunInit["state"];
  readonly total: number;
  readonly losses: { step: number; loss: number }[] = [];
  readonly evalLosses: { step: number; eval_loss: number }[] = [];
  lastLoss: number | undefined;
  readonly #i: RunInit;
  readonly #orders = new Map<number, number[]>();
  readonly #listeners = new Set<(e: SessionEvent) => void>();
  readonly #startStep: number;
  /** When to log, evaluate and save (HF's DefaultFlowCallback), unless the stage has its own rule. */
  readonly #intervals: IntervalPlan;
  #tokensThisRun = 0;
  #tlogOpen = true;
  /** HF's best_metric / best_global_step and the early-stopping counter (best_model.ts). */
  readonly best: BestState;
  /** Early stopping ended the training (`early_stopping_steps`). */
  stopped = false;
  #evaluatedOnStart = false;

  constructor(init: RunInit) {
    this.#i = init;
    this.state = init.state;
    this.total = init.total;
    this.#startStep = init.state.global_step;
    this.#intervals = intervalPlan(init.args, init.total);
    // A resumed run keeps the best metric of its trainer_state.json (not the callback's counter, as HF by default).
    const saved = init.state as { best_metric?: number | null; best_global_step?: number | null };
    this.best = {
      ...newBestState(),
      best_metric: saved.best_metric ?? null,
      best_global_step: saved.best_global_step ?? null,
    };
    init.state.best = this.best;
  }

  /** What to do after step `step`: the stage's own rule (ppo's trainer), else HF's; the last step always logs. */
  #actions(step: number): StepActions {
    const { stage, stepsPerEpoch } = this.#i;
    const epochEnd = step % stepsPerEpoch === 0 || step === this.total;
    const act = stage.actions?.(step, this.total) ?? stepActions(this.#intervals, step, this.total, epochEnd);
    return { ...act, log: act.log || step === this.total, evaluate: act.evaluate && !!stage.evaluate };
  }

  get #executor(): Executor {
    return this.#i.model.executor;
  }

  /** The records of micro-batch k of `step`: B per micro-batch, G per step (a stage may ask for other sizes). */
  #microBatch<R>(
    step: number,
    k: number,
    B = this.#i.args.per_device_train_batch_size,
    G = this.#i.args.gradient_accumulation_steps,
  ): R[] {
    const { args: a, records, stepsPerEpoch } = this.#i;
    const epoch = Math.floor((step - 1) / stepsPerEpoch);
    let order = this.#orders.get(epoch);
    if (!order) {
      this.#orders.clear();
      const seed = a.data_seed ?? a.seed;
      // LF's trainers take a sequential sampler for disable_shuffling before HF looks at group_by_length.
      order = a.group_by_length && !a.disable_shuffling
        ? lengthGroupedOrder(
          lengthsOf(records, a.stage),
          a.per_device_train_batch_size * a.gradient_accumulation_steps,
          seed,
          epoch,
        )
        : epochOrder(records.length, seed, epoch, !a.disable_shuffling);
      this.#orders.set(epoch, order);
    }
    const start = (((step - 1) % stepsPerEpoch) * G + k) * B;
    return order.slice(start, start + B).map((i) => records[i] as R);
  }

  /** Seconds spent running steps. */
  #seconds(): number {
    const c = this.#i.clock;
    return (c.activeMs + (c.since === undefined ? 0 : performance.now() - c.since)) / 1000;
  }

  stats(): { tokens: number; seconds: number; tokensPerSecond: number } {
    const seconds = this.#seconds();
    return { tokens: this.#tokensThisRun, seconds, tokensPerSecond: this.#tokensThisRun / Math.max(seconds, 1e-9) };
  }

  on(listener: (e: SessionEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(e: SessionEvent): void {
    for (const l of this.#listeners) {
      try {
        l(e);
      } catch { /* a listener's error is its own */ }
    }
  }

  emitDone(steps: number, finished: boolean, error?: string): void {
    const data = { steps, global_step: this.state.global_step, total_steps: this.total, finished };
    this.#emit({ type: "done", data: error === undefined ? data : { ...data, error } });
  }

  /** A trainer_log line at `step`: `metrics` between the step counts and the timing fields, as LF orders them. */
  #line<T extends object>(step: number, metrics: T): TrainerLogRecord & T {
    const { elapsed, remaining } = this.#i.tlog.timing(step);
    return {
      current_steps: step,
      total_steps: this.total,
      ...metrics,
      percentage: this.total !== 0 ? pyRound((step / this.total) * 100, 2) : 100,
      elapsed_time: elapsed,
      remaining_time: remaining,
    };
  }

  /** The stage's evaluation over the evaluation records. */
  #evaluateAll(): Promise<EvalResult> {
    const { stage, evalRecords } = this.#i;
    if (!stage.evaluate) throw new Error(`stage ${stage.name} does not evaluate (as in LLaMA-Factory)`);
    return stage.evaluate(evalRecords);
  }

  /** Mean token loss over the evaluation records (rm, dpo, kto: the preference loss). */
  async evaluate(): Promise<number> {
    return (await this.#evaluateAll()).loss;
  }

  /**
   * Evaluates at the current step and logs it as the trainer does (history, trainer_log.jsonl, a line, an event).
   * `track` (the loop's scheduled evaluations): HF's best-metric tracking and early stopping follow it.
   */
  async evaluateAndLog(track = false): Promise<EvalRecord> {
    const step = this.state.global_step;
    const e = await this.#evaluateAll(), evalLoss = e.loss;
    this.evalLosses.push({ step, eval_loss: evalLoss });
    this.state.log_history.push({ eval_loss: evalLoss, ...e.history, epoch: this.state.epoch, step });
    this.#i.tracker?.log(step, this.state.log_history.at(-1)!);
    if (track) {
      const d = onEvaluate(this.#i.args, this.best, this.state.log_history.at(-1)!, step);
      if (d.stop) {
        this.stopped = true;
        this.#i.log(
          `early stopping at step ${step}: no better ${this.#i.args.metric_for_best_model} in ` +
            `${this.#i.args.early_stopping_steps} evaluations (best ${this.best.best_metric} at step ${this.best.best_global_step})`,
        );
      }
    }
    if (this.#tlogOpen) {
      this.#i.tlog.log(step, { eval_loss: evalLoss, epoch: this.state.epoch, totalTokens: this.state.total_tokens });
    }
    this.#i.log(`step ${step}/${this.total}  eval_loss ${evalLoss.toFixed(4)}  ${showMetrics(e.metrics)}`);
    const rec = this.#line(step, { eval_loss: evalLoss, ...e.metrics, epoch: this.state.epoch }) as EvalRecord;
    this.#emit({ type: "eval", data: rec });
    return rec;
  }

  /** Writes `checkpoint-<step>` at the current step (then prunes to save_total_limit); returns its path. */
  async saveCheckpoint(): Promise<string> {
    const step = this.state.global_step;
    const path = await writeCheckpoint(this.#i);
    this.#emit({ type: "save", data: { step, checkpoint: path } });
    return path;
  }

  /** Writes the adapter (or model folder) and trainer_state.json into output_dir. */
  async saveOutputs(): Promise<void> {
    await writeOutputs(this.#i);
  }

  /** Runs up to `n` optimizer steps (fewer once `signal` aborts); see `TrainSession.step`. */
  async steps(n: number, onStep?: (r: StepRecord) => void, signal?: AbortSignal): Promise<StepRecord[]> {
    const { tlog, sched, plateau, log, stage, stepsPerEpoch } = this.#i;
    const total = this.total, state = this.state;
    const end = Math.min(total, state.global_step + n);
    const out: StepRecord[] = [];
    const clock = this.#i.clock;
    clock.since = performance.now();
    let settled: Promise<unknown> | undefined;
    try {
      if (this.#i.args.eval_on_start && !this.#evaluatedOnStart && this.#i.stage.evaluate) {
        // HF's eval_on_start: one evaluation before the first step of train(), outside the best-metric tracking.
        this.#evaluatedOnStart = true;
        await this.evaluateAndLog();
      }
      while (state.global_step < end && !signal?.aborted && !this.stopped) {
        // With a signal, a turn of the event loop between steps: what aborts it (a request) gets to run.
        if (signal && out.length) await new Promise((r) => setTimeout(r, 0));
        if (signal?.aborted) break;
        const step = state.global_step + 1;
        const act = this.#actions(step), logNow = act.log;
        // HF logs the optimizer's current lr under ReduceLROnPlateau, the lr this step uses.
        const lr = plateau ? plateau.lr : lrAt(step - 1, sched), loggedLr = plateau ? lr : loggedLrAt(step, sched);
        const s = await stage.step({
          step,
          records: <R>(k: number, B?: number, G?: number) => this.#microBatch<R>(step, k, B, G),
          lr,
          loggedLr,
          read: logNow || this.#i.readEveryStep,
          logNow,
          stepsPerEpoch,
        });
        settled = s.settled;
        this.#tokensThisRun += s.tokens;
        state.total_tokens += s.tokens;
        state.global_step = step;
        state.epoch = step / stepsPerEpoch;
        const values = await s.values;
        // Throughput once the step's results are in (when read back; else as queued).
        const tps = this.#tokensThisRun / Math.max(this.#seconds(), 1e-9);
        if (s.window) {
          const w = await s.window;
          this.losses.push({ step, loss: w.loss });
          const epoch = w.epoch ?? state.epoch;
          state.log_history.push({ loss: w.loss, ...w.fields, epoch, step: w.step ?? step });
          this.#i.tracker?.log(step, state.log_history.at(-1)!);
          tlog.log(step, {
            loss: w.loss,
            ...w.trainerLog,
            lr: w.fields.learning_rate ?? loggedLr,
            epoch,
            totalTokens: state.total_tokens,
          });
          const parts = [
            `loss ${w.loss.toFixed(4)}`,
            w.shown.trim(),
            `lr ${(w.fields.learning_rate ?? loggedLr).toExponential(2)}`,
          ];
          log(
            `step ${step}/${total}  ${parts.filter(Boolean).join("  ")}  epoch ${epoch.toFixed(2)}  ` +
              `${tps.toFixed(0)} tok/s`,
          );
        }
        if (values?.loss !== undefined) this.lastLoss = values.loss;
        mark(`step ${step}`);
        const rec: StepRecord = {
          ...this.#line(step, {
            ...(values?.loss === undefined ? {} : { loss: values.loss }),
            ...(values?.grad_norm === undefined ? {} : { grad_norm: values.grad_norm }),
            ...values?.metrics,
            lr: values?.lr ?? loggedLr,
            epoch: state.epoch,
          }),
          throughput: pyRound(tps, 2),
          total_tokens: state.total_tokens,
        };
        out.push(rec);
        this.#emit({ type: "step", data: rec });
        onStep?.(rec);
        if (act.evaluate && this.#i.evalRecords.length) {
          await settled;
          const e = await this.evaluateAndLog(true);
          // HF Trainer._evaluate steps ReduceLROnPlateau with eval_<metric_for_best_model> (default loss).
          plateau?.step(e.eval_loss);
        }
        if (act.save) {
          await settled;
          await this.saveCheckpoint();
        }
      }
      await settled;
    } finally {
      clock.activeMs += performance.now() - clock.since!;
      clock.since = undefined;
    }
    return out;
  }

  /** The trainer's final outputs: the adapter or model, train/eval results, trainer_state.json and loss plots. */
  async finish(): Promise<{ metrics: Record<string, number>; evalLoss?: number }> {
    const { args: a, evalRecords, log, stage } = this.#i;
    const out = a.output_dir, state = this.state;
    const secs = this.#seconds();
    await this.#loadBest();
    await saveRunModel(this.#i, out);
    mark("final: model saved");
    if (a.pissa_convert) await savePissaConverted(this.#i.model, out); // LF's PissaConvertCallback.on_train_end
    const metrics = trainMetrics(this.#i, this.losses, secs, this.#startStep);
    this.#i.tracker?.log(state.global_step, metrics); // HF's Trainer.log of the train metrics
    if (stage.trainResults) await writeResults(out, "train", metrics);
    let evalLoss: number | undefined;
    if (stage.evaluate && evalRecords.length && (a.do_eval || this.evalLosses.length)) {
      const e = await this.#evaluateAll();
      evalLoss = e.loss;
      await writeResults(out, "eval", { epoch: state.epoch, eval_loss: evalLoss, ...e.metrics });
      this.#i.tracker?.log(state.global_step, { eval_loss: evalLoss, ...e.history, epoch: state.epoch });
      log(`eval_loss ${evalLoss.toFixed(4)}  ${showMetrics(e.metrics)}`);
      this.#emit({
        type: "eval",
        data: this.#line(state.global_step, { eval_loss: evalLoss, ...e.metrics, epoch: state.epoch }) as EvalRecord,
      });
    }
    await writeTrainerState(out, trainerStateOf(this.#i, state.global_step));
    this.close();
    await plotRun(this.#i, this.evalLosses);
    mark("final: results, state, plots");
    return { metrics, evalLoss };
  }

  /** HF's `_load_best_model`: with load_best_model_at_end, the weights of checkpoint-<best_global_step>. */
  async #loadBest(): Promise<void> {
    const { args: a, model, trainable, log } = this.#i;
    const step = this.best.best_global_step;
    if (!a.load_best_model_at_end || step === null) return;
    const dir = `${a.output_dir}/checkpoint-${step}`;
    try {
      await Deno.stat(dir);
    } catch {
      log(
        `Could not locate the best model at ${dir}, if you are running a distributed training on multiple nodes, ` +
          "you should activate `--save_on_each_node`.",
      );
      return;
    }
    log(`Loading best model from ${dir} (score: ${this.best.best_metric}).`);
    await loadWeights(model, dir, trainable, a.finetuning_type !== "lora");
  }

  /** Closes the trainer log (idempotent). */
  close(): void {
    this.#i.tracker?.close();
    if (!this.#tlogOpen) return;
    this.#tlogOpen = false;
    this.#i.tlog.close();
  }

  /** The executor the run computes on. */
  get executor(): Executor {
    return this.#executor;
  }

  /** The stage the run trains. */
  get stage(): RunInit["stage"] {
    return this.#i.stage;
  }
}
