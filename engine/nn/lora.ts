/**
 * LoRA adapters — plain, rsLoRA, DoRA, PiSSA-initialised — as a {@link LinearHook} on the decoder, with PEFT's
 * parameter names, so adapters move both ways between Whetstone and PEFT / LLaMA-Factory.
 *
 * For a targeted linear y = W x + b (W [out, in]) with A [r, in], B [out, r], s = alpha / r (rsLoRA: alpha / √r):
 * - LoRA: y = W x + b + s · B (A drop(x)), as PEFT computes it;
 * - DoRA: y = W x + b + (g − 1) ⊙ (W drop(x)) + g ⊙ s · B (A drop(x)) with g = m / ‖W + s·B·A‖_row, the norm
 *   detached (no gradient through it), m = `lora_magnitude_vector` [out] — PEFT's formula; without dropout it is
 *   (m / ‖W + sBA‖) ⊙ (W x + s B A x) + b.
 * Dropout applies only where the hook is given a seed (training graphs); the base weights never get gradients.
 *
 * @example
 * ```ts
 * const model = await loadModel("fixtures/models/llama", { adapter: "fixtures/models/llama/lora" });
 * // or: await attachAdapter(model, { r: 8, targets: "all", useDora: true });
 * const { grads } = await model.gradients(ids, { labels }); // adapter params only
 * await saveAdapter(model, "out/adapter");
 * ```
 * @module
 */
import { add, div, dropout, matmul, mul, sqrt, stopGradient, sub, sum, type Tensor } from "../graph/mod.ts";
import { cast } from "../graph/ops/cast.ts";
import { type AdapterTensor, type LoraConfig, readPeftAdapter, writePeftAdapter } from "../io/peft.ts";
export type { LoraConfig, LoraInit } from "../io/peft.ts";
import type { DecoderConfig } from "./config.ts";
import { decoderParams, type ExpertDeltaHook, type LinearHook } from "./decoder.ts";
import { isRoutedModule } from "./moe.ts";
import { peftMoeTargets } from "./lora_moe_targets.ts";
import * as experts from "./lora_experts.ts";
import { loadModulesToSave, readModulesToSave } from "./vocab_modules.ts";
import { addLowRank, gaussian, kaimingUniform, pissaInit, rowNorms } from "./lora_init.ts";
import { Rng } from "../util/rng.ts";
import type { ModelAdapter, ModelCore } from "./model_core.ts";

/** A LoRA config with LLaMA-Factory's defaults (r 8, alpha 2r, dropout 0, targets "all", init true). */
export function loraConfig(c: Partial<LoraConfig> = {}): LoraConfig {
  const r = c.r ?? 8;
  if (!Number.isInteger(r) || r < 1) throw new Error(`LoRA rank must be a positive integer, got ${r}`);
  const dropout = c.dropout ?? 0;
  if (!(dropout >= 0 && dropout < 1)) throw new Error(`lora_dropout must be in [0, 1), got ${dropout}`);
  const targetParameters = c.targetParameters?.length ? [...c.targetParameters] : undefined;
  if (targetParameters) experts.checkExpertLora(targetParameters, dropout, c.useDora ?? false, c.init ?? true);
  return {
    r,
    alpha: c.alpha ?? 2 * r,
    dropout,
    targets: c.targets ?? "all",
    ...(targetParameters ? { targetParameters } : {}),
    exclude: c.exclude,
    layers: c.layers,
    useRslora: c.useRslora ?? false,
    useDora: c.useDora ?? false,
    init: c.init ?? true,
  };
}

/** LLaMA-Factory's LoRA arguments. */
export interface LoraArgs {
  lora_rank?: number;
  lora_alpha?: number | null;
  lora_dropout?: number;
  lora_target?: string | string[];
  additional_target?: string | string[] | null;
  use_rslora?: boolean;
  use_dora?: boolean;
  pissa_init?: boolean;
  pissa_iter?: number;
}

