/**
 * A training run driven step by step: `TrainSession.create(args)` loads the model, tokenizer and data as
 * `deno task train` does, then `step(n)` runs n optimizer steps (logging, evaluating and checkpointing at the
 * configured steps, as the trainer does), and `evaluate()`, `generate()`, `save()` and `export()` act on the model
 * being trained. The trainer (`train` in trainer.ts), the HTTP API and notebooks share it. Stages pt and sft train
 * the language-model loss (step.ts); rm, dpo and kto their preference objectives (pref_run.ts, pref_step.ts); ppo
 * generates, scores and runs TRL's PPO updates (ppo_run.ts, ppo_step.ts). Step records and evaluations carry
 * LLaMA-Factory's metrics (`rewards/accuracies`, `eval_accuracy`, `reward`, ...).
 *
 * One operation runs at a time: a call made while another is running throws {@link SessionBusyError}.
 *
 * @example
 * ```ts
 * const s = await TrainSession.create(await loadTrainConfig("examples/demo_lora_sft.yaml", ["max_steps=10"]));
 * console.log(s.plan.trainable_parameters);
 * for (const r of await s.step(5)) console.log(r.current_steps, r.loss);
 * console.log(await s.evaluate(), (await s.generate([{ role: "user", content: "Hi" }], { maxNewTokens: 16 })).text);
 * await s.save();
 * ```
 * @module
 */
import type { TrainArgs } from "../config/args.ts";
import type { SftRecord } from "../data/process.ts";
import { ChatEngine, type ChatOptions, type ChatResult } from "../eval/chat.ts";
import type { TemplateMessage } from "../data/template.ts";
import { planGraph } from "../exec/plan.ts";
import { DTYPE_BYTES } from "../graph/types.ts";
import { exportModel } from "../nn/export.ts";
import type { Model } from "../nn/model.ts";
import { saveValueHead } from "../nn/value_head.ts";
import { resolveModel } from "../io/hub.ts";
import { bucket } from "./batches.ts";
import { cleanCheckpointLeftovers, latestCheckpoint } from "./checkpoint.ts";
import { scheduleFromArgs } from "./schedule.ts";
import { type StepPlan, traceTrainStep } from "./step.ts";
import { chooseFp16, initLossScaler } from "./loss_scale.ts";
import { isPrefStage, type PrefRecord, PrefRun, setupPref } from "./pref_run.ts";
import { PpoRun, setupPpo } from "./ppo_run.ts";
import { tracePpoStep } from "./ppo_step.ts";
import type { GeneratingArgs } from "./predict.ts";
import {
  initOptimizer,
  loadTrainModel,
  pickExecutor,
  prepareData,
  type PreparedData,
  restore,
  trainableShape,
  type TrainState,
} from "./session_files.ts";
import { SessionRun } from "./session_run.ts";
import { setupOptimRun } from "./optim_run.ts";
import {
  type EvalRecord,
  type FinishResult,
  SessionBusyError,
  type SessionEvent,
  SessionFinishedError,
  type SessionOptions,
  type SessionPlan,
  type StepRecord,
} from "./session_records.ts";
import { type LogHistoryEntry, TrainerLog } from "./trainer_log.ts";

export type {
  EvalRecord,
  FinishResult,
  SessionEvent,
  SessionOptions,
  SessionPlan,
  StepRecord,
} from "./session_records.ts";
export { SessionBusyError, SessionFinishedError } from "./session_records.ts";

/** A training run on a loaded model, driven step by step. */
export class TrainSession {
  readonly #run: SessionRun;
  #busy: string | undefined;
  #final: FinishResult | undefined;
  #chat: ChatEngine | undefined;
  #closed = false;
  #autoFinish = true;

  private constructor(
    readonly args: TrainArgs,
    readonly model: Model,
    readonly data: PreparedData,
    readonly plan: SessionPlan,
    run: SessionRun,
  ) {
    this.#run = run;
  }

