/**
 * A training stage as one object: how its records are batched and fed, its objective (step/), what each optimizer
 * step logs, how it evaluates, and what its run writes. The session loop (engine/train/session_run.ts) drives any
 * {@link Stage} the same way; a new stage is a new file here and a line in registry.ts.
 *
 * Most stages train one traced graph per optimizer step: {@link GraphStage} runs that step (feeds, the optimizer's
 * preparation, the compiled graph, read-backs at logging steps) for them; they supply the feeds, the objective and
 * their metrics. ppo (ppo.ts) generates, scores and updates inside its step.
 * @module
 */
import type { TrainArgs } from "../../config/args.ts";
import type { CompiledGraph, HostArray, SymbolicSizes } from "../../exec/executor.ts";
import type { Graph } from "../../graph/mod.ts";
import type { Model } from "../../nn/model.ts";
import { bucket } from "../batches.ts";
import type { OptimizerRun } from "../optimizers.ts";
import { buildStep, LOSS_SUM } from "../step/builder.ts";
import type { Objective } from "../step/objective.ts";
import { composeStep, type StepPlan } from "../step/plan.ts";

/**
 * Compiles the graph `make` builds, once per `key`; with `symbolic` (its sizes and how to trace it at others), an
 * executor that can serves every size with one compiled model (ONNX Runtime: exec/onnx/symbolic.ts).
 */
export type CompileCached = (key: string, make: () => Graph, symbolic?: SymbolicSizes) => Promise<CompiledGraph>;

/** What a stage is given by the session. */
export interface StageContext {
  args: TrainArgs;
  model: Model;
  /** The step plan for rows of length L (shapes, trainable names, optimizer settings, dropout, fp16...). */
  plan: (L: number) => StepPlan;
  optimizer: OptimizerRun;
  compile: CompileCached;
  /** Drops compiled graphs whose key starts with `prefix` (their parameters were replaced). */
  forget: (prefix: string) => void;
  log: (line: string) => void;
}

/** What the loop tells a stage about one optimizer step. */
export interface StepInput {
  /** 1-based global step. */
  step: number;
  /** The records of micro-batch k of this step (`B` records each; stages that batch differently pass theirs). */
  records<R>(k: number, B?: number, G?: number): R[];
  /** The learning rate the step trains with. */
  lr: number;
  /** The learning rate a logging step logs (HF logs the scheduler's value after the step). */
  loggedLr: number;
  /** Read this step's values back (every step with `readEveryStep`, and at logging steps). */
  read: boolean;
  /** This is a logging step: also close the logging window. */
  logNow: boolean;
  /** Optimizer steps of one epoch. */
  stepsPerEpoch: number;
}

/** The values of one step for its record. */
export interface StepValues {
  loss?: number;
  grad_norm?: number;
  /** The lr the record shows (default: the logged lr). */
  lr?: number;
  /** The stage's metrics of the step (`rewards/…`, `accuracy`, `reward`, TRL's `ppo/…`). */
  metrics: Record<string, number>;
}

/** A logging window's values, as LF logs them. */
export interface LogWindow {
  /** The mean loss of the steps since the last logging step. */
  loss: number;
  /** The log_history fields after `loss` and before `epoch` (grad_norm, learning_rate, the stage's metrics). */
  fields: Record<string, number>;
  /** LF's step and epoch numbering of the entry when it is not (global step, epoch): ppo's. */
  step?: number;
  epoch?: number;
  /** trainer_log.jsonl's stage fields. */
  trainerLog: { accuracy?: number; reward?: number };
  /** The console line's part between the loss and the lr. */
  shown: string;
}

/** One optimizer step as it ran. */
export interface StepOutput {
  /** Input tokens of the step. */
  tokens: number;
  /** Resolves once the step's results are in. */
  settled: Promise<unknown>;
  /** This step's values (when read). */
  values?: Promise<StepValues>;
  /** At logging steps: the window that ends here. */
  window?: Promise<LogWindow>;
}

/** An evaluation: its loss and the stage's eval metrics (`perplexity`, `eval_accuracy`, `eval_rewards/…`). */
export interface EvalResult {
  loss: number;
  metrics: Record<string, number>;
  /** The metrics log_history's eval entries carry (LF's stage metrics; pt / sft log the loss only). */
  history: Record<string, number>;
}

