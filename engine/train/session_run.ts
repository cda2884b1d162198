/**
 * The loop state of a {@link TrainSession} (session.ts): the data order, the compiled step graphs, the optimizer
 * steps with their logging, evaluations (session_eval.ts), checkpoints and final outputs (the files they write:
 * session_outputs.ts), and the events a session emits.
 * Each optimizer step — all its micro-batches, the backward, clipping and the update — is one traced graph replayed
 * with one submit (step.ts; pref_step.ts for rm, dpo and kto, driven by pref_run.ts); the loss is read back at logging
 * steps, or after every step with `readEveryStep`.
 * @module
 */
import type { SftRecord } from "../data/process.ts";
import type { CompiledGraph, Executor, HostArray } from "../exec/executor.ts";
import type { Graph } from "../graph/mod.ts";
import { bucket, collate, epochOrder } from "./batches.ts";
import { savePissaConverted } from "./pissa_convert.ts";
import type { PrefRecord } from "./pref_run.ts";
import { loggedLrAt, lrAt } from "./schedule.ts";
import { evalMetrics, type EvalResult, evaluateRecords } from "./session_eval.ts";
import type { TrainState } from "./session_files.ts";
import {
  plotRun,
  saveRunModel,
  trainerStateOf,
  trainMetrics,
  writeCheckpoint,
  writeOutputs,
} from "./session_outputs.ts";
import { type EvalRecord, type RunInit, type SessionEvent, showMetrics, type StepRecord } from "./session_records.ts";
import { LOSS_SUM, traceTrainStep, trainStepFeeds } from "./step.ts";
import { pyRound, type TrainerLogRecord, writeResults, writeTrainerState } from "./trainer_log.ts";