/**
 * The LoraConfig LLaMA-Factory builds from its arguments (`lora_target` a comma list, "all" by default). Entries
 * naming a fused expert parameter (`experts.gate_up_proj`, `mlp.experts.down_proj`) become PEFT's
 * `target_parameters` (LLaMA-Factory has no key for them); the rest stay `target_modules`.
 */
export function loraConfigFromArgs(a: LoraArgs): LoraConfig {
  const list = (v: string | string[]) => (Array.isArray(v) ? v : v.split(",")).map((s) => s.trim()).filter(Boolean);
  if (a.additional_target && list(a.additional_target).length) {
    throw new Error(
      `additional_target (PEFT modules_to_save) is not supported, got ${JSON.stringify(a.additional_target)}`,
    );
  }
  const iter = a.pissa_iter ?? 16;
  const named = list(a.lora_target ?? "all");
  const targetParameters = named.filter(experts.isExpertParamName);
  return loraConfig({
    r: a.lora_rank ?? 8,
    alpha: a.lora_alpha ?? undefined,
    dropout: a.lora_dropout ?? 0,
    targets: named.filter((t) => !experts.isExpertParamName(t)),
    targetParameters,
    useRslora: a.use_rslora ?? false,
    useDora: a.use_dora ?? false,
    init: a.pissa_init ? (iter === -1 ? "pissa" : `pissa_niter_${iter}`) : true,
  });
}

/** The LoRA scale: alpha / r, or alpha / √r with rsLoRA. */
export function loraScale(cfg: Pick<LoraConfig, "r" | "alpha" | "useRslora">): number {
  return cfg.useRslora ? cfg.alpha / Math.sqrt(cfg.r) : cfg.alpha / cfg.r;
}

/**
 * Every linear module of the decoder (lm_head excluded) → [out, in], in decoder order. For mixture-of-experts
 * families the routers and routed experts are left out: on transformers 5 they are not `nn.Linear` modules, so PEFT's
 * target_modules never reach them (and an adapter on them would not load there).
 */
export function linearModules(c: DecoderConfig): Map<string, [number, number]> {
  const m = new Map<string, [number, number]>();
  for (const [name, shape] of decoderParams(c)) {
    if (shape.length !== 2 || !name.endsWith(".weight") || name.startsWith("model.embed_tokens")) continue;
    if (name === "lm_head.weight") continue;
    if (c.moe && isRoutedModule(name.slice(0, -".weight".length))) continue;
    m.set(name.slice(0, -".weight".length), [shape[0], shape[1]]);
  }
  return m;
}

/** LLaMA-Factory's "all": the distinct last names of every linear but lm_head (e.g. q_proj, ..., down_proj). */
export function allLinearTargets(c: DecoderConfig): string[] {
  return [...new Set([...linearModules(c).keys()].map((k) => k.slice(k.lastIndexOf(".") + 1)))];
}

const isAll = (t: readonly string[] | string) =>
  typeof t === "string" ? t === "all" || t === "all-linear" : t.includes("all") || t.includes("all-linear");

function matcher(spec: readonly string[] | string, what: string): (key: string) => boolean {
  if (typeof spec === "string") {
    let re: RegExp;
    try {
      re = new RegExp(`^(?:${spec})$`);
    } catch (e) {
      throw new Error(`${what} regex ${JSON.stringify(spec)} is not valid here (${(e as Error).message})`);
    }
    return (key) => re.test(key);
  }
  return (key) => spec.some((t) => key === t || key.endsWith(`.${t}`));
}