  /** Loads the model (with its adapter), tokenizer and data; resumes from `args.resume_from_checkpoint` if set. */
  static async create(a: TrainArgs, opts: SessionOptions = {}): Promise<TrainSession> {
    const log = opts.log ?? ((s: string) => console.error(s));
    if (a.stage === "ppo") {
      if (a.resume_from_checkpoint) {
        throw new Error("resume_from_checkpoint: `resume_from_checkpoint` will be supported in the future version.");
      }
      if (a.eval_dataset || a.val_size > 0) throw new Error("PPOTrainer does not support eval dataset yet.");
      if (!a.reward_model && !opts.reward) {
        throw new Error("reward_model: `reward_model` is necessary for PPO training.");
      }
    }
    const data = await prepareData(a);
    const records = data.train.records as SftRecord[] | PrefRecord[];
    const evalRecords = (data.eval?.records ?? []) as SftRecord[] | PrefRecord[];
    log(
      `data: ${records.length} train records, ${evalRecords.length} eval records (cutoff_len ${data.train.args.cutoffLen})`,
    );
    const executor = await pickExecutor(a.executor);
    const lora = a.finetuning_type === "lora";
    const loaded = await loadTrainModel(a, executor);
    const model = loaded.model;
    let trainable = loaded.trainable;
    const pref = isPrefStage(a.stage) ? await setupPref(a, model, trainable, log) : undefined;
    const ppo = a.stage === "ppo" ? await setupPpo(a, model, trainable, log, opts.reward) : undefined;
    trainable = pref?.trainable ?? ppo?.trainable ?? trainable;
    const numel = (s: number[]) => s.reduce((x, y) => x * y, 1);
    const nTrain = trainable.reduce((n, k) => n + numel(trainableShape(model, k)), 0);
    // QLoRA: the quantized linears are no longer in model.params; they count with their [out, in] shapes.
    const nAll = [...model.params.values()].reduce((n, p) => n + numel(p.shape), 0) +
      [...(model.quantized?.modules.values() ?? [])].reduce((n, s) => n + s[0] * s[1], 0);
    log(
      `model: ${model.config.family}, ${(nAll / 1e6).toFixed(2)}M params; trainable ${(nTrain / 1e6).toFixed(3)}M ` +
        `(${((100 * nTrain) / nAll).toFixed(2)}%) by ${a.finetuning_type} on ${executor.name}`,
    );
    // GaLore and BAdam keep their own optimizer states (optim_run.ts); AdamW / SGD get full-shape ones here.
    const optimRun = await setupOptimRun(a, model, trainable);
    initOptimizer(model, optimRun ? [] : trainable, a.optim);
    const plainStep = !pref && !ppo && !optimRun;
    const fp16 = await chooseFp16(a, executor, { plainStep, quantized: !!model.quantized }, log);
    if (fp16) initLossScaler(executor);

    const B = a.per_device_train_batch_size, G = a.gradient_accumulation_steps;
    // ppo: TRL's dataloader of B·G·ppo_buffer_size prompts per step, last partial batch dropped.
    const stepsPerEpoch = ppo
      ? Math.max(1, Math.floor(records.length / (B * G * a.ppo_buffer_size)))
      : Math.max(1, Math.floor(Math.ceil(records.length / B) / G));
    const total = a.max_steps > 0 ? a.max_steps : Math.ceil(a.num_train_epochs * stepsPerEpoch);
    const sched = scheduleFromArgs({
      ...a,
      lr_scheduler_kwargs: { ...(a.lr_scheduler_kwargs ?? {}) } as Record<string, unknown>,
    }, total);
    const stepPlan = (L: number): StepPlan => ({
      G,
      B,
      L,
      trainable,
      optim: a.optim,
      beta1: a.adam_beta1,
      beta2: a.adam_beta2,
      eps: a.adam_epsilon,
      weightDecay: a.weight_decay,
      maxGradNorm: a.max_grad_norm,
      loraplusRatio: a.loraplus_lr_ratio ?? 0,
      // rm: TRL's dropout before the value head; dpo and kto: LF turns dropout off (pref_step.ts ignores it).
      dropout: (lora && a.lora_dropout > 0) || a.stage === "rm",
      // LF's default gradient checkpointing (disable_gradient_checkpointing: false); ppo's step does not use it.
      checkpoint: !a.disable_gradient_checkpointing,
      fp16,
    });

    let state: TrainState = { global_step: 0, epoch: 0, total_tokens: 0, log_history: [] };
    const prefRun = pref && new PrefRun(model, pref.objective, (L) => ({ ...stepPlan(L), objective: pref.objective }));
    prefRun?.resetSums();
    // ppo generates with LF's generating arguments (GeneratingArguments, as in its PPO example's `### generate`).
    const gen = a as TrainArgs & GeneratingArgs;
    const ppoRun = ppo && new PpoRun(model, ppo, a, stepPlan, {
      maxNewTokens: gen.max_new_tokens,
      doSample: gen.do_sample,
      temperature: gen.temperature,
      topP: gen.top_p,
      topK: gen.top_k,
      repetitionPenalty: gen.repetition_penalty,
      stop: model.stopIds(data.stop),
    }, { pad: data.template.padId, eos: data.template.eosId });
    // ppo: a prompt and its longest response.
    const lengthOf = (r: SftRecord | PrefRecord) =>
      prefRun ? prefRun.length(r as PrefRecord) : (r as SftRecord).input_ids.length + (ppoRun ? gen.max_new_tokens : 0);
    let sinceLog = 0;
    const out = a.output_dir;
    await cleanCheckpointLeftovers(out).catch(() => []);
    if (a.resume_from_checkpoint) {
      const dir = a.resume_from_checkpoint === true
        ? (await latestCheckpoint(out))?.path
        : String(a.resume_from_checkpoint);
      if (!dir) throw new Error(`resume_from_checkpoint: no checkpoint-N folder in ${out}`);
      state = await restore(model, dir, trainable, !lora);
      optimRun?.resumed();
      const rng = JSON.parse(await Deno.readTextFile(`${dir}/rng_state.json`));
      sinceLog = rng.since_log ?? 0;
      if (prefRun) prefRun.microSinceLog = rng.micro_batches_since_log ?? 0;
      log(`resumed from ${dir} at step ${state.global_step}`);
    }
    await Deno.mkdir(out, { recursive: true });
    const clock = { activeMs: 0, since: undefined as number | undefined };
    const now = () => clock.activeMs + (clock.since === undefined ? 0 : performance.now() - clock.since);
    const tlog = await TrainerLog.open(out, {
      totalSteps: total,
      resumeStep: a.resume_from_checkpoint ? state.global_step : undefined,
      resumeTokens: state.total_tokens,
      now,
    });
    const maxLen = bucket(Math.max(...(records as (SftRecord | PrefRecord)[]).map(lengthOf)), a.bucket ?? 64);
    const plan: SessionPlan = {
      stage: a.stage,
      finetuning_type: a.finetuning_type,
      executor: executor.name,
      model_family: model.config.family,
      parameters: nAll,
      trainable_parameters: nTrain,
      trainable_percent: (100 * nTrain) / nAll,
      train_records: records.length,
      eval_records: evalRecords.length,
      total_steps: total,
      steps_per_epoch: stepsPerEpoch,
      per_device_train_batch_size: B,
      gradient_accumulation_steps: G,
      max_length: maxLen,
    };
    if (opts.planMemory ?? true) {
      const stored = [...model.params.values()].reduce((n, p) => n + numel(p.shape) * DTYPE_BYTES[p.dtype], 0) +
        [...(model.adapter?.params.values() ?? [])].reduce((n, p) => n + numel(p.shape) * DTYPE_BYTES[p.dtype], 0) +
        (model.quantized?.bytes().quantized ?? 0) +
        (pref?.extraBytes ?? ppo?.extraBytes ?? 0);
      const optimizer = optimRun ? optimRun.optimizerBytes() : a.optim === "adamw" ? 2 * 4 * nTrain : 0;
      const graph = prefRun
        ? prefRun.trace(maxLen)
        : ppo
        ? tracePpoStep(model, stepPlan(maxLen))
        : optimRun
        ? optimRun.trace(stepPlan(maxLen))
        : traceTrainStep(model, stepPlan(maxLen));
      const activations = planGraph(graph).arenaBytes;
      plan.memory = { parameters: stored, optimizer, activations, total: stored + optimizer + activations };
    }
    const run = new SessionRun({
      args: a,
      model,
      records,
      evalRecords,
      trainable,
      total,
      stepsPerEpoch,
      sched,
      stepPlan,
      state,
      sinceLog,
      tlog,
      clock,
      log,
      readEveryStep: opts.readEveryStep ?? true,
      pref: prefRun,
      ppo: ppoRun,
      valueHead: pref?.valueHead || !!ppo,
      optimRun,
    });
    const session = new TrainSession(a, model, data, plan, run);
    session.#autoFinish = opts.autoFinish ?? true;
    return session;
  }

