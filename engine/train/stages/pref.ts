/**
 * Stages rm, dpo and kto, as LLaMA-Factory's `run_rm`, `run_dpo` and `run_kto` set them up:
 *
 * - rm: a value head on the decoder ({@link VALUE_HEAD_FILE} loaded from the adapter or model folder when it has one,
 *   else initialised as nn.Linear is), trained with the adapter (or the model's trainable weights), TRL's 0.1 dropout
 *   before it, and saved as `value_head.safetensors`;
 * - dpo / kto: the reference is `ref_model` (+ `ref_model_adapters`) when given, else for LoRA the same weights with the
 *   adapter disabled (no copy, LF's `null_ref_context`), else for full / freeze a frozen copy of only the tensors that
 *   train (the rest are shared with the policy); orpo and simpo take none. Dropout is off, as in LF's trainers.
 *
 * {@link PrefStage} makes each optimizer step's feeds (micro-batches of pairs or KTO examples, padded to one length
 * bucket; a micro-batch without data has all `rows_k` = 0 and is left out of `inv_accum`), gives the step builder its
 * objective (step/pref.ts), turns the running metric sums into LF's log keys at logging steps, and evaluates.
 * @module
 */
import type { TrainArgs } from "../../config/args.ts";
import type { KtoRecord, PairwiseRecord } from "../../data/process.ts";
import type { HostArray } from "../../exec/executor.ts";
import { isDir, isFile } from "../../util/fs.ts";
import type { Model } from "../../nn/model.ts";
import { initValueHead, loadValueHead, V_HEAD_BIAS, V_HEAD_WEIGHT, VALUE_HEAD_FILE } from "../../nn/value_head.ts";
import { bucket } from "../batches.ts";
import { METRIC_SUMS } from "../step/builder.ts";
import type { Objective } from "../step/objective.ts";
import {
  BCO_RUNNING,
  objectiveMetrics,
  type PrefObjective,
  prefObjective,
  tracePrefEvalStep,
  usesBco,
} from "../step/pref.ts";
import { ktoFeeds, pairwiseFeeds, type PrefFeeds, prefNoiseFeeds } from "../step/pref_feeds.ts";
import { ktoConfig, prefLogs, prefLossConfig, usesReference } from "../step/pref_loss.ts";
import { referenceBytes, referenceOf } from "./reference.ts";
import { type EvalResult, GraphStage, type StageContext, type StepFeeds, stepSeed } from "./stage.ts";

/** The stages this module runs. */
export type PrefStageName = "rm" | "dpo" | "kto";

/** Whether `stage` is one of {@link PrefStageName}. */
export const isPrefStage = (stage: string): stage is PrefStageName =>
  stage === "rm" || stage === "dpo" || stage === "kto";

/** A record of a preference stage: a pair (rm, dpo) or a KTO example. */
export type PrefRecord = PairwiseRecord | KtoRecord;

/** TRL's `summary_dropout_prob` default: dropout before the value head while training (LF leaves it on). */
export const VALUE_HEAD_DROPOUT = 0.1;

/** A preference stage set up on a loaded model. */
export interface PrefSetup {
  objective: PrefObjective;
  /** The trainable parameter names, the value head's appended for rm. */
  trainable: string[];
  /** Stage rm: write value_head.safetensors with the adapter or model. */
  valueHead: boolean;
  /** Bytes stored besides the policy and its adapter: the value head, or the reference's own tensors. */
  extraBytes: number;
}

/**
 * Sets up stage rm, dpo or kto on `model` (its adapter attached, `trainable` chosen): the value head or the reference,
 * and the objective with LF's arguments. Call it before restoring a checkpoint, so that a frozen copy is of the
 * initial weights.
 */
