/**
 * The loop state of a {@link TrainSession} (session.ts): the data order, the compiled step graphs, the optimizer
 * steps with their logging, evaluations and checkpoints, the final outputs, and the events a session emits.
 * Each optimizer step — all its micro-batches, the backward, clipping and the update — is one traced graph replayed
 * with one submit (step.ts); the loss is read back at logging steps, or after every step with `readEveryStep`.
 * @module
 */
import type { TrainArgs } from "../config/args.ts";
import type { SftRecord } from "../data/process.ts";
import type { CompiledGraph, Executor, HostArray } from "../exec/executor.ts";
import type { Model } from "../nn/model.ts";
import { bucket, collate, epochOrder, type MicroBatch } from "./batches.ts";
import { pruneCheckpoints, writeCheckpointAtomic } from "./checkpoint.ts";
import { plotLoss } from "./plot.ts";
import { loggedLrAt, lrAt, type ScheduleOptions } from "./schedule.ts";
import { saveModel, saveOptimizer, type TrainState } from "./session_files.ts";
import { LOSS_SUM, type StepPlan, traceEvalStep, traceTrainStep } from "./step.ts";
import {
  pyRound,
  type TrainerLog,
  type TrainerLogRecord,
  type TrainerState as TrainerStateFile,
  writeResults,
  writeTrainerState,
} from "./trainer_log.ts";

/** One optimizer step: the fields of a `trainer_log.jsonl` line, with this step's loss and its grad norm. */
export interface StepRecord extends TrainerLogRecord {
  /** This step's loss (token mean over its micro-batches); absent when it was not read back. */
  loss?: number;
  grad_norm?: number;
  lr: number;
  epoch: number;
  /** Input tokens per second over the steps this session ran. */
  throughput: number;
  total_tokens: number;
}

/** One evaluation: the fields of a `trainer_log.jsonl` eval line, with the perplexity. */
export interface EvalRecord extends TrainerLogRecord {
  eval_loss: number;
  perplexity: number;
  epoch: number;
}

/** What a session tells its listeners. */
export type SessionEvent =
  | { type: "step"; data: StepRecord }
  | { type: "eval"; data: EvalRecord }
  | { type: "save"; data: { step: number; checkpoint: string } }
  | {
    type: "done";
    data: { steps: number; global_step: number; total_steps: number; finished: boolean; error?: string };
  };

/** Everything {@link SessionRun} starts from. */
export interface RunInit {
  args: TrainArgs;
  model: Model;
  records: SftRecord[];
  evalRecords: SftRecord[];
  trainable: string[];
  total: number;
  stepsPerEpoch: number;
  sched: ScheduleOptions;
  stepPlan: (L: number) => StepPlan;
  state: TrainState;
  /** Steps since the last logging step (restored on resume). */
  sinceLog: number;
  tlog: TrainerLog;
  /** Milliseconds spent running steps, and since when the current run started. */
  clock: { activeMs: number; since: number | undefined };
  log: (line: string) => void;
  readEveryStep: boolean;
}

/** The stepping machinery of a session (see session.ts for the public API). */
export class SessionRun {
  readonly state: TrainState;
  readonly total: number;
  readonly losses: { step: number; loss: number }[] = [];
  readonly evalLosses: { step: number; eval_loss: number }[] = [];
  lastLoss: number | undefined;
  readonly #i: RunInit;
  readonly #graphs = new Map<string, Promise<CompiledGraph>>();
  readonly #orders = new Map<number, number[]>();
  readonly #listeners = new Set<(e: SessionEvent) => void>();
  readonly #startStep: number;
  #sinceLog: number;
  #tokensThisRun = 0;
  #tlogOpen = true;

  constructor(init: RunInit) {
    this.#i = init;
    this.state = init.state;
    this.total = init.total;
    this.#sinceLog = init.sinceLog;
    this.#startStep = init.state.global_step;
  }