  /** Optimizer steps done (resumed ones included). */
  get globalStep(): number {
    return this.#run.state.global_step;
  }

  /** Optimizer steps of the whole run. */
  get totalSteps(): number {
    return this.#run.total;
  }

  /** True once every step has run. */
  get finished(): boolean {
    return this.#run.state.global_step >= this.#run.total;
  }

  /** The final outputs, once written (see {@link finish}). */
  get result(): FinishResult | undefined {
    return this.#final;
  }

  /** What is running now, if anything. */
  get busy(): string | undefined {
    return this.#busy;
  }

  /** (step, loss) at each logging step (the mean over the steps since the previous one), as the trainer returns. */
  get losses(): { step: number; loss: number }[] {
    return this.#run.losses;
  }

  /** HF's log_history so far: logging steps (with LF's preference metrics for rm, dpo, kto) and evaluations. */
  get logHistory(): LogHistoryEntry[] {
    return this.#run.state.log_history;
  }

  /** (step, eval_loss) of each evaluation. */
  get evalLosses(): { step: number; eval_loss: number }[] {
    return this.#run.evalLosses;
  }

  /** Input tokens of the steps this session ran, and the seconds spent in them. */
  get stats(): { tokens: number; seconds: number; tokensPerSecond: number } {
    return this.#run.stats();
  }