export async function setupPref(
  a: TrainArgs,
  model: Model,
  trainable: readonly string[],
  log: (line: string) => void,
): Promise<PrefSetup> {
  if (a.stage === "rm") {
    // LF's load_model: the value head of the adapter (or model) folder if it has one.
    const from = a.adapter_name_or_path?.at(-1) ?? a.model_name_or_path;
    if (await isDir(from) && await isFile(`${from}/${VALUE_HEAD_FILE}`)) {
      await loadValueHead(model, from);
      log(`value head: loaded from ${from}/${VALUE_HEAD_FILE}`);
    } else initValueHead(model, { seed: a.seed });
    return {
      objective: { stage: "rm", valueHeadDropout: VALUE_HEAD_DROPOUT },
      trainable: [...trainable, V_HEAD_WEIGHT, V_HEAD_BIAS],
      valueHead: true,
      extraBytes: 4 * (model.config.hidden + 1),
    };
  }
  if (a.stage !== "dpo" && a.stage !== "kto") {
    throw new Error(`setupPref: expected stage rm, dpo or kto, got ${a.stage}`);
  }
  const needsRef = a.stage === "kto" || usesReference(prefLossConfig(a).loss);
  const reference = needsRef ? await referenceOf(a, model, trainable, log) : undefined;
  const objective: PrefObjective = a.stage === "dpo"
    ? { stage: "dpo", loss: prefLossConfig(a), reference, ldAlpha: a.ld_alpha }
    : { stage: "kto", loss: ktoConfig(a), reference };
  return { objective, trainable: [...trainable], valueHead: false, extraBytes: referenceBytes(reference) };
}

/** LF's plot keys per stage (run_rm, run_dpo, run_kto). */
const PLOT_KEYS = {
  rm: ["loss", "eval_loss", "eval_accuracy"],
  dpo: ["loss", "eval_loss", "rewards/accuracies"],
  kto: ["loss", "rewards/chosen", "eval_loss"],
};

/** Stage rm, dpo or kto in a session. */
export class PrefStage extends GraphStage<PrefRecord> {
  readonly name: PrefStageName;
  readonly valueHead: boolean;
  readonly extraBytes: number;
  override readonly plotKeys: readonly string[];
  override readonly exportsValueHead: boolean;
  /** The metric vector's names (pref_loss.ts `metricNames`). */
  readonly names: string[];
  /** Micro-batches with data since the last logging step: the divisor of LF's metric means. */
  #microSinceLog = 0;

  constructor(ctx: StageContext, readonly setup: PrefSetup) {
    super(ctx);
    this.name = setup.objective.stage;
    this.valueHead = setup.valueHead;
    this.exportsValueHead = this.name === "rm";
    this.extraBytes = setup.extraBytes;
    this.plotKeys = PLOT_KEYS[this.name];
    this.names = objectiveMetrics(setup.objective);
    this.resetSums();
    // LF's BCO running reward mean starts afresh with each trainer (TRL's RunningMoments: mean 0, count 1e-24).
    if (usesBco(setup.objective)) ctx.model.executor.setParam(BCO_RUNNING, [0, 1e-24], [2]);
  }

  get prefObjective(): PrefObjective {
    return this.setup.objective;
  }

  /** The longest row of a record (what its length bucket is chosen by). */
  length(r: PrefRecord): number {
    return "chosen_input_ids" in r
      ? Math.max(r.chosen_input_ids.length, r.rejected_input_ids.length)
      : Math.max(r.input_ids.length, r.kl_input_ids.length);
  }

