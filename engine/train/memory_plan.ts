/**
 * Planned training memory without weights or a device: the step is traced on a shape-only executor (it
 * records what would be stored, runs nothing) and planned by the same planner the executors use. Peak bytes =
 * stored parameters (in their stored dtype) + optimizer states + the step's arena: activations and gradients,
 * the step's inputs and constants, and the WebGPU kernels' scratch, packed by liveness as the WebGPU executor
 * packs them (engine/exec/webgpu_memory.ts).
 *
 * @example
 * ```ts
 * const m = await planTrainingMemory(llama2_7b, { method: "lora", batch: 1, seq: 1024 });
 * console.log(m.bytesPerParam, m.peakBytes);
 * ```
 * @module
 */
import type { Graph } from "../graph/mod.ts";
import { type DType, DTYPE_BYTES, numel } from "../graph/types.ts";
import type { CompiledGraph, CompileOptions, Executor, HostArray } from "../exec/executor.ts";
import { planGraph } from "../exec/plan.ts";
import { plannedDeviceBytes } from "../exec/webgpu_memory.ts";
import type { DecoderConfig } from "../nn/config.ts";
import { decoderParams } from "../nn/decoder.ts";
import { attachAdapter } from "../nn/lora.ts";
import { Model } from "../nn/model.ts";
import { freezeTrainable } from "./freeze.ts";
import { adamwStepPlan, lmObjectiveOf, LOSS_SUM, type StepPlan } from "./step/lm.ts";
import { galoreOptimizer } from "./step/galore.ts";
import { planOptimizer, traceStep } from "./step/plan.ts";
import { GALORE_DEFAULTS, galoreTargets } from "../optim/galore.ts";
import type { ApolloOptions } from "../optim/apollo.ts";
import { badamBlocks } from "../optim/badam.ts";
import { apolloOptimizer } from "./step/apollo.ts";
import type { OptimName } from "../config/keys_training.ts";

/** An executor that only records the params set on it and plans graphs: for memory planning. */
export class ShapeOnlyExecutor implements Executor {
  readonly name = "plan-only";
  readonly params = new Map<string, { shape: readonly number[]; dtype: DType }>();
  lastArenaBytes = 0;

  setParam(name: string, _data: ArrayLike<number>, shape: readonly number[], dtype: DType = "f32"): void {
    this.params.set(name, { shape: [...shape], dtype });
  }
  getParam(name: string): Promise<HostArray> {
    const p = this.params.get(name);
    if (!p) return Promise.reject(new Error(`no param "${name}"`));
    return Promise.resolve(new Float32Array(numel(p.shape)));
  }
  hasParam(name: string): boolean {
    return this.params.has(name);
  }
  dispose(): void {
    this.params.clear();
  }
  compile(graph: Graph, opts: CompileOptions = {}): Promise<CompiledGraph> {
    const plan = planGraph(graph, opts.outputs);
    this.lastArenaBytes = plan.arenaBytes;
    const stats = { dispatches: plan.order.length, submits: 1, bytesReadBack: 0, arenaBytes: plan.arenaBytes };
    return Promise.resolve({
      run: () => Promise.reject(new Error("a plan-only executor runs nothing")),
      stats,
    });
  }
  /** Bytes of the stored params whose names pass `filter`. */
  bytes(filter: (name: string) => boolean = () => true): number {
    let n = 0;
    for (const [name, p] of this.params) if (filter(name)) n += numel(p.shape) * DTYPE_BYTES[p.dtype];
    return n;
  }
}

/** LF's apollo_* defaults (engine/config/keys_finetuning.ts). */
const APOLLO_DEFAULTS: ApolloOptions = {
  rank: 16,
  updateInterval: 200,
  scale: 32,
  projType: "std",
  scaleType: "channel",
  scaleFront: false,
};

/** Options of {@link planTrainingMemory}. */
export interface MemoryPlanOptions {
  /**
   * "qlora": LoRA's plan with every linear base weight at its NF4 + double-quantization storage size. "galore": full
   * tuning with GaLore-AdamW, every linear weight's moments projected to `rank` (default 16) plus its projection.
   * "apollo": full tuning with APOLLO (LF's apollo_* defaults: rank 16 on every linear weight, AdamW on the rest).
   * "badam": full tuning with BAdam's layer mode: every weight stored f32, gradients and AdamW states for the one
   * block that trains (the first decoder layer; each layer's is the same size).
   */
  method: "full" | "freeze" | "lora" | "qlora" | "galore" | "apollo" | "badam";
  batch: number;
  seq: number;
  /** Stored dtype of the frozen base weights (default bf16; trainable weights are f32). */
  baseDtype?: DType;
  /** LoRA rank on all linear layers (default 8). */
  rank?: number;
  /** LoRA also on the routed experts' fused gate_up_proj and down_proj (PEFT's target_parameters; MoE models). */
  loraExperts?: boolean;
  /** Freeze: trainable last layers (default 2). */
  freezeLayers?: number;
  /** Activation checkpointing of every decoder layer (LLaMA-Factory's default; default off here). */
  checkpoint?: boolean;
  /**
   * The optimizer (not with "galore"; default adamw): an `optim` value, or LF's "muon" / "adam_mini"; "sgd_momentum"
   * is `optim: sgd` with `optim_args: momentum=0.9`.
   */
  optim?: OptimName | "sgd_momentum" | "muon" | "adam_mini";
}