  /** A snapshot for status displays. */
  get state(): {
    global_step: number;
    total_steps: number;
    epoch: number;
    total_tokens: number;
    busy: string | null;
    finished: boolean;
    last_loss: number | null;
    output_dir: string;
  } {
    const s = this.#run.state;
    return {
      global_step: s.global_step,
      total_steps: this.#run.total,
      epoch: s.epoch,
      total_tokens: s.total_tokens,
      busy: this.#busy ?? null,
      finished: this.finished,
      last_loss: this.#run.lastLoss ?? null,
      output_dir: this.args.output_dir,
    };
  }

  /** Subscribes to the session's events (`step`, `eval`, `save`, `done`); returns the unsubscribe function. */
  on(listener: (e: SessionEvent) => void): () => void {
    return this.#run.on(listener);
  }

  /** Runs `fn` as the session's one running operation (throws {@link SessionBusyError} if another runs). */
  async exclusive<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.#closed) throw new Error(`cannot ${what}: the session is closed`);
    if (this.#busy) throw new SessionBusyError(what, this.#busy);
    this.#busy = what;
    try {
      return await fn();
    } finally {
      this.#busy = undefined;
    }
  }

  /**
   * Runs up to `n` optimizer steps (fewer when the run ends first); `onStep` gets each step's record as it ends.
   * Evaluations and checkpoints happen at `eval_steps` / `save_steps` as in the trainer; reaching the last step
   * writes the final outputs (unless `autoFinish` is off). Resolves with the steps' records.
   */
  async step(n: number, onStep?: (r: StepRecord) => void): Promise<StepRecord[]> {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`steps must be an integer >= 1, got ${n}`);
    if (this.finished) throw new SessionFinishedError(this.#run.total);
    return await this.exclusive("step", async () => {
      let records: StepRecord[] = [];
      try {
        records = await this.#run.steps(n, onStep);
        if (this.finished && this.#autoFinish) this.#final = await this.#run.finish();
        this.#run.emitDone(records.length, this.finished);
      } catch (e) {
        this.#run.emitDone(records.length, this.finished, (e as Error).message);
        throw e;
      }
      return records;
    });
  }

  /** Evaluates on the held-out data (logged as the trainer logs evaluations); throws without eval data. */
  evaluate(): Promise<EvalRecord> {
    if (!this.plan.eval_records) {
      throw new Error("no evaluation data: set val_size or eval_dataset in the session's arguments");
    }
    return this.exclusive("evaluate", () => this.#run.evaluateAndLog());
  }

  /** The chat engine on the model being trained, through the session's template. */
  get chat(): ChatEngine {
    return this.#chat ??= new ChatEngine(this.model, this.data.template);
  }

  /** Answers a conversation with the model being trained (messages rendered with the session's template). */
  generate(
    messages: TemplateMessage[],
    opts: ChatOptions & { system?: string | null; tools?: string | null } = {},
  ): Promise<ChatResult> {
    return this.exclusive("generate", () => {
      const prompt = this.chat.encode(messages, opts.system, opts.tools);
      return this.chat.complete(prompt, opts);
    });
  }

  /** Writes `checkpoint-<step>` and the adapter (or model folder) into output_dir, as the trainer does. */
  save(): Promise<{ step: number; checkpoint: string; output_dir: string }> {
    return this.exclusive("save", async () => {
      const checkpoint = await this.#run.saveCheckpoint();
      await this.#run.saveOutputs();
      return { step: this.globalStep, checkpoint, output_dir: this.args.output_dir };
    });
  }

  /**
   * Merges the adapter into the base weights and writes an HF model folder (see engine/nn/export.ts); stage rm also
   * writes its value_head.safetensors there, as LF's export does.
   */
  export(dir: string, opts: { dtype?: "f32" | "bf16" | "f16"; shardBytes?: number } = {}): Promise<{ dir: string }> {
    return this.exclusive("export", async () => {
      if (this.model.quantized) {
        throw new Error(
          `quantization_bit: Cannot merge adapters to a quantized model (the base is quantized to ` +
            `${this.args.quantization_bit} bits); export from a session without quantization_bit`,
        );
      }
      const source = await resolveModel(this.args.model_name_or_path, { revision: this.args.model_revision });
      await exportModel(this.model, dir, { source, ...opts });
      // LF's export copies the value head of a stage rm model.
      if (this.args.stage === "rm") await saveValueHead(this.model, dir);
      return { dir };
    });
  }

  /** Writes the final outputs (adapter or model, results, trainer state, plots); once. */
  async finish(): Promise<FinishResult> {
    if (this.#final) return this.#final;
    return await this.exclusive("finish", async () => this.#final = await this.#run.finish());
  }

  /** Closes the trainer log and releases the executor's memory; the session cannot be used afterwards. */
  close(): void {
    if (this.#closed) return;
    if (this.#busy) throw new SessionBusyError("close", this.#busy);
    this.#closed = true;
    this.#run.close();
    this.model.executor.dispose();
  }

  /** Where the latest complete checkpoint of `args.output_dir` is, if any (to resume a session). */
  static async latestCheckpoint(a: TrainArgs): Promise<string | undefined> {
    return (await latestCheckpoint(a.output_dir))?.path;
  }
}
