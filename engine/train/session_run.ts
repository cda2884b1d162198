/**
 * The loop state of a {@link TrainSession} (session.ts): the data order, the compiled step graphs, the optimizer
 * steps with their logging, evaluations and checkpoints, the final outputs, and the events a session emits.
 * Each optimizer step — all its micro-batches, the backward, clipping and the update — is one traced graph replayed
 * with one submit (step.ts; pref_step.ts for rm, dpo and kto, driven by pref_run.ts); the loss is read back at logging
 * steps, or after every step with `readEveryStep`.
 * @module
 */
import type { SftRecord } from "../data/process.ts";
import type { CompiledGraph, Executor, HostArray } from "../exec/executor.ts";
import type { Graph } from "../graph/mod.ts";
import { bucket, collate, epochOrder } from "./batches.ts";
import { pruneCheckpoints, writeCheckpointAtomic } from "./checkpoint.ts";
import { plotLoss, plotLosses } from "./plot.ts";
import type { PrefRecord } from "./pref_run.ts";
import { loggedLrAt, lrAt } from "./schedule.ts";
import { saveModel, saveOptimizer, type TrainState } from "./session_files.ts";
import { type EvalRecord, type RunInit, type SessionEvent, showMetrics, type StepRecord } from "./session_records.ts";
import { LOSS_SUM, traceEvalStep, traceTrainStep, trainStepFeeds } from "./step.ts";
import {
  pyRound,
  type TrainerLogRecord,
  type TrainerState as TrainerStateFile,
  writeResults,
  writeTrainerState,
} from "./trainer_log.ts";

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
      this.#orders.set(epoch, order = epochOrder(records.length, a.seed, epoch));
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
  async #evaluateAll(): Promise<{ loss: number; metrics: Record<string, number> }> {
    const { args: a, pref } = this.#i;
    if (!pref) return { loss: await this.evaluate(), metrics: {} };
    return await pref.evaluate(
      this.#i.evalRecords as PrefRecord[],
      a.per_device_eval_batch_size,
      a.bucket ?? 64,
      (key, make) => this.#compiled(key, make),
    );
  }

  /** The metrics of an evaluation: LF's for rm, dpo and kto, else the perplexity. */
  #evalMetrics(e: { loss: number; metrics: Record<string, number> }): Record<string, number> {
    return this.#i.pref ? e.metrics : { perplexity: Math.exp(e.loss) };
  }

  /** Mean token loss over the evaluation records (rm, dpo, kto: the preference loss). */
  async evaluate(): Promise<number> {
    if (this.#i.pref) return (await this.#evaluateAll()).loss;
    const { args: a, model } = this.#i;
    const evalRecords = this.#i.evalRecords as SftRecord[];
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
    const e = await this.#evaluateAll(), evalLoss = e.loss, metrics = this.#evalMetrics(e);
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
      await saveModel(model, tmp, a.model_name_or_path, a.finetuning_type !== "lora", { valueHead: this.#i.valueHead });
      await saveOptimizer(model, tmp, trainable, a.optim, this.#i.optimRun?.states());
      await Deno.writeTextFile(`${tmp}/scheduler.json`, JSON.stringify({ last_step: step, ...sched }) + "\n");
      const micro = this.#i.pref ? { micro_batches_since_log: this.#i.pref.microSinceLog } : {};
      await Deno.writeTextFile(
        `${tmp}/rng_state.json`,
        JSON.stringify({ seed: a.seed, step, since_log: sinceLog, ...micro }) + "\n",
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
    await saveModel(this.#i.model, a.output_dir, a.model_name_or_path, a.finetuning_type !== "lora", {
      valueHead: this.#i.valueHead,
    });
    await writeTrainerState(a.output_dir, this.#trainerState(this.state.global_step));
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
        if (this.#i.optimRun) {
          // GaLore (a projection refresh on some steps) or BAdam (the active block); their own step graphs.
          const o = await this.#i.optimRun.prepare(step, this.#i.stepPlan(L), feeds);
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
        feeds.seed = [(Math.imul(a.seed + 1, 2654435761) ^ step) >>> 0];
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
    const { args: a, model, records, evalRecords, log, pref } = this.#i;
    const out = a.output_dir, state = this.state;
    const secs = this.#seconds();
    await saveModel(model, out, a.model_name_or_path, a.finetuning_type !== "lora", { valueHead: this.#i.valueHead });
    const metrics: Record<string, number> = {
      epoch: state.epoch,
      total_flos: 0,
      train_loss: this.losses.length ? this.losses.reduce((x, l) => x + l.loss, 0) / this.losses.length : 0,
      train_runtime: secs,
      train_samples_per_second: (records.length * state.epoch) / Math.max(secs, 1e-9),
      train_steps_per_second: (state.global_step - this.#startStep) / Math.max(secs, 1e-9),
    };
    // LF's run_ppo saves the model and the trainer state only (no train_results.json).
    if (!this.#i.ppo) await writeResults(out, "train", metrics);
    let evalLoss: number | undefined;
    if (evalRecords.length && (a.do_eval || this.evalLosses.length)) {
      const e = await this.#evaluateAll(), em = this.#evalMetrics(e);
      evalLoss = e.loss;
      await writeResults(out, "eval", { epoch: state.epoch, eval_loss: evalLoss, ...em });
      log(`eval_loss ${evalLoss.toFixed(4)}  ${showMetrics(em)}`);
      this.#emit({
        type: "eval",
        data: this.#line(state.global_step, { eval_loss: evalLoss, ...em, epoch: state.epoch }) as EvalRecord,
      });
    }
    await writeTrainerState(out, this.#trainerState(state.global_step));
    this.close();
    if (a.plot_loss && this.#i.ppo) {
      await plotLosses(out, state.log_history, ["loss", "reward"]);
    } else if (a.plot_loss && pref) {
      // LF's plot keys per stage (run_rm, run_dpo, run_kto).
      const keys = { rm: ["loss", "eval_loss", "eval_accuracy"], dpo: ["loss", "eval_loss", "rewards/accuracies"] };
      await plotLosses(
        out,
        state.log_history,
        pref.stage === "kto" ? ["loss", "rewards/chosen", "eval_loss"] : keys[pref.stage],
      );
    } else if (a.plot_loss) {
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
