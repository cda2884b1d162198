/**
 * Models that live beside the policy in its executor's store, as LLaMA-Factory's `create_ref_model` and
 * `create_reward_model` load them, but without a second base model where none is needed: a {@link ModelView} on the
 * policy's base weights (its own adapter, value head or copies of a few tensors under its own prefix), a frozen copy of
 * only the trainable tensors ({@link frozenReference}), or a whole folder loaded under a prefix ({@link loadModelInto}).
 * {@link referenceOf} picks the reference of dpo, kto and ppo.
 * @module
 */
import { applyLfRopeScaling, type LfRopeScaling } from "../../nn/rope_lf.ts";
import type { TrainArgs } from "../../config/args.ts";
import type { DType } from "../../graph/mod.ts";
import { DTYPE_BYTES } from "../../graph/types.ts";
import { openModelFolder } from "../../io/hf_folder.ts";
import { resolveModel } from "../../io/hub.ts";
import { decoderConfig } from "../../nn/config.ts";
import { decoderParams, type DecoderWeights } from "../../nn/decoder.ts";
import { attachAdapter } from "../../nn/lora.ts";
import { Model } from "../../nn/model.ts";
import { checkNotPrequantized } from "../../nn/prequantized.ts";
import type { Graph, Tensor } from "../../graph/mod.ts";
import type { Reference } from "../step/pref.ts";

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
    const expertDelta = this.adapter?.expertDelta?.(weight);
    return { weight, linear: this.adapter?.linear(weight, opts), ...(expertDelta ? { expertDelta } : {}) };
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

/**
 * Loads an HF model folder (or hub id) into `into`'s executor under `prefix`, weights in their stored dtype; with
 * `ropeScaling`, LLaMA-Factory's `rope_scaling` applies to it as to the policy (LF copies the model arguments).
 */
export async function loadModelInto(
  pathOrId: string,
  into: Model,
  prefix: string,
  ropeScaling?: { type: LfRopeScaling; modelMaxLength?: number },
): Promise<Model> {
  if (prefix === into.prefix) throw new Error(`loadModelInto: prefix "${prefix}" is the model's own`);
  const dir = await resolveModel(pathOrId);
  const folder = await openModelFolder(dir);
  try {
    checkNotPrequantized(dir, folder.config);
    const raw = ropeScaling
      ? applyLfRopeScaling(folder.config, ropeScaling.type, ropeScaling.modelMaxLength).config
      : folder.config;
    const config = decoderConfig(raw);
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
    const ref = await loadModelInto(a.ref_model, model, "ref.", ropeOf(a));
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

/** LLaMA-Factory's `rope_scaling` of a run for {@link loadModelInto} (LF's model_max_length is cutoff_len). */
export function ropeOf(a: TrainArgs): { type: LfRopeScaling; modelMaxLength?: number } | undefined {
  return a.rope_scaling ? { type: a.rope_scaling, modelMaxLength: a.cutoff_len } : undefined;
}
