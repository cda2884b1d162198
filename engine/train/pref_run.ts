/**
 * Stages rm, dpo and kto in a training session (session.ts, session_run.ts), as LLaMA-Factory's `run_rm`, `run_dpo`
 * and `run_kto` set them up:
 *
 * - rm: a value head on the decoder ({@link VALUE_HEAD_FILE} loaded from the adapter or model folder when it has one,
 *   else initialised as nn.Linear is), trained with the adapter (or the model's trainable weights), TRL's 0.1 dropout
 *   before it, and saved as `value_head.safetensors`;
 * - dpo / kto: the reference is `ref_model` (+ `ref_model_adapters`) when given, else for LoRA the same weights with the
 *   adapter disabled (no copy, LF's `null_ref_context`), else for full / freeze a frozen copy of only the tensors that
 *   train (the rest are shared with the policy); orpo and simpo take none. Dropout is off, as in LF's trainers.
 *
 * {@link PrefRun} makes each optimizer step's feeds (micro-batches of pairs or KTO examples, padded to one length
 * bucket; a micro-batch without data has all `rows_k` = 0 and is left out of `inv_accum`), traces the step
 * (pref_step.ts), turns the running metric sums into LF's log keys at logging steps, and evaluates.
 * @module
 */
import type { TrainArgs } from "../config/args.ts";
import type { KtoRecord, PairwiseRecord } from "../data/process.ts";
import type { CompiledGraph, HostArray } from "../exec/executor.ts";
import type { DType, Graph, Tensor } from "../graph/mod.ts";
import { DTYPE_BYTES } from "../graph/types.ts";
import type { StepLoss } from "../optim/train_step.ts";
import { openModelFolder } from "../io/hf_folder.ts";
import { resolveModel } from "../io/hub.ts";
import { isDir } from "../util/fs.ts";
import { decoderConfig } from "../nn/config.ts";
import { decoderParams, type DecoderWeights } from "../nn/decoder.ts";
import { attachAdapter } from "../nn/lora.ts";
import { Model } from "../nn/model.ts";
import { initValueHead, loadValueHead, V_HEAD_BIAS, V_HEAD_WEIGHT, VALUE_HEAD_FILE } from "../nn/value_head.ts";
import { bucket } from "./batches.ts";
import { ktoConfig, prefLogs, prefLossConfig, usesReference } from "./pref_loss.ts";
import {
  ktoFeeds,
  objectiveMetrics,
  pairwiseFeeds,
  PREF_METRIC_SUMS,
  type PrefFeeds,
  type PrefObjective,
  prefStepLoss,
  type PrefStepPlan,
  type Reference,
  tracePrefEvalStep,
  tracePrefStep,
} from "./pref_step.ts";

/** The stages this module runs. */
export type PrefStage = "rm" | "dpo" | "kto";

/** Whether `stage` is one of {@link PrefStage}. */
export const isPrefStage = (stage: string): stage is PrefStage => stage === "rm" || stage === "dpo" || stage === "kto";

/** A record of a preference stage: a pair (rm, dpo) or a KTO example. */
export type PrefRecord = PairwiseRecord | KtoRecord;

/** TRL's `summary_dropout_prob` default: dropout before the value head while training (LF leaves it on). */
export const VALUE_HEAD_DROPOUT = 0.1;

/**
 * A model on another model's base weights: the base parameters named in `own` (copies) and any adapter or value head
 * of the view live under the view's prefix, every other base parameter is the base model's own tensor. So a second
 * adapter (ppo's reward adapter) or a frozen copy of only the trainable layers costs no second base model.
 */
export class ModelView extends Model {
  readonly #base: Model;
  readonly #own: ReadonlySet<string>;
  /** The base parameter names this view keeps copies of. */
  readonly own: readonly string[];

  constructor(base: Model, prefix: string, own: Iterable<string> = []) {
    if (prefix === base.prefix) throw new Error(`ModelView: prefix "${prefix}" is the base model's own`);
    super(base.config, base.executor, base.params, prefix);
    this.#base = base;
    this.own = [...own];
    this.#own = new Set(this.own);
    this.generationConfig = base.generationConfig;
  }