/** The module paths an adapter targets, in decoder order; throws if none, or on lm_head / embeddings. */
export function resolveTargets(
  c: DecoderConfig,
  cfg: Pick<LoraConfig, "targets" | "exclude" | "layers" | "targetParameters">,
): string[] {
  const mods = [...linearModules(c).keys()];
  if (typeof cfg.targets !== "string") {
    for (const t of cfg.targets) {
      if (t === "lm_head" || t === "embed_tokens") {
        throw new Error(`LoRA on ${t} is not supported (targets: ${cfg.targets.join(", ")})`);
      }
    }
  }
  const hit = isAll(cfg.targets) ? () => true : matcher(cfg.targets, "target_modules");
  const skip = cfg.exclude === undefined ? () => false : matcher(cfg.exclude, "exclude_modules");
  const layerOf = (k: string) => Number(/(?:^|\.)layers\.(\d+)\./.exec(k)?.[1] ?? -1);
  const out = mods.filter((k) => hit(k) && !skip(k) && (!cfg.layers || cfg.layers.includes(layerOf(k))));
  // Only fused expert parameters (PEFT's target_modules = [] beside target_parameters).
  if (!out.length && typeof cfg.targets !== "string" && !cfg.targets.length && cfg.targetParameters?.length) return out;
  if (!out.length) {
    throw new Error(
      `LoRA targets ${JSON.stringify(cfg.targets)} match no linear module of this ${c.family} model; ` +
        `its linears are named ${allLinearTargets(c).join(", ")}`,
    );
  }
  return out;
}

/** PEFT's key prefix of adapter tensors. */
export const PEFT_PREFIX = "base_model.model.";

/** PEFT keys of one module's adapter tensors. */
export function loraKeys(module: string): { A: string; B: string; m: string } {
  const p = PEFT_PREFIX + module;
  return { A: `${p}.lora_A.weight`, B: `${p}.lora_B.weight`, m: `${p}.lora_magnitude_vector` };
}

/** Names (PEFT keys) and shapes of every adapter parameter, in decoder order. */
export function loraParams(cfg: LoraConfig, c: DecoderConfig): Map<string, number[]> {
  const shapes = linearModules(c);
  const p = new Map<string, number[]>();
  for (const mod of resolveTargets(c, cfg)) {
    const [o, i] = shapes.get(mod)!;
    const k = loraKeys(mod);
    p.set(k.A, [cfg.r, i]);
    p.set(k.B, [o, cfg.r]);
    if (cfg.useDora) p.set(k.m, [o]);
  }
  for (const t of experts.expertTargets(c, cfg.targetParameters)) {
    const k = loraKeys(t.module), sh = experts.expertLoraShapes(t, experts.expertRank(t, cfg).r, c.moe!.experts);
    p.set(k.A, sh.A);
    p.set(k.B, sh.B);
  }
  return p;
}

/** Options of {@link loraHook}. */
export interface LoraHookOptions {
  /** The decoder the hook runs in (targets, shapes, which linears have a bias). */
  decoder: DecoderConfig;
  /** u32 scalar seed input: LoRA dropout (p = cfg.dropout) is applied only when given. */
  seed?: Tensor;
  /** First dropout-site offset (site i uses offset + i); default 0x10000. */
  dropoutOffset?: number;
}

const f32 = (t: Tensor) => (t.dtype === "f32" ? t : cast(t, "f32"));

/**
 * The LinearHook computing LoRA / DoRA on the targeted modules. `weight(name)` gives the graph tensor of a base
 * parameter (HF name) or an adapter parameter (PEFT key).
 */
