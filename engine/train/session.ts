/**
 * A training run driven step by step: `TrainSession.create(args)` loads the model, tokenizer and data as
 * `deno task train` does, then `step(n)` runs n optimizer steps (logging, evaluating and checkpointing at the
 * configured steps, as the trainer does), and `evaluate()`, `generate()`, `save()` and `export()` act on the model
 * being trained. The trainer (`train` in trainer.ts), the HTTP API and notebooks share it. Each stage is an object
 * (stages/: pt and sft the language-model loss, rm, dpo and kto their preference objectives, ppo generation, scoring
 * and TRL's PPO updates) whose steps the one step builder (step/builder.ts) traces. Step records and evaluations carry
 * LLaMA-Factory's metrics (`rewards/accuracies`, `eval_accuracy`, `reward`, ...). The setup is in session_setup.ts,
 * the stepping in session_run.ts.
 *
 * One operation runs at a time: a call made while another is running throws {@link SessionBusyError}.
 *
 * @example
 * ```ts
 * import { loadTrainConfig, TrainSession } from "../mod.ts";
 * const out = await Deno.makeTempDir();
 * const a = await loadTrainConfig("examples/demo_lora_sft.yaml", ["max_steps=6", `output_dir=${out}`]);
 * const s = await TrainSession.create(a, { log: () => {} });
 * console.log(s.plan.trainable_parameters, s.stage.name);
 * for (const r of await s.step(3)) console.log(r.current_steps, r.loss);
 * console.log(await s.evaluate(), (await s.generate([{ role: "user", content: "Hi" }], { maxNewTokens: 8 })).text);
 * await s.save();
 * s.close();
 * ```
 * @module
 */
import type { TrainArgs } from "../config/args.ts";
import { hubOptionsOf } from "../config/views.ts";
import { ChatEngine, type ChatOptions, type ChatResult } from "../eval/chat.ts";
import type { TemplateMessage } from "../data/template.ts";
import { exportModel } from "../nn/export.ts";
import { LoraAdapter } from "../nn/lora.ts";
import { OftAdapter } from "../nn/oft.ts";
import { loadModel, type Model } from "../nn/model.ts";
import { exportOnnxBeside } from "../nn/onnx_export.ts";
import { saveModel } from "./outputs/model_files.ts";
import { saveValueHead } from "../nn/value_head.ts";
import { resolveModel } from "../io/hub.ts";
import { latestCheckpoint } from "./outputs/checkpoint.ts";
import type { PreparedData } from "./run_inputs.ts";
import type { SessionRun } from "./session_run.ts";
import type { Stage } from "./stages/stage.ts";
import { setupSession } from "./session_setup.ts";
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
import type { LogHistoryEntry } from "./outputs/trainer_log.ts";

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
  /** Generations running together (they share the chat engine's batch; `#busy` is "generate" while any runs). */
  #generating = 0;
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
    const { args, model, data, plan, run } = await setupSession(a, opts);
    const session = new TrainSession(args, model, data, plan, run);
    session.#autoFinish = opts.autoFinish ?? true;
    return session;
  }

  /** The stage being trained (stages/). */
  get stage(): Stage {
    return this.#run.stage;
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
    return this.#run.state.global_step >= this.#run.total || this.#run.stopped;
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
   * Runs `fn`, a generation, beside the other generations running on the session (they batch together), but never
   * beside another operation: while a step, evaluation, save or export runs it throws {@link SessionBusyError},
   * and those throw it while any generation runs.
   */
  async generating<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#closed) throw new Error(`cannot generate: the session is closed`);
    if (this.#busy && this.#busy !== "generate") throw new SessionBusyError("generate", this.#busy);
    this.#busy = "generate";
    this.#generating++;
    try {
      return await fn();
    } finally {
      if (--this.#generating === 0) this.#busy = undefined;
    }
  }

  /**
   * Runs up to `n` optimizer steps (fewer when the run ends first); `onStep` gets each step's record as it ends.
   * Evaluations and checkpoints happen at `eval_steps` / `save_steps` as in the trainer; reaching the last step
   * writes the final outputs (unless `autoFinish` is off). Resolves with the steps' records. An aborted `signal`
   * ends the steps at the next step boundary (the step running finishes, with its evaluation and checkpoint).
   */
  async step(n: number, onStep?: (r: StepRecord) => void, opts: { signal?: AbortSignal } = {}): Promise<StepRecord[]> {
    if (!Number.isInteger(n) || n < 1) throw new RangeError(`steps must be an integer >= 1, got ${n}`);
    if (this.finished) throw new SessionFinishedError(this.#run.total);
    return await this.exclusive("step", async () => {
      let records: StepRecord[] = [];
      try {
        records = await this.#run.steps(n, onStep, opts.signal);
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
    return this.generating(() => {
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
  export(
    dir: string,
    opts: { dtype?: "f32" | "bf16" | "f16"; shardBytes?: number; onnx?: boolean } = {},
  ): Promise<{ dir: string }> {
    return this.exclusive("export", async () => {
      if (this.model.quantized) {
        throw new Error(
          `quantization_bit: Cannot merge adapters to a quantized model (the base is quantized to ` +
            `${this.args.quantization_bit} bits); export from a session without quantization_bit`,
        );
      }
      const source = await resolveModel(this.args.model_name_or_path, hubOptionsOf(this.args));
      await exportModel(this.model, dir, {
        source,
        dtype: opts.dtype,
        shardBytes: opts.shardBytes,
        template: this.args.template ?? undefined,
      });
      // LF's export copies the value head of a stage rm model.
      if (this.#run.stage.exportsValueHead) await saveValueHead(this.model, dir);
      // As `deno task export` with export_onnx: the merged folder, loaded again, written as <dir>/onnx/model.onnx.
      if (opts.onnx) {
        const merged = await loadModel(dir, { executor: "reference" });
        try {
          await exportOnnxBeside(merged, dir);
        } finally {
          merged.executor.dispose();
        }
      }
      return { dir };
    });
  }

  /**
   * Writes the adapter being trained alone into `dir` (adapter_config.json, adapter_model.safetensors and the
   * tokenizer files), as a checkpoint holds it; throws when the session trains no LoRA adapter.
   */
  exportAdapter(dir: string): Promise<{ dir: string }> {
    return this.exclusive("export", async () => {
      if (!(this.model.adapter instanceof LoraAdapter) && !(this.model.adapter instanceof OftAdapter)) {
        throw new Error(
          `adapter_only: the session trains finetuning_type ${this.args.finetuning_type}, not an adapter`,
        );
      }
      const source = await resolveModel(this.args.model_name_or_path, hubOptionsOf(this.args));
      await saveModel(this.model, dir, source, false, { valueHead: this.#run.stage.valueHead });
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