/** A training stage (see the module doc). */
export interface Stage<R = unknown> {
  readonly name: string;
  /** Steps of one epoch over `n` records. */
  stepsPerEpoch(n: number): number;
  /** The longest row of a record: its length bucket, and the plan's largest graph. */
  length(r: R): number;
  /** The objective of a step of rows of length L (memory planning, GaLore's gradient graph). */
  objective(L: number): Objective;
  /** Runs optimizer step `input.step`. */
  step(input: StepInput): Promise<StepOutput>;
  /**
   * Whether to log, evaluate and save after step `step` of `total`, when the stage's trainer has its own rule (LF's
   * PPO loop); undefined: HF's DefaultFlowCallback from the logging / eval / save strategies and steps.
   */
  actions?(step: number, total: number): { log: boolean; evaluate: boolean; save: boolean };
  /** Evaluates on `records`; undefined: the stage does not evaluate (ppo). */
  evaluate?(records: readonly R[]): Promise<EvalResult>;
  /** The log_history keys of LF's loss plots for this stage (pt / sft: undefined, the loss and eval_loss plots). */
  readonly plotKeys?: readonly string[];
  /** Whether the run writes `value_head.safetensors` with the model (rm, ppo). */
  readonly valueHead: boolean;
  /** Whether a merged export copies the value head (LF's export_model does for rm). */
  readonly exportsValueHead: boolean;
  /** Whether the run writes train_results.json (LF's run_ppo does not). */
  readonly trainResults: boolean;
  /** Whether the trainer answers a held-out prompt after training (sft). */
  readonly samples: boolean;
  /** State a checkpoint keeps to resume the logging window exactly (in rng_state.json). */
  checkpointState(): Record<string, number>;
  /** Puts back {@link checkpointState}. */
  restoreState(s: Record<string, number>): void;
  /** Bytes the stage stores besides the policy and its adapter (a value head, a reference, a reward model). */
  readonly extraBytes: number;
}

/** A step's feeds and what they hold. */
export interface StepFeeds {
  feeds: Record<string, ArrayLike<number>>;
  /** Real tokens. */
  tokens: number;
  /** Micro-batches with at least one record. */
  present: number;
}

/** The u32 seed of step `step`'s dropout masks. */
export const stepSeed = (seed: number, step: number): number => (Math.imul(seed + 1, 2654435761) ^ step) >>> 0;

/**
 * A stage that trains one traced graph per optimizer step (pt, sft, rm, dpo, kto): its subclass makes the feeds and
 * the objective, and turns the metric outputs into LF's keys.
 */
export abstract class GraphStage<R> implements Stage<R> {
  abstract readonly name: string;
  abstract readonly valueHead: boolean;
  abstract readonly extraBytes: number;
  readonly trainResults = true;
  readonly samples: boolean = false;
  readonly exportsValueHead: boolean = false;
  readonly plotKeys?: readonly string[];
  /** Steps since the last logging step. */
  protected sinceLog = 0;

  constructor(readonly ctx: StageContext) {}

  abstract length(r: R): number;
  abstract objective(L: number): Objective;
  /** Feeds of a step of G micro-batches (`rowsOf[k]`, at most B records each) padded to length L, of step `step`. */
  abstract feeds(rowsOf: readonly (readonly R[])[], B: number, L: number, step: number): StepFeeds;
  abstract evaluate(records: readonly R[]): Promise<EvalResult>;

  /**
   * transformers' count: ⌈micro-batches / G⌉, the last step of an epoch taking the leftover micro-batches (the
   * missing ones are empty: no targets, no rows, left out of the step's normaliser).
   */
  stepsPerEpoch(n: number): number {
    const a = this.ctx.args;
    return Math.max(1, Math.ceil(Math.ceil(n / a.per_device_train_batch_size) / a.gradient_accumulation_steps));
  }

  /** Outputs to read besides loss and grad_norm (`metrics`, and `metric_sums` at logging steps). */
  protected fetchMetrics(_logNow: boolean): string[] {
    return [];
  }