  /** Base parameters from the base model (or the view's copies), adapter parameters from the view. */
  override weights(g: Graph, opts: { seed?: Tensor } = {}): DecoderWeights {
    const weight = (name: string) => {
      const p = this.params.get(name);
      if (p) return g.param((this.#own.has(name) ? this.prefix : this.#base.prefix) + name, p.shape, p.dtype);
      const a = this.adapter?.params.get(name);
      if (!a) throw new Error(`model has no parameter "${name}"`);
      return g.param(this.prefix + name, a.shape, a.dtype);
    };
    return { weight, linear: this.adapter?.linear(weight, opts) };
  }
}

/**
 * A frozen reference for full or freeze training: copies of the `trainable` base tensors under `prefix`, the frozen
 * ones shared with `model` (LF loads a whole second model; the untrained tensors of the two are equal anyway).
 */
export async function frozenReference(model: Model, trainable: readonly string[], prefix = "ref."): Promise<Model> {
  const own = trainable.filter((n) => model.params.has(n));
  for (const name of own) {
    const p = model.params.get(name)!;
    model.executor.setParam(prefix + name, await model.executor.getParam(model.prefix + name), p.shape, p.dtype);
  }
  return new ModelView(model, prefix, own);
}

const STORED: Record<string, DType> = { F32: "f32", BF16: "bf16", F16: "f16" };

/** Loads an HF model folder (or hub id) into `into`'s executor under `prefix`, weights in their stored dtype. */
export async function loadModelInto(pathOrId: string, into: Model, prefix: string): Promise<Model> {
  if (prefix === into.prefix) throw new Error(`loadModelInto: prefix "${prefix}" is the model's own`);
  const folder = await openModelFolder(await resolveModel(pathOrId));
  try {
    const config = decoderConfig(folder.config);
    if (config.vocab !== into.config.vocab) {
      throw new Error(`${pathOrId}: vocabulary of ${config.vocab} tokens, expected the policy's ${into.config.vocab}`);
    }
    const params = new Map<string, { shape: number[]; dtype: DType }>();
    for (const [name, shape] of decoderParams(config)) {
      const t = folder.tensors.get(name);
      if (!t) throw new Error(`${pathOrId}: the weights have no tensor "${name}" that ${config.family} needs`);
      if (t.shape.join() !== shape.join()) {
        throw new Error(`${pathOrId}: tensor "${name}" is [${t.shape.join(", ")}], expected [${shape.join(", ")}]`);
      }
      const dtype = STORED[t.dtype];
      if (!dtype) throw new Error(`${pathOrId}: tensor "${name}" has dtype ${t.dtype}; expected F32, BF16 or F16`);
      into.executor.setParam(prefix + name, await folder.readF32(name), shape, dtype);
      params.set(name, { shape, dtype });
    }
    const model = new Model(config, into.executor, params, prefix);
    model.generationConfig = folder.generationConfig;
    return model;
  } finally {
    folder.close();
  }
}

const fileExists = (path: string) => Deno.stat(path).then((s) => s.isFile, () => false);

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

/** Bytes of parameters in their stored dtypes. */
export const bytesOf = (ps: Iterable<{ shape: number[]; dtype: DType }>): number =>
  [...ps].reduce((n, p) => n + p.shape.reduce((x, y) => x * y, 1) * DTYPE_BYTES[p.dtype], 0);

/** Bytes a reference (or reward model) adds to the store: none for "base", a view's own tensors, a whole model. */
export function referenceBytes(ref: Reference | undefined): number {
  if (ref === undefined || typeof ref === "string") return 0;
  const adapter = bytesOf(ref.adapter?.params.values() ?? []);
  if (ref instanceof ModelView) return adapter + bytesOf(ref.own.map((n) => ref.params.get(n)!));
  return adapter + bytesOf(ref.params.values());
}

/**
 * The reference of dpo, kto and ppo, as LF's `create_ref_model`: `ref_model` (+ `ref_model_adapters`) loaded under
 * "ref."; else for LoRA the base with the adapter disabled; else a frozen copy of the trainable tensors.
 */
export async function referenceOf(
  a: TrainArgs,
  model: Model,
  trainable: readonly string[],
  log: (line: string) => void,
): Promise<Reference> {
  if (a.ref_model) {
    const ref = await loadModelInto(a.ref_model, model, "ref.");
    const adapters = a.ref_model_adapters ?? [];
    if (adapters.length > 1) throw new Error("ref_model_adapters: stacking several adapters is not supported");
    if (adapters.length) await attachAdapter(ref, adapters[0], { baseModel: a.ref_model });
    log(`reference: ${a.ref_model}${adapters.length ? ` with adapter ${adapters[0]}` : ""}, frozen`);
    return ref;
  }
  if (model.adapter) {
    log("reference: the model with its adapter disabled (no copy)");
    return "base";
  }
  const ref = await frozenReference(model, trainable);
  log(`reference: a frozen copy of the ${trainable.length} trainable tensors, the others shared`);
  return ref;
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
    if (await isDir(from) && await fileExists(`${from}/${VALUE_HEAD_FILE}`)) {
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
    ? { stage: "dpo", loss: prefLossConfig(a), reference }
    : { stage: "kto", loss: ktoConfig(a), reference };
  return { objective, trainable: [...trainable], valueHead: false, extraBytes: referenceBytes(reference) };
}

/** The feeds of one optimizer step, and what they hold. */
export interface PrefStepFeeds {
  feeds: Record<string, ArrayLike<number>>;
  /** Real tokens of every row (chosen and rejected, or example and KL row). */
  tokens: number;
  /** Micro-batches with at least one record. */
  present: number;
}

/** The stepping, logging and evaluation of a preference stage in a session. */
export class PrefRun {
  readonly stage: PrefStage;
  /** The metric vector's names (pref_loss.ts `metricNames`). */
  readonly names: string[];
  /** Micro-batches with data since the last logging step: the divisor of LF's metric means. */
  microSinceLog = 0;

  constructor(
    readonly model: Model,
    readonly objective: PrefObjective,
    readonly plan: (L: number) => PrefStepPlan,
  ) {
    this.stage = objective.stage;
    this.names = objectiveMetrics(objective);
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
    return this.stage === "kto"
      ? ktoFeeds(records as KtoRecord[], B, L, k)
      : pairwiseFeeds(records as PairwiseRecord[], B, L, k);
  }

  /** Feeds of a step of G micro-batches (`rowsOf[k]`, at most B records each) padded to length L. */
  stepFeeds(rowsOf: readonly (readonly PrefRecord[])[], B: number, L: number): PrefStepFeeds {
    const feeds: Record<string, ArrayLike<number>> = {};
    let tokens = 0, present = 0;
    rowsOf.forEach((rows, k) => {
      Object.assign(feeds, this.#feeds(rows, B, L, k));
      if (rows.length) present++;
      for (const r of rows) tokens += this.#tokens(r);
    });
    feeds.inv_accum = [1 / Math.max(1, present)];
    return { feeds, tokens, present };
  }

  /** The train step graph for length L. */
  trace(L: number): Graph {
    return tracePrefStep(this.model, this.plan(L));
  }

  /** The step's loss for length L, for GaLore's and BAdam's step graphs (optim_run.ts). */
  stepLoss(L: number): StepLoss {
    return prefStepLoss(this.model, this.plan(L));
  }

  /** Zeroes the running metric sums on the device. */
  resetSums(): void {
    this.model.executor.setParam(PREF_METRIC_SUMS, new Float32Array(this.names.length), [this.names.length]);
  }

  /**
   * LF's log values of the window that ends at a logging step, from the step graph's `metric_sums`; then zeroes the
   * sums and the micro-batch count. rm logs nothing here (LF reports its accuracy at evaluation only).
   */
  windowLogs(sums: HostArray): Record<string, number> {
    const out = prefLogs(this.stage, this.names, sums, this.microSinceLog);
    this.microSinceLog = 0;
    this.resetSums();
    return out;
  }

  /**
   * One step's values from its `metrics` output (summed over its `present` micro-batches), with LF's keys, plus
   * `accuracy`: rewards/accuracies for dpo, the pairwise accuracy for rm.
   */
  stepLogs(metrics: HostArray, present: number): Record<string, number> {
    const out = prefLogs(this.stage, this.names, metrics, present);
    if (this.stage === "rm") {
      const pairs = metrics[this.names.indexOf("pairs")];
      if (pairs > 0) out.accuracy = metrics[this.names.indexOf("correct")] / pairs;
    } else if ("rewards/accuracies" in out) out.accuracy = out["rewards/accuracies"];
    return out;
  }

  /**
   * Loss and LF's eval metrics over `records` in batches of `B` (HF's eval_loss: the batch losses weighted by batch
   * size; dpo / kto metrics: means over batches, `eval_` keys; rm: eval_accuracy over all pairs).
   */
  async evaluate(
    records: readonly PrefRecord[],
    B: number,
    multiple: number,
    compile: (key: string, make: () => Graph) => Promise<CompiledGraph>,
  ): Promise<{ loss: number; metrics: Record<string, number> }> {
    const sums = new Float64Array(this.names.length);
    let lossSum = 0, n = 0, batches = 0;
    for (let i = 0; i < records.length; i += B) {
      const rows = records.slice(i, i + B);
      const L = bucket(Math.max(...rows.map((r) => this.length(r))), multiple);
      const c = await compile(
        `pref-eval:${B}:${L}`,
        () => tracePrefEvalStep(this.model, { objective: this.objective, B, L }),
      );
      const o = await c.run(this.#feeds(rows, B, L, 0));
      lossSum += o.loss[0] * rows.length;
      n += rows.length;
      batches++;
      o.metrics.forEach((v, j) => (sums[j] += v));
    }
    return { loss: n ? lossSum / n : 0, metrics: prefLogs(this.stage, this.names, sums, batches, "eval_") };
  }
}