export function loraHook(cfg: LoraConfig, weight: (name: string) => Tensor, opts: LoraHookOptions): LinearHook {
  const site = new Map(resolveTargets(opts.decoder, cfg).map((m, i) => [m, i]));
  const hasBias = new Set([...decoderParams(opts.decoder).keys()].filter((k) => k.endsWith(".bias")));
  const s = loraScale(cfg);
  const drop = opts.seed !== undefined && cfg.dropout > 0;
  return (x, name, base) => {
    const i = site.get(name);
    if (i === undefined) return base(x);
    const k = loraKeys(name);
    const A = weight(k.A), B = weight(k.B); // [r, in], [out, r]
    const xd = drop ? dropout(f32(x), opts.seed!, { p: cfg.dropout, offset: (opts.dropoutOffset ?? 0x10000) + i }) : x;
    const lora = matmul(mul(matmul(xd, A, { transB: true }), s), B, { transB: true }); // [..., out]
    const y = base(x);
    if (!cfg.useDora) return add(y, lora);
    // DoRA: g = m / ‖W + s·B·A‖_row (detached), [out]
    const W = weight(`${name}.weight`);
    const merged = add(f32(W), mul(matmul(B, A), s)); // [out, in]
    const norm = stopGradient(sqrt(sum(mul(merged, merged), 1)));
    const g = div(weight(k.m), norm);
    const baseNoBias = drop
      ? matmul(xd, W, { transB: true })
      : hasBias.has(`${name}.bias`)
      ? sub(y, f32(weight(`${name}.bias`)))
      : y;
    return add(add(y, mul(sub(g, 1), baseNoBias)), mul(g, lora));
  };
}

/** A LoRA adapter attached to a {@link Model}: its params live in the model's executor under their PEFT keys. */
export class LoraAdapter implements ModelAdapter {
  readonly params: Map<string, { shape: number[]; dtype: "f32" }>;
  /** Modules it adapts, in decoder order. */
  readonly targets: string[];
  /** Fused expert parameters it adapts (PEFT's target_parameters), in layer order. */
  readonly expertTargets: experts.ExpertTarget[];
  /** Base weights trained beside the adapter and saved as PEFT's `modules_to_save` (resize_vocab's embeddings). */
  modulesToSave: string[] = [];
  constructor(
    readonly config: LoraConfig,
    readonly decoder: DecoderConfig,
    /** base_model_name_or_path written on save. */
    readonly baseModel: string,
    /** PiSSA: A and B at init (for {@link saveAdapter}'s `convertPissa`). */
    readonly initial?: Map<string, AdapterTensor>,
  ) {
    this.targets = resolveTargets(decoder, config);
    this.expertTargets = experts.expertTargets(decoder, config.targetParameters);
    this.params = new Map([...loraParams(config, decoder)].map(([k, shape]) => [k, { shape, dtype: "f32" }]));
  }

  /** The hook for one traced graph; pass `seed` (a u32 scalar input) to apply LoRA dropout. */
  linear(weight: (name: string) => Tensor, opts: { seed?: Tensor } = {}): LinearHook {
    return loraHook(this.config, weight, { decoder: this.decoder, seed: opts.seed });
  }

  /** s·ΔW of the routed experts, stacked per projection (lora_experts.ts); undefined without expert targets. */
  expertDelta(weight: (name: string) => Tensor): ExpertDeltaHook | undefined {
    if (!this.expertTargets.length) return undefined;
    const rank = (t: experts.ExpertTarget) => experts.expertRank(t, this.config);
    return experts.expertLoraDeltas(this.decoder.moe!, this.expertTargets, rank, weight, loraKeys);
  }
}

/** Options of {@link attachAdapter}. */
export interface AttachOptions {
  /** Seed of the initialisation (a new adapter) and of PiSSA's randomized SVD; default 42. */
  seed?: number;
  /** base_model_name_or_path to record (default: the adapter folder's, or ""). */
  baseModel?: string;
}

function initAB(cfg: LoraConfig, o: number, i: number, rng: Rng): { A: Float32Array; B: Float32Array } {
  if (cfg.init === "gaussian") return { A: gaussian(cfg.r, i, 1 / cfg.r, rng), B: new Float32Array(o * cfg.r) };
  const A = kaimingUniform(cfg.r, i, rng);
  return { A, B: cfg.init === false ? kaimingUniform(o, cfg.r, rng) : new Float32Array(o * cfg.r) };
}