  #tokens(r: PrefRecord): number {
    return "chosen_input_ids" in r
      ? r.chosen_input_ids.length + r.rejected_input_ids.length
      : r.input_ids.length + r.kl_input_ids.length;
  }

  #feeds(records: readonly PrefRecord[], B: number, L: number, k: number): PrefFeeds {
    return this.name === "kto" ? ktoFeeds(records as KtoRecord[], B, L, k) : pairwiseFeeds(
      records as PairwiseRecord[],
      B,
      L,
      k,
      this.ctx.args.stage === "dpo" && this.ctx.args.ld_alpha !== null,
    );
  }

  feeds(rowsOf: readonly (readonly PrefRecord[])[], B: number, L: number, step: number): StepFeeds {
    const feeds: Record<string, ArrayLike<number>> = {};
    let tokens = 0, present = 0;
    // NEFTune: fresh noise for each training-mode forward of each micro-batch, seeded by the run's seed and the step.
    const alpha = this.ctx.plan(L).neftune, H = this.ctx.model.config.hidden, s = stepSeed(this.ctx.args.seed, step);
    rowsOf.forEach((rows, k) => {
      Object.assign(feeds, this.#feeds(rows, B, L, k));
      if (alpha) Object.assign(feeds, prefNoiseFeeds(this.setup.objective, k, B, L, H, alpha, s));
      if (rows.length) present++;
      for (const r of rows) tokens += this.#tokens(r);
    });
    feeds.inv_accum = [1 / Math.max(1, present)];
    return { feeds, tokens, present };
  }

  objective(L: number): Objective {
    return prefObjective(this.ctx.model, { ...this.ctx.plan(L), objective: this.setup.objective });
  }

  /** Zeroes the running metric sums on the device. */
  resetSums(): void {
    this.ctx.model.executor.setParam(METRIC_SUMS, new Float32Array(this.names.length), [this.names.length]);
  }

  protected override counted(present: number): void {
    this.#microSinceLog += present;
  }

  protected override fetchMetrics(logNow: boolean): string[] {
    return logNow ? ["metrics", "metric_sums"] : ["metrics"];
  }

  /**
   * One step's values from its `metrics` output (summed over its `present` micro-batches), with LF's keys, plus
   * `accuracy`: rewards/accuracies for dpo, the pairwise accuracy for rm.
   */
  protected override stepMetrics(o: Record<string, HostArray>, present: number): Record<string, number> {
    const metrics = o.metrics;
    const out = prefLogs(this.name, this.names, metrics, present);
    if (this.name === "rm") {
      const pairs = metrics[this.names.indexOf("pairs")];
      if (pairs > 0) out.accuracy = metrics[this.names.indexOf("correct")] / pairs;
    } else if ("rewards/accuracies" in out) out.accuracy = out["rewards/accuracies"];
    return out;
  }

  /**
   * LF's log values of the window that ends at a logging step, from the step graph's `metric_sums`; then zeroes the
   * sums and the micro-batch count. rm logs nothing here (LF reports its accuracy at evaluation only).
   */
  protected override windowMetrics(o: Record<string, HostArray>): Record<string, number> {
    const out = prefLogs(this.name, this.names, o.metric_sums, this.#microSinceLog);
    this.#microSinceLog = 0;
    this.resetSums();
    return out;
  }

  override checkpointState(): Record<string, number> {
    return { ...super.checkpointState(), micro_batches_since_log: this.#microSinceLog };
  }

  override restoreState(s: Record<string, number>): void {
    super.restoreState(s);
    this.#microSinceLog = s.micro_batches_since_log ?? 0;
  }

  /**
   * Loss and LF's eval metrics over `records` in batches of per_device_eval_batch_size (HF's eval_loss: the batch
   * losses weighted by batch size; dpo / kto metrics: means over batches, `eval_` keys; rm: eval_accuracy over all
   * pairs).
   */
  async evaluate(records: readonly PrefRecord[]): Promise<EvalResult> {
    const { args: a, model, compile } = this.ctx;
    const B = a.per_device_eval_batch_size, multiple = a.bucket ?? 64;
    const sums = new Float64Array(this.names.length);
    let lossSum = 0, n = 0, batches = 0;
    for (let i = 0; i < records.length; i += B) {
      const rows = records.slice(i, i + B);
      const L = bucket(Math.max(...rows.map((r) => this.length(r))), multiple);
      const trace = (s: Record<string, number>) =>
        tracePrefEvalStep(model, { objective: this.setup.objective, B, L: s.L });
      const c = await compile(`pref-eval:${B}:${L}`, () => trace({ L }), { sizes: { L }, trace });
      const o = await c.run(this.#feeds(rows, B, L, 0));
      lossSum += o.loss[0] * rows.length;
      n += rows.length;
      batches++;
      o.metrics.forEach((v, j) => (sums[j] += v));
    }
    const metrics = prefLogs(this.name, this.names, sums, batches, "eval_");
    return { loss: n ? lossSum / n : 0, metrics, history: metrics };
  }
}