/** What {@link planTrainingMemory} reports, in bytes. */
export interface MemoryPlan {
  parameters: number;
  /** Model parameters (base, without adapters). */
  modelParams: number;
  trainableParams: number;
  weights: number;
  optimizer: number;
  arena: number;
  peakBytes: number;
  /** peakBytes / modelParams. */
  bytesPerParam: number;
}

/** Plans one training step of `config` by `opts.method` (`opts.optim`, clipping) and reports its memory. */
export async function planTrainingMemory(config: DecoderConfig, opts: MemoryPlanOptions): Promise<MemoryPlan> {
  const ex = new ShapeOnlyExecutor();
  const params = new Map<string, { shape: number[]; dtype: DType }>();
  const base = opts.baseDtype ?? "bf16";
  let modelParams = 0;
  const all: string[] = [];
  for (const [name] of decoderParams(config)) all.push(name);
  const trainBase = opts.method === "full" || opts.method === "galore" || opts.method === "apollo" ||
      opts.method === "badam"
    ? new Set(all)
    : opts.method === "freeze"
    ? new Set(freezeTrainable(all, config, { layers: opts.freezeLayers ?? 2, modules: "all" }))
    : new Set<string>();
  for (const [name, shape] of decoderParams(config)) {
    const dtype = trainBase.has(name) ? "f32" : base;
    ex.setParam(name, [], shape, dtype);
    params.set(name, { shape, dtype });
    modelParams += numel(shape);
  }
  const model = new Model(config, ex, params);
  let trainable = [...trainBase];
  if (opts.method === "badam") trainable = badamBlocks(all)[0].params;
  if (opts.method === "lora" || opts.method === "qlora") {
    const r = opts.rank ?? 8;
    const targetParameters = opts.loraExperts ? ["experts.gate_up_proj", "experts.down_proj"] : undefined;
    trainable = [
      ...(await attachAdapter(model, { r, alpha: 2 * r, targets: ["all"], targetParameters })).params.keys(),
    ];
  }
  let trainableParams = 0;
  const galore = { ...GALORE_DEFAULTS, rank: opts.rank ?? GALORE_DEFAULTS.rank };
  const projected = opts.method === "galore" || opts.method === "apollo";
  const targets = projected ? new Set(galoreTargets(config, trainable, "all")) : new Set<string>();
  const o = opts.optim ?? "adamw";
  if (opts.method !== "full" && opts.method !== "freeze" && o !== "adamw") {
    throw new Error(`memory plan: ${opts.method} runs with adamw, got ${o}`);
  }
  const plan: StepPlan = adamwStepPlan(opts.batch, opts.seq, trainable, {
    checkpoint: opts.checkpoint ?? false,
    optim: o === "sgd_momentum" ? "sgd" : o === "muon" || o === "adam_mini" ? "adamw" : o,
    optimArgs: o === "sgd_momentum" ? "momentum=0.9" : null,
    useMuon: o === "muon",
    useAdamMini: o === "adam_mini",
  });
  const update = opts.method === "galore"
    ? galoreOptimizer(model.prefix, [...targets], galore, plan)
    : opts.method === "apollo"
    ? apolloOptimizer(model.prefix, [...targets], { ...APOLLO_DEFAULTS, rank: opts.rank ?? APOLLO_DEFAULTS.rank }, plan)
    : planOptimizer(model, plan);
  const stateNamesSet = new Set<string>();
  for (const name of trainable) {
    const shape = (params.get(name) ?? model.adapter!.params.get(name)!).shape;
    trainableParams += numel(shape);
    for (const st of update.states(name, shape)) {
      ex.setParam(st.name, [], st.shape, st.dtype ?? "f32");
      stateNamesSet.add(st.name);
    }
  }
  ex.setParam(LOSS_SUM, [0], [1]);
  const g = traceStep(model, plan, lmObjectiveOf(model, plan), update);
  const arena = plannedDeviceBytes(g);
  const isState = (n: string) => stateNamesSet.has(n);
  const optimizer = ex.bytes(isState);
  let weights = ex.bytes((n) => !isState(n));
  if (opts.method === "qlora") {
    // engine/quant's NF4 storage: 4-bit codes in i32 words, one 8-bit absmax code per 64-block, one f32
    // absmax per 256 of those, one f32 offset — instead of the bf16 weight.
    for (const [name, p] of ex.params) {
      if (!/\.(q|k|v|o|qkv|gate|up|down|gate_up)_proj\.weight$/.test(name)) continue;
      const n = numel(p.shape), blocks = Math.ceil(n / 64);
      weights += Math.ceil(n / 8) * 4 + blocks + Math.ceil(blocks / 256) * 4 + 4 - n * DTYPE_BYTES[p.dtype];
    }
  }
  const peakBytes = weights + optimizer + arena;
  return {
    parameters: modelParams + (opts.method === "lora" ? trainableParams : 0),
    modelParams,
    trainableParams,
    weights,
    optimizer,
    arena,
    peakBytes,
    bytesPerParam: peakBytes / modelParams,
  };
}