/**
 * Attaches a LoRA adapter to a loaded model: a PEFT folder (path), or a config for a new adapter initialised as
 * PEFT does (A kaiming-uniform / gaussian, B zero, DoRA magnitude = ‖W‖_row; PiSSA from the SVD of W, and W
 * replaced by the residual W − s·B·A in the executor, in its stored dtype). A PiSSA folder is loaded as PEFT
 * loads it: the SVD is recomputed from the base and subtracted, then A and B are read. The base stays frozen.
 * On the MoE families whose experts transformers 5 fuses, targets are first rewritten as PEFT 0.21 rewrites them
 * (lora_moe_targets.ts: gate_proj / up_proj / down_proj, mixtral's w1 / w3 / w2 → the fused experts).
 */
export async function attachAdapter(
  model: ModelCore,
  source: string | Partial<LoraConfig>,
  opts: AttachOptions = {},
): Promise<LoraAdapter> {
  if (model.adapter) {
    throw new Error("attachAdapter: the model already has an adapter (stacking adapters is not supported)");
  }
  let cfg: LoraConfig, tensors: Map<string, AdapterTensor> | undefined, baseModel = opts.baseModel ?? "";
  const from = typeof source === "string" ? source : "config";
  let saved: string[] = [];
  if (typeof source === "string") {
    const a = await readPeftAdapter(source);
    cfg = a.config;
    tensors = a.tensors;
    saved = await loadModulesToSave(model, a.modulesToSave, from);
    baseModel = opts.baseModel ?? a.baseModel;
  } else cfg = loraConfig(source);
  const dc = model.config;
  cfg = peftMoeTargets(dc, cfg, () => allLinearTargets(dc));
  if (cfg.targetParameters?.length) experts.checkExpertLora(cfg.targetParameters, cfg.dropout, cfg.useDora, cfg.init);
  const want = loraParams(cfg, dc);
  if (tensors) {
    for (const [k, shape] of want) {
      const t = tensors.get(k);
      if (!t) throw new Error(`${from}: adapter has no tensor "${k}" that its config implies`);
      if (t.shape.join() !== shape.join()) {
        throw new Error(`${from}: tensor "${k}" is [${t.shape.join(", ")}], expected [${shape.join(", ")}]`);
      }
    }
    for (const k of tensors.keys()) {
      if (!want.has(k)) {
        throw new Error(`${from}: unexpected tensor "${k}" (only lora_A/lora_B/magnitude of its targets)`);
      }
    }
  }
  const shapes = linearModules(dc);
  const s = loraScale(cfg);
  const rng = new Rng(opts.seed ?? 42);
  const pissa = typeof cfg.init === "string" && cfg.init.startsWith("pissa");
  const niter = cfg.init === "pissa" ? -1 : pissa ? Number((cfg.init as string).slice("pissa_niter_".length)) : 0;
  const initial = pissa ? new Map<string, AdapterTensor>() : undefined;
  const ex = model.executor, pre = model.prefix;
  const adapter = new LoraAdapter(cfg, dc, baseModel, initial);
  for (const mod of adapter.targets) {
    const [o, i] = shapes.get(mod)!;
    const k = loraKeys(mod), wname = `${mod}.weight`;
    let W: Float64Array | undefined;
    let A: Float32Array, B: Float32Array;
    if (pissa) {
      const p = pissaInit(await ex.getParam(pre + wname), o, i, cfg.r, s, niter, rng);
      W = p.residual;
      ex.setParam(pre + wname, W, [o, i], model.params.get(wname)!.dtype);
      initial!.set(k.A, { shape: [cfg.r, i], data: p.A });
      initial!.set(k.B, { shape: [o, cfg.r], data: p.B });
      ({ A, B } = p);
    } else ({ A, B } = initAB(cfg, o, i, rng));
    if (tensors) {
      A = tensors.get(k.A)!.data;
      B = tensors.get(k.B)!.data;
    }
    ex.setParam(pre + k.A, A, [cfg.r, i], "f32");
    ex.setParam(pre + k.B, B, [o, cfg.r], "f32");
    if (cfg.useDora) {
      let m = tensors?.get(k.m)?.data;
      if (!m) {
        W = Float64Array.from(W ?? await ex.getParam(pre + wname));
        addLowRank(W, o, i, B, A, cfg.r, s);
        m = rowNorms(W, o, i);
      }
      ex.setParam(pre + k.m, m, [o], "f32");
    }
  }
  for (const t of adapter.expertTargets) {
    const r = experts.expertRank(t, cfg).r;
    const k = loraKeys(t.module), sh = experts.expertLoraShapes(t, r, dc.moe!.experts);
    const { A, B } = tensors
      ? { A: tensors.get(k.A)!.data, B: tensors.get(k.B)!.data }
      : experts.initExpertLora(sh, r, cfg.init, rng);
    ex.setParam(pre + k.A, A, sh.A, "f32");
    ex.setParam(pre + k.B, B, sh.B, "f32");
  }
  adapter.modulesToSave = saved;
  model.setAdapter(adapter);
  return adapter;
}