  /** The step's metrics for its record, from the step graph's outputs. */
  protected stepMetrics(_o: Record<string, HostArray>, _present: number): Record<string, number> {
    return {};
  }

  /** The window's metrics at a logging step, from the step graph's outputs (and resets the stage's running sums). */
  protected windowMetrics(_o: Record<string, HostArray>): Record<string, number> {
    return {};
  }

  /** Micro-batches with data (the divisor of a stage's metric means). */
  protected counted(_present: number): void {}

  async step(input: StepInput): Promise<StepOutput> {
    const { args: a, model, optimizer } = this.ctx;
    const B = a.per_device_train_batch_size, G = a.gradient_accumulation_steps;
    const rowsOf = Array.from({ length: G }, (_, k) => input.records<R>(k));
    const L = bucket(Math.max(...rowsOf.flat().map((r) => this.length(r))), a.bucket ?? 64);
    const { feeds, tokens, present } = this.feeds(rowsOf, B, L, input.step);
    // Before GaLore's refresh, whose gradient graph takes the seed too (rm's value-head dropout).
    feeds.seed = [stepSeed(a.seed, input.step)];
    const objective = this.objective(L);
    const o = await optimizer.prepare(input.step, feeds, objective, G);
    if (o.fresh) this.ctx.forget("step:");
    feeds.lr = [input.lr];
    feeds.step = [o.adamStep];
    const key = `step:${objective.key}:${o.key}:${L}`;
    // Traced at this length; the same step at other lengths (pure tracing) lets ONNX Runtime build one session for all.
    const trace = (s: Record<string, number>) => {
      const plan = { ...this.ctx.plan(s.L), trainable: o.names };
      return buildStep(composeStep(model, plan, s.L === L ? objective : this.objective(s.L), o.optimizer));
    };
    const c = await this.ctx.compile(key, () => trace({ L }), { sizes: { L }, trace });
    const fetch = input.logNow
      ? ["loss_sum", "grad_norm", "loss", ...this.fetchMetrics(true)]
      : input.read
      ? ["loss", "grad_norm", ...this.fetchMetrics(false)]
      : [];
    await model.adapter?.beforeStep?.(model);
    const res = c.run(feeds, fetch);
    this.sinceLog++;
    this.counted(present);
    const out: StepOutput = { tokens, settled: res };
    if (input.read || input.logNow) {
      out.values = res.then((r) => ({
        loss: r.loss[0],
        grad_norm: r.grad_norm[0],
        metrics: this.stepMetrics(r, present),
      }));
    }
    if (input.logNow) {
      out.window = res.then((r) => {
        model.executor.setParam(LOSS_SUM, [0], [1]);
        const loss = r.loss_sum[0] / this.sinceLog;
        this.sinceLog = 0;
        const metrics = this.windowMetrics(r);
        return {
          loss,
          // LF's logs: HF's loss, grad_norm and learning_rate, then the stage's stored metrics averaged, then epoch.
          fields: { grad_norm: r.grad_norm[0], learning_rate: input.loggedLr, ...metrics },
          trainerLog: { accuracy: metrics["rewards/accuracies"] },
          shown: `grad_norm ${r.grad_norm[0].toFixed(3)}  ${showMetrics(metrics)}`,
        };
      });
    }
    return out;
  }

  checkpointState(): Record<string, number> {
    return { since_log: this.sinceLog };
  }

  restoreState(s: Record<string, number>): void {
    this.sinceLog = s.since_log ?? 0;
  }
}

/** The metrics a log line shows (the rest are in trainer_log.jsonl and trainer_state.json). */
const SHOWN = new Set([
  "perplexity",
  "rewards/accuracies",
  "rewards/margins",
  "kl",
  "eval_accuracy",
  "eval_rewards/accuracies",
  "eval_rewards/margins",
  "eval_kl",
]);

/** The metrics of a log line, as `key value` pairs. */
export function showMetrics(m: Record<string, number>): string {
  return Object.entries(m)
    .filter(([k, v]) => SHOWN.has(k) && Number.isFinite(v))
    .map(([k, v]) => `${k} ${v.toFixed(k === "perplexity" ? 2 : 4)}`)
    .join("  ");
}