export type { EvalRecord, RunInit, SessionEvent, StepRecord } from "./session_records.ts";

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

  /** The records of micro-batch k of `step`: B per micro-batch, G per step (ppo: one batch of all its prompts). */
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
      this.#orders.set(epoch, order = epochOrder(records.length, a.data_seed ?? a.seed, epoch, !a.disable_shuffling));
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

  /** The eval loss over the evaluation records, and (rm, dpo, kto) LF's eval metrics. */
  #evaluateAll(): Promise<EvalResult> {
    return evaluateRecords(this.#i, (key, make) => this.#compiled(key, make));
  }

  /** Mean token loss over the evaluation records (rm, dpo, kto: the preference loss). */
  async evaluate(): Promise<number> {
    return (await this.#evaluateAll()).loss;
  }

  /** Evaluates at the current step and logs it as the trainer does (history, trainer_log.jsonl, a line, an event). */
  async evaluateAndLog(): Promise<EvalRecord> {
    const step = this.state.global_step;
    const e = await this.#evaluateAll(), evalLoss = e.loss, metrics = evalMetrics(this.#i, e);
    this.evalLosses.push({ step, eval_loss: evalLoss });
    this.state.log_history.push({
      eval_loss: evalLoss,
      ...(this.#i.pref ? metrics : {}),
      epoch: this.state.epoch,
      step,
    });
    if (this.#tlogOpen) {
      this.#i.tlog.log(step, { eval_loss: evalLoss, epoch: this.state.epoch, totalTokens: this.state.total_tokens });
    }
    this.#i.log(`step ${step}/${this.total}  eval_loss ${evalLoss.toFixed(4)}  ${showMetrics(metrics)}`);
    const rec = this.#line(step, { eval_loss: evalLoss, ...metrics, epoch: this.state.epoch }) as EvalRecord;
    this.#emit({ type: "eval", data: rec });
    return rec;
  }

  /** Writes `checkpoint-<step>` at the current step (then prunes to save_total_limit); returns its path. */
  async saveCheckpoint(): Promise<string> {
    const step = this.state.global_step;
    const path = await writeCheckpoint(this.#i, this.#sinceLog);
    this.#emit({ type: "save", data: { step, checkpoint: path } });
    return path;
  }

  /** Writes the adapter (or model folder) and trainer_state.json into output_dir. */
  async saveOutputs(): Promise<void> {
    await writeOutputs(this.#i);
  }

  /** The feeds of optimizer step `step` (all but lr, step and seed), and the graph that takes them. */
  #stepFeeds(step: number, B: number, G: number, multiple: number): {
    feeds: Record<string, ArrayLike<number>>;
    tokens: number;
    present: number;
    graph: { key: string; make: () => Graph };
    L: number;
  } {
    const { model, pref } = this.#i;
    if (pref) {
      const rowsOf = Array.from({ length: G }, (_, k) => this.#microBatch<PrefRecord>(step, k));
      const L = bucket(Math.max(...rowsOf.flat().map((r) => pref.length(r))), multiple);
      return { ...pref.stepFeeds(rowsOf, B, L), graph: { key: `pref:${L}`, make: () => pref.trace(L) }, L };
    }
    const rowsOf = Array.from({ length: G }, (_, k) => this.#microBatch<SftRecord>(step, k));
    const L = bucket(Math.max(...rowsOf.flat().map((r) => r.input_ids.length)), multiple);
    const mbs = rowsOf.map((rows) => collate(rows, B, L));
    return {
      ...trainStepFeeds(mbs),
      present: mbs.length,
      graph: { key: `train:${L}`, make: () => traceTrainStep(model, this.#i.stepPlan(L)) },
      L,
    };
  }

  /**
   * One PPO step (ppo_run.ts) and LF's PPO logging: every logging_steps the means of its loss and reward meters,
   * `learning_rate` the lr the step used, and LF's 0-based `step` and `epoch` = round(step / steps_per_epoch, 2) in
   * the log history.
   */
  async #ppoStep(step: number): Promise<StepRecord> {
    const { args: a, sched, tlog, log, stepsPerEpoch } = this.#i;
    const ppo = this.#i.ppo!, state = this.state;
    const lr = lrAt(step - 1, sched);
    const r = await ppo.step(step, this.#microBatch<SftRecord>(step, 0, ppo.batchSize, 1), lr);
    this.#tokensThisRun += r.tokens;
    state.total_tokens += r.tokens;
    state.global_step = step;
    state.epoch = step / stepsPerEpoch;
    this.lastLoss = r.loss;
    const tps = this.#tokensThisRun / Math.max(this.#seconds(), 1e-9);
    if (step % a.logging_steps === 0 || step === this.total) {
      const w = ppo.windowLogs(), epoch = pyRound((step - 1) / stepsPerEpoch, 2);
      this.losses.push({ step, loss: w.loss });
      state.log_history.push({ loss: w.loss, reward: w.reward, learning_rate: lr, epoch, step: step - 1 });
      tlog.log(step, { loss: w.loss, reward: w.reward, lr, epoch, totalTokens: state.total_tokens });
      log(
        `step ${step}/${this.total}  loss ${w.loss.toFixed(4)}  reward ${w.reward.toFixed(4)}  ` +
          `kl ${r.stats["objective/kl"].toFixed(4)}  lr ${lr.toExponential(2)}  epoch ${epoch.toFixed(2)}  ` +
          `${tps.toFixed(0)} tok/s`,
      );
    }
    return {
      ...this.#line(step, {
        loss: r.loss,
        grad_norm: r.gradNorm,
        reward: r.reward,
        ...r.stats,
        lr,
        epoch: state.epoch,
      }),
      throughput: pyRound(tps, 2),
      total_tokens: state.total_tokens,
    };
  }

  /** Runs up to `n` optimizer steps; see `TrainSession.step`. */
  async steps(n: number, onStep?: (r: StepRecord) => void): Promise<StepRecord[]> {
    const { args: a, tlog, sched, log, pref } = this.#i;
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
        if (this.#i.ppo) {
          const rec = await this.#ppoStep(step);
          out.push(rec);
          this.#emit({ type: "step", data: rec });
          onStep?.(rec);
          if (a.save_strategy === "steps" && a.save_steps > 0 && step % a.save_steps === 0 && step < total) {
            await this.saveCheckpoint();
          }
          continue;
        }
        const { feeds, tokens, present, graph, L } = this.#stepFeeds(step, B, G, multiple);
        let adamStep = step;
        // Before GaLore's refresh, whose gradient graph takes the seed too (rm's value-head dropout).
        feeds.seed = [(Math.imul(a.seed + 1, 2654435761) ^ step) >>> 0];
        if (this.#i.optimRun) {
          // GaLore (a projection refresh on some steps) or BAdam (the active block); their own step graphs, with the
          // preference objective for rm, dpo and kto.
          const o = await this.#i.optimRun.prepare(step, this.#i.stepPlan(L), feeds, pref?.stepLoss(L));
          if (o.fresh) {
            for (const k of [...this.#graphs.keys()]) {
              if (k.startsWith(`${this.#i.optimRun.kind}:`)) this.#graphs.delete(k);
            }
          }
          graph.key = o.key;
          graph.make = o.make;
          adamStep = o.adamStep;
        }
        feeds.lr = [lrAt(step - 1, sched)];
        feeds.step = [adamStep];
        this.#tokensThisRun += tokens;
        state.total_tokens += tokens;
        this.#sinceLog++;
        if (pref) pref.microSinceLog += present;
        const c = await this.#compiled(graph.key, graph.make);
        const logNow = step % a.logging_steps === 0 || step === total;
        const fetch = logNow ? ["loss_sum", "grad_norm", "loss"] : this.#i.readEveryStep ? ["loss", "grad_norm"] : [];
        if (pref && fetch.length) fetch.push("metrics", ...(logNow ? ["metric_sums"] : []));
        res = c.run(feeds, fetch);
        state.global_step = step;
        state.epoch = step / this.#i.stepsPerEpoch;
        const tps = this.#tokensThisRun / Math.max(this.#seconds(), 1e-9);
        let loss: number | undefined, gradNorm: number | undefined, stepMetrics: Record<string, number> = {};
        const lr = loggedLrAt(step, sched);
        if (logNow) {
          const o = await res;
          this.#executor.setParam(LOSS_SUM, [0], [1]);
          const windowLoss = o.loss_sum[0] / this.#sinceLog;
          this.#sinceLog = 0;
          // LF's logs: HF's loss, grad_norm and learning_rate, then the stage's stored metrics averaged, then epoch.
          const metrics = pref ? pref.windowLogs(o.metric_sums) : {};
          this.losses.push({ step, loss: windowLoss });
          state.log_history.push({
            loss: windowLoss,
            grad_norm: o.grad_norm[0],
            learning_rate: lr,
            ...metrics,
            epoch: state.epoch,
            step,
          });
          tlog.log(step, {
            loss: windowLoss,
            accuracy: metrics["rewards/accuracies"],
            lr,
            epoch: state.epoch,
            totalTokens: state.total_tokens,
          });
          log(
            `step ${step}/${total}  loss ${windowLoss.toFixed(4)}  grad_norm ${o.grad_norm[0].toFixed(3)}  ` +
              `${showMetrics(metrics)}${Object.keys(metrics).length ? "  " : ""}` +
              `lr ${lr.toExponential(2)}  epoch ${state.epoch.toFixed(2)}  ${tps.toFixed(0)} tok/s`,
          );
          [loss, gradNorm] = [o.loss[0], o.grad_norm[0]];
          if (pref) stepMetrics = pref.stepLogs(o.metrics, present);
        } else if (this.#i.readEveryStep) {
          const o = await res;
          [loss, gradNorm] = [o.loss[0], o.grad_norm[0]];
          if (pref) stepMetrics = pref.stepLogs(o.metrics, present);
        }
        if (loss !== undefined) this.lastLoss = loss;
        const rec: StepRecord = {
          ...this.#line(step, {
            ...(loss === undefined ? {} : { loss }),
            ...(gradNorm === undefined ? {} : { grad_norm: gradNorm }),
            ...stepMetrics,
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
    const { args: a, evalRecords, log } = this.#i;
    const out = a.output_dir, state = this.state;
    const secs = this.#seconds();
    await saveRunModel(this.#i, out);
    if (a.pissa_convert) await savePissaConverted(this.#i.model, out); // LF's PissaConvertCallback.on_train_end
    const metrics = trainMetrics(this.#i, this.losses, secs, this.#startStep);
    // LF's run_ppo saves the model and the trainer state only (no train_results.json).
    if (!this.#i.ppo) await writeResults(out, "train", metrics);
    let evalLoss: number | undefined;
    if (evalRecords.length && (a.do_eval || this.evalLosses.length)) {
      const e = await this.#evaluateAll(), em = evalMetrics(this.#i, e);
      evalLoss = e.loss;
      await writeResults(out, "eval", { epoch: state.epoch, eval_loss: evalLoss, ...em });
      log(`eval_loss ${evalLoss.toFixed(4)}  ${showMetrics(em)}`);
      this.#emit({
        type: "eval",
        data: this.#line(state.global_step, { eval_loss: evalLoss, ...em, epoch: state.epoch }) as EvalRecord,
      });
    }
    await writeTrainerState(out, trainerStateOf(this.#i, state.global_step));
    this.close();
    await plotRun(this.#i, this.evalLosses);
    return { metrics, evalLoss };
  }

  /** Closes the trainer log (idempotent). */
  close(): void {
    if (!this.#tlogOpen) return;
    this.#tlogOpen = false;
    this.#i.tlog.close();
  }
}