/** Options of {@link saveAdapter}. */
export interface SaveAdapterOptions {
  /** base_model_name_or_path (default: the adapter's). */
  baseModel?: string;
  /**
   * PiSSA only: write a plain LoRA for the original (not residual) base, as PEFT's
   * `save_pretrained(path_initial_model_for_weight_conversion=...)`: A' = [A; A₀], B' = [B, −B₀], r' = 2r,
   * alpha' = 2·alpha (√2·alpha with rsLoRA), init_lora_weights true. Without it a PiSSA adapter is written as
   * PEFT writes it (init "pissa…"; PEFT recomputes the SVD of the base on load, exactly only for "pissa").
   */
  convertPissa?: boolean;
}

/** Writes the model's adapter as a PEFT folder (adapter_config.json + adapter_model.safetensors). */
export async function saveAdapter(model: ModelCore, dir: string, opts: SaveAdapterOptions = {}): Promise<void> {
  const ad = model.adapter;
  if (!(ad instanceof LoraAdapter)) throw new Error("saveAdapter: the model has no LoRA adapter attached");
  const tensors = new Map<string, AdapterTensor>();
  for (const [k, p] of ad.params) {
    tensors.set(k, { shape: p.shape, data: Float32Array.from(await model.executor.getParam(model.prefix + k)) });
  }
  // "all" is LLaMA-Factory's word: PEFT gets the names it resolves to.
  let cfg = isAll(ad.config.targets) ? { ...ad.config, targets: allLinearTargets(ad.decoder) } : ad.config;
  if (opts.convertPissa) {
    if (!ad.initial) throw new Error("saveAdapter: convertPissa needs an adapter PiSSA-initialised by attachAdapter");
    const r = cfg.r;
    for (const mod of ad.targets) {
      const k = loraKeys(mod);
      const A = tensors.get(k.A)!, B = tensors.get(k.B)!, A0 = ad.initial.get(k.A)!, B0 = ad.initial.get(k.B)!;
      const [o, i] = [B.shape[0], A.shape[1]];
      const A2 = new Float32Array(2 * r * i), B2 = new Float32Array(o * 2 * r);
      A2.set(A.data);
      A2.set(A0.data, r * i);
      for (let j = 0; j < o; j++) {
        for (let c = 0; c < r; c++) {
          B2[j * 2 * r + c] = B.data[j * r + c];
          B2[j * 2 * r + r + c] = -B0.data[j * r + c];
        }
      }
      tensors.set(k.A, { shape: [2 * r, i], data: A2 });
      tensors.set(k.B, { shape: [o, 2 * r], data: B2 });
    }
    cfg = { ...cfg, r: 2 * r, alpha: cfg.useRslora ? cfg.alpha * Math.SQRT2 : 2 * cfg.alpha, init: true };
  }
  const modulesToSave = await readModulesToSave(model, ad.modulesToSave);
  await writePeftAdapter(dir, { config: cfg, tensors, baseModel: opts.baseModel ?? ad.baseModel, modulesToSave });
}