  get #executor(): Executor {
    return this.#i.model.executor;
  }

  #compiled(key: string, make: () => Parameters<Executor["compile"]>[0]): Promise<CompiledGraph> {
    let c = this.#graphs.get(key);
    if (!c) this.#graphs.set(key, c = this.#executor.compile(make()));
    return c;
  }

  #microBatch(step: number, k: number): SftRecord[] {
    const { args: a, records, stepsPerEpoch } = this.#i;
    const B = a.per_device_train_batch_size, G = a.gradient_accumulation_steps;
    const epoch = Math.floor((step - 1) / stepsPerEpoch);
    let order = this.#orders.get(epoch);
    if (!order) {
      this.#orders.clear();
      this.#orders.set(epoch, order = epochOrder(records.length, a.seed, epoch));
    }
    const start = (((step - 1) % stepsPerEpoch) * G + k) * B;
    return order.slice(start, start + B).map((i) => records[i]);
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

  /** Mean token loss over the evaluation records. */
  async evaluate(): Promise<number> {
    const { args: a, model, evalRecords } = this.#i;
    const Be = a.per_device_eval_batch_size, multiple = a.bucket ?? 64;
    let sum = 0, count = 0;
    for (let i = 0; i < evalRecords.length; i += Be) {
      const rows = evalRecords.slice(i, i + Be);
      const L = bucket(Math.max(...rows.map((r) => r.input_ids.length)), multiple);
      const mb = collate(rows, Be, L);
      const c = await this.#compiled(`eval:${Be}:${L}`, () => traceEvalStep(model, Be, L));
      const o = await c.run({ ids_0: mb.ids, positions_0: mb.positions, segments_0: mb.segments, labels_0: mb.labels });
      sum += o.loss_sum[0];
      count += mb.targets;
    }
    return count ? sum / count : 0;
  }

  /** Evaluates at the current step and logs it as the trainer does (history, trainer_log.jsonl, a line, an event). */
  async evaluateAndLog(): Promise<EvalRecord> {
    const step = this.state.global_step;
    const evalLoss = await this.evaluate();
    this.evalLosses.push({ step, eval_loss: evalLoss });
    this.state.log_history.push({ eval_loss: evalLoss, epoch: this.state.epoch, step });
    if (this.#tlogOpen) {
      this.#i.tlog.log(step, { eval_loss: evalLoss, epoch: this.state.epoch, totalTokens: this.state.total_tokens });
    }
    this.#i.log(
      `step ${step}/${this.total}  eval_loss ${evalLoss.toFixed(4)}  perplexity ${Math.exp(evalLoss).toFixed(2)}`,
    );
    const rec: EvalRecord = this.#line(step, {
      eval_loss: evalLoss,
      perplexity: Math.exp(evalLoss),
      epoch: this.state.epoch,
    });
    this.#emit({ type: "eval", data: rec });
    return rec;
  }

  #trainerState(at: number): TrainerStateFile {
    const a = this.#i.args;
    return {
      global_step: at,
      epoch: this.state.epoch,
      max_steps: this.total,
      num_train_epochs: a.num_train_epochs,
      logging_steps: a.logging_steps,
      save_steps: a.save_steps,
      eval_steps: a.eval_steps ?? undefined,
      train_batch_size: a.per_device_train_batch_size,
      num_input_tokens_seen: this.state.total_tokens,
      log_history: this.state.log_history,
    };
  }

  /** Writes `checkpoint-<step>` at the current step (then prunes to save_total_limit); returns its path. */
  async saveCheckpoint(): Promise<string> {
    const { args: a, model, trainable, sched } = this.#i;
    const step = this.state.global_step, sinceLog = this.#sinceLog;
    const path = await writeCheckpointAtomic(a.output_dir, step, async (tmp) => {
      await saveModel(model, tmp, a.model_name_or_path, a.finetuning_type !== "lora");
      await saveOptimizer(model, tmp, trainable, a.optim);
      await Deno.writeTextFile(`${tmp}/scheduler.json`, JSON.stringify({ last_step: step, ...sched }) + "\n");
      await Deno.writeTextFile(
        `${tmp}/rng_state.json`,
        JSON.stringify({ seed: a.seed, step, since_log: sinceLog }) + "\n",
      );
      await writeTrainerState(tmp, this.#trainerState(step));
    });
    if (a.save_total_limit) await pruneCheckpoints(a.output_dir, a.save_total_limit, [step]);
    this.#emit({ type: "save", data: { step, checkpoint: path } });
    return path;
  }

  /** Writes the adapter (or model folder) and trainer_state.json into output_dir. */
  async saveOutputs(): Promise<void> {
    const a = this.#i.args;
    await saveModel(this.#i.model, a.output_dir, a.model_name_or_path, a.finetuning_type !== "lora");
    await writeTrainerState(a.output_dir, this.#trainerState(this.state.global_step));
  }

  /** Runs up to `n` optimizer steps; see `TrainSession.step`. */
  async steps(n: number, onStep?: (r: StepRecord) => void): Promise<StepRecord[]> {
    const { args: a, model, tlog, sched, log } = this.#i;
    const B = a.per_device_train_batch_size, G = a.gradient_accumulation_steps, multiple = a.bucket ?? 64;
    const total = this.total, state = this.state;
    const end = Math.min(total, state.global_step + n);
    const out: StepRecord[] = [];
    const clock = this.#i.clock;
    clock.since = performance.now();
    let res: Promise<Record<string, HostArray>> | undefined;
    try {
      while (state.global_step < end) {
        const step = state.global_step + 1;
        const mbs: MicroBatch[] = [];
        const rowsOf = Array.from({ length: G }, (_, k) => this.#microBatch(step, k));
        const L = bucket(Math.max(...rowsOf.flat().map((r) => r.input_ids.length)), multiple);
        for (const rows of rowsOf) mbs.push(collate(rows, B, L));
        const targets = mbs.reduce((t, m) => t + m.targets, 0);
        const feeds: Record<string, ArrayLike<number>> = {
          inv_targets: [1 / Math.max(1, targets)],
          lr: [lrAt(step - 1, sched)],
          step: [step],
          seed: [(Math.imul(a.seed + 1, 2654435761) ^ step) >>> 0],
        };
        mbs.forEach((m, k) => {
          feeds[`ids_${k}`] = m.ids;
          feeds[`positions_${k}`] = m.positions;
          feeds[`segments_${k}`] = m.segments;
          feeds[`labels_${k}`] = m.labels;
        });
        const tokens = mbs.reduce((t, m) => t + m.tokens, 0);
        this.#tokensThisRun += tokens;
        state.total_tokens += tokens;
        this.#sinceLog++;
        const c = await this.#compiled(`train:${L}`, () => traceTrainStep(model, this.#i.stepPlan(L)));
        const logNow = step % a.logging_steps === 0 || step === total;
        const fetch = logNow ? ["loss_sum", "grad_norm", "loss"] : this.#i.readEveryStep ? ["loss", "grad_norm"] : [];
        res = c.run(feeds, fetch);
        state.global_step = step;
        state.epoch = step / this.#i.stepsPerEpoch;
        const tps = this.#tokensThisRun / Math.max(this.#seconds(), 1e-9);
        let loss: number | undefined, gradNorm: number | undefined;
        const lr = loggedLrAt(step, sched);
        if (logNow) {
          const o = await res;
          this.#executor.setParam(LOSS_SUM, [0], [1]);
          const windowLoss = o.loss_sum[0] / this.#sinceLog;
          this.#sinceLog = 0;
          this.losses.push({ step, loss: windowLoss });
          const entry = { loss: windowLoss, grad_norm: o.grad_norm[0], learning_rate: lr, epoch: state.epoch, step };
          state.log_history.push(entry);
          tlog.log(step, { loss: windowLoss, lr, epoch: state.epoch, totalTokens: state.total_tokens });
          log(
            `step ${step}/${total}  loss ${windowLoss.toFixed(4)}  grad_norm ${o.grad_norm[0].toFixed(3)}  ` +
              `lr ${lr.toExponential(2)}  epoch ${state.epoch.toFixed(2)}  ${tps.toFixed(0)} tok/s`,
          );
          [loss, gradNorm] = [o.loss[0], o.grad_norm[0]];
        } else if (this.#i.readEveryStep) {
          const o = await res;
          [loss, gradNorm] = [o.loss[0], o.grad_norm[0]];
        }
        if (loss !== undefined) this.lastLoss = loss;
        const rec: StepRecord = {
          ...this.#line(step, {
            ...(loss === undefined ? {} : { loss }),
            ...(gradNorm === undefined ? {} : { grad_norm: gradNorm }),
            lr,
            epoch: state.epoch,
          }),
          throughput: pyRound(tps, 2),
          total_tokens: state.total_tokens,
        };
        out.push(rec);
        this.#emit({ type: "step", data: rec });
        onStep?.(rec);
        const evalEvery = a.eval_steps ?? 0;
        if (this.#i.evalRecords.length && evalEvery > 0 && a.eval_strategy !== "no" && step % evalEvery === 0) {
          await res;
          await this.evaluateAndLog();
        }
        if (a.save_strategy === "steps" && a.save_steps > 0 && step % a.save_steps === 0 && step < total) {
          await res;
          await this.saveCheckpoint();
        }
      }
      await res;
    } finally {
      clock.activeMs += performance.now() - clock.since!;
      clock.since = undefined;
    }
    return out;
  }

  /** The trainer's final outputs: the adapter or model, train/eval results, trainer_state.json and loss plots. */
  async finish(): Promise<{ metrics: Record<string, number>; evalLoss?: number }> {
    const { args: a, model, records, evalRecords, log } = this.#i;
    const out = a.output_dir, state = this.state;
    const secs = this.#seconds();
    await saveModel(model, out, a.model_name_or_path, a.finetuning_type !== "lora");
    const metrics: Record<string, number> = {
      epoch: state.epoch,
      total_flos: 0,
      train_loss: this.losses.length ? this.losses.reduce((x, l) => x + l.loss, 0) / this.losses.length : 0,
      train_runtime: secs,
      train_samples_per_second: (records.length * state.epoch) / Math.max(secs, 1e-9),
      train_steps_per_second: (state.global_step - this.#startStep) / Math.max(secs, 1e-9),
    };
    await writeResults(out, "train", metrics);
    let evalLoss: number | undefined;
    if (evalRecords.length && (a.do_eval || this.evalLosses.length)) {
      evalLoss = await this.evaluate();
      await writeResults(out, "eval", { epoch: state.epoch, eval_loss: evalLoss, perplexity: Math.exp(evalLoss) });
      log(`eval_loss ${evalLoss.toFixed(4)}  perplexity ${Math.exp(evalLoss).toFixed(2)}`);
      const step = state.global_step;
      this.#emit({
        type: "eval",
        data: this.#line(step, { eval_loss: evalLoss, perplexity: Math.exp(evalLoss), epoch: state.epoch }),
      });
    }
    await writeTrainerState(out, this.#trainerState(state.global_step));
    this.close();
    if (a.plot_loss) {
      await plotLoss(
        out,
        state.log_history.filter((h) => h.loss !== undefined).map((h) => ({ step: h.step, loss: h.loss })),
      );
      if (this.evalLosses.length) {
        await plotLoss(out, this.evalLosses.map((h) => ({ step: h.step, loss: h.eval_loss })), "eval_loss");
      }
    }
    return { metrics, evalLoss };
  }

  /** Closes the trainer log (idempotent). */
  close(): void {
    if (!this.#tlogOpen) return;
    this.#tlogOpen = false;
    this.#i.tlog.close();
  }
}
