/**
 * WGSL matmul: the tuned kernel (see {@link generateMatmul}) with its config chosen per shape class
 * from `ctx.tuned` (filled by the tuner, `engine/exec/tuner.ts`) or a default per adapter kind, and
 * the naive baseline (one thread per output element) it is benchmarked against.
 * @module
 */
import { type MatmulAttrs, type MatmulDims, matmulDims } from "../engine/graph/ops/matmul.ts";
import { numel, stridesOf, type TensorInfo } from "../engine/graph/types.ts";
import {
  type BindingRef,
  declare,
  grid,
  type KernelContext,
  type Launch,
  loadF32,
  type Lowered,
  type Lowering,
  storeF32,
} from "./kernel.ts";
import { lowerings as castLowerings } from "./cast.ts";
import { configProblem, generateMatmulTiled, type MatmulConfig, type MatmulEpilogue } from "./matmul_gen.ts";
import { generateMatmulSg } from "./matmul_sg.ts";

export { configLabel, type MatmulConfig } from "./matmul_gen.ts";
export { generateMatmulSg } from "./matmul_sg.ts";

/**
 * WGSL of one matmul with config `cfg`, C (f32/i32/u32) written to `cBinding`: the subgroup kernel
 * (kernels/matmul_sg.ts) for `cfg.sg`, else the register / workgroup-memory kernel
 * (kernels/matmul_gen.ts, with its f16 variant for `cfg.f16`). `accumulate` (C += A·B, f32) and `epilogue` (fused
 * elementwise consumers, kernels/fused.ts) take the tiled kernel; they are exclusive.
 */
export function generateMatmul(
  inputs: readonly TensorInfo[],
  out: TensorInfo,
  attrs: MatmulAttrs,
  cfg: MatmulConfig,
  ctx: KernelContext,
  cBinding: BindingRef = { output: 0 },
  accumulate = false,
  epilogue?: MatmulEpilogue,
): Lowered {
  if (cfg.sg && (accumulate || epilogue)) {
    // C += A·B continues the tiled kernel's fma chains (segmented weights), and epilogues are the tiled kernel's;
    // the subgroup kernel has neither.
    cfg = defaultMatmulConfig("gpu", matmulDims(inputs[0], inputs[1], attrs));
    if (configProblem(cfg, ctx)) cfg = { wgX: 8, wgY: 8, tm: 2, tn: 2, tk: 0, vec: false };
  }
  return cfg.sg
    ? generateMatmulSg(inputs, out, attrs, cfg, ctx, cBinding)
    : generateMatmulTiled(inputs, out, attrs, cfg, ctx, cBinding, accumulate, epilogue);
}

const WG = 64;

/** Naive matmul lowering: the baseline the tuned kernel is benchmarked against. */
export const naiveMatmul: Lowering<MatmulAttrs> = ({ inputs: [a, b], outputs: [o], attrs }, ctx) => {
  const { batch, M, K, N } = matmulDims(a, b, attrs);
  const nb = numel(batch);
  const bst = stridesOf(batch);
  const aBatch = a.shape.slice(0, -2), bBatch = b.shape.slice(0, -2);
  const off = (inBatch: readonly number[], mat: number) => {
    const lines: string[] = [];
    const d0 = batch.length - inBatch.length;
    const ist = stridesOf(inBatch);
    for (let d = 0; d < batch.length; d++) {
      if (d < d0 || inBatch[d - d0] === 1) continue;
      lines.push(`((z / ${bst[d]}u) % ${batch[d]}u) * ${ist[d - d0] * mat}u`);
    }
    return lines.length ? lines.join(" + ") : "0u";
  };
  const ai = attrs.transA ? `oa + k * ${M}u + i` : `oa + i * ${K}u + k`;
  const bi = attrs.transB ? `ob + j * ${K}u + k` : `ob + k * ${N}u + j`;
  const total = nb * M * N;
  const code = `${declare([["A", a.dtype], ["B", b.dtype], ["C", o.dtype]])}
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let gid = (wid.x + wid.y * nwg.x) * ${WG}u + lid.x;
  if (gid >= ${total}u) { return; }
  let z = gid / ${M * N}u;
  let i = (gid / ${N}u) % ${M}u;
  let j = gid % ${N}u;
  let oa = ${off(aBatch, M * K)};
  let ob = ${off(bBatch, K * N)};
  var acc = 0.0;
  for (var k = 0u; k < ${K}u; k++) {
    acc += ${loadF32("A", a.dtype, ai)} * ${loadF32("B", b.dtype, bi)};
  }
  ${storeF32("C", o.dtype, "gid", "acc")}
}`;
  return {
    launches: [{
      code,
      bindings: [{ input: 0 }, { input: 1 }, { output: 0 }],
      workgroups: grid(Math.ceil(total / WG), ctx.maxWorkgroupsPerDim),
    }],
  };
};

/** Key in `ctx.tuned` holding the adapter kind ("cpu" for software adapters, else "gpu"). */
export const ADAPTER_KIND_KEY = "adapterKind";

/** Adapter kinds with their own default configs. */
export type AdapterKind = "cpu" | "gpu";

/**
 * The shape class of a matmul, the key its tuned config is stored under in `ctx.tuned`:
 * `matmul:<size>:<layout>:<dtypeA>.<dtypeB>:<align>` where size is `rows` (M < 8, e.g. decoding),
 * `cols` (N < 8), else `s`/`m`/`l` by M·N·K (< 128³, < 512³, larger); layout is `nn`/`nt`/`tn`/`tt`
 * (transA, transB); align is `a4` when the axes 4-wide loads run along are multiples of 4 (K, and M
 * for Aᵀ, N for B), else `a1`.
 */
export function matmulShapeClass(a: TensorInfo, b: TensorInfo, attrs: MatmulAttrs): string {
  const { M, K, N } = matmulDims(a, b, attrs);
  const work = M * N * K;
  const size = M < 8 ? "rows" : N < 8 ? "cols" : work < 2 ** 21 ? "s" : work < 2 ** 27 ? "m" : "l";
  const layout = `${attrs.transA ? "t" : "n"}${attrs.transB ? "t" : "n"}`;
  const vecDims = [K, ...(attrs.transA ? [M] : []), ...(attrs.transB ? [] : [N])];
  const align = vecDims.every((d) => d % 4 === 0) ? "a4" : "a1";
  return `matmul:${size}:${layout}:${a.dtype}.${b.dtype}:${align}`;
}

/** A config from its parts: wgX×wgY threads, a tm×tn block, workgroup-memory K step, vector loads. */
function cfg(wgX: number, wgY: number, tm: number, tn: number, tk = 0, vec = tk === 0): MatmulConfig {
  return { wgX, wgY, tm, tn, tk, vec };
}

/** Which kernel variants the tuner may add to its candidates (see {@link matmulCandidates}). */
export interface MatmulVariants {
  /** Add f16 variants (the adapter passed the shader-f16 probe and an operand is stored f16). */
  f16?: boolean;
  /** Add subgroup variants of this subgroup size (0 or absent: none). */
  subgroupSize?: number;
}

/** The variants worth trying for operands `a`, `b` on `ctx`: f16 when an operand is f16 (or may be rounded to it). */
export function matmulVariants(a: TensorInfo, b: TensorInfo, ctx: KernelContext): MatmulVariants {
  const f16Operand = [a.dtype, b.dtype].some((d) => d === "f16" || (d === "f32" && !!ctx.matmulF16Operands));
  return { f16: ctx.f16 && f16Operand, subgroupSize: ctx.subgroupSize ?? 0 };
}

/**
 * The untuned default config of a matmul on an adapter kind.
 *
 * Software adapters (lavapipe): every load whose address differs between invocations costs a loop
 * over the SIMD lanes there, so the fastest form is the largest register block that compiles in
 * reasonable time (32×32: ~2 s once, then the shader cache), read straight from storage with 4-wide
 * loads, one SIMD batch (8 threads) a workgroup, shrunk to fit small M/N and keep both cores busy.
 * GPUs: the classic workgroup-memory tiling, or a thread a column for few rows.
 */
export function defaultMatmulConfig(kind: AdapterKind, { M, N, batch }: MatmulDims): MatmulConfig {
  if (kind === "gpu") {
    if (M < 8) return cfg(64, 1, 1, 4);
    if (N < 8) return cfg(1, 64, 4, 1);
    return M * N < 2 ** 16 ? cfg(8, 8, 4, 4, 8) : cfg(16, 16, 4, 4, 16);
  }
  if (N < 8) return cfg(1, 8, M >= 128 ? 16 : 4, Math.min(N, 4));
  let tn = [32, 16, 8, 4].find((t) => 8 * t <= Math.max(N, 32))!;
  let tm = [32, 16, 8, 4, 1].find((t) => t <= M)!;
  const groups = (r: number, c: number) => Math.ceil(M / r) * Math.ceil(N / (8 * c)) * numel(batch);
  while (groups(tm, tn) < 4 && tm > 4) tm /= 2;
  while (groups(tm, tn) < 4 && tn > 4) tn /= 2;
  return cfg(8, 1, tm, tn);
}

/**
 * The configs the tuner tries on an adapter kind (each checked against `ctx` limits before use),
 * plus the f16 and subgroup variants `variants` allows (GPU kind: both; software adapters only get
 * the f16 form of their register blocks — they have neither feature in practice).
 */
export function matmulCandidates(kind: AdapterKind, variants: MatmulVariants = {}): MatmulConfig[] {
  const reg = [
    cfg(8, 1, 32, 32),
    cfg(8, 1, 32, 16),
    cfg(8, 1, 16, 32),
    cfg(8, 1, 16, 16),
    cfg(16, 1, 16, 16),
    cfg(8, 1, 8, 8),
    cfg(8, 1, 4, 4),
    cfg(16, 1, 8, 4),
    cfg(8, 1, 1, 16),
    cfg(1, 8, 16, 4),
    cfg(8, 1, 16, 16, 0, false),
  ];
  const tiled = [
    cfg(16, 16, 4, 4, 16),
    cfg(16, 16, 4, 4, 8),
    cfg(8, 8, 4, 4, 8),
    cfg(16, 8, 8, 4, 16),
    cfg(8, 8, 8, 8, 8),
  ];
  const gpuReg = [cfg(16, 16, 4, 4), cfg(64, 1, 1, 4), cfg(1, 64, 4, 1), cfg(16, 16, 2, 2)];
  const base = kind === "cpu" ? [...reg, ...tiled] : [...tiled, ...gpuReg, ...reg.slice(3)];
  const extra: MatmulConfig[] = [];
  if (variants.f16) {
    // f16 tiles take half the workgroup memory: a deeper K step fits as well.
    const f16Tiled = [...tiled, cfg(16, 16, 4, 4, 32), cfg(16, 16, 8, 4, 16)];
    const f16Reg = kind === "cpu" ? reg.slice(0, 4) : [cfg(16, 16, 4, 4), cfg(64, 1, 1, 4), cfg(16, 1, 8, 4)];
    extra.push(...[...f16Tiled, ...f16Reg].map((c) => ({ ...c, f16: true })));
  }
  const S = variants.subgroupSize ?? 0;
  if (S) {
    const sg = (wgY: number, tm: number, tn: number) => ({ ...cfg(S, wgY, tm, tn, 0, true), sg: true });
    extra.push(sg(1, 1, 4), sg(1, 4, 4), sg(2, 4, 4), sg(4, 4, 4), sg(4, 8, 4), sg(8, 4, 4), sg(2, 8, 8), sg(4, 4, 8));
  }
  return [...base, ...extra];
}

/** The config a lowering uses for a matmul: tuned for its shape class, else the adapter default. */
export function pickMatmulConfig(a: TensorInfo, b: TensorInfo, attrs: MatmulAttrs, ctx: KernelContext): MatmulConfig {
  const cls = matmulShapeClass(a, b, attrs);
  const tuned = ctx.tuned.get(cls) as MatmulConfig | undefined;
  if (tuned && !configProblem(tuned, ctx)) return tuned;
  const kind = (ctx.tuned.get(ADAPTER_KIND_KEY) as AdapterKind | undefined) ?? "cpu";
  const def = defaultMatmulConfig(kind, matmulDims(a, b, attrs));
  return configProblem(def, ctx) ? { wgX: 8, wgY: 8, tm: 2, tn: 2, tk: 0, vec: false } : def;
}

/**
 * The tuned matmul lowering. f16/bf16 outputs are accumulated in f32 into a scratch buffer and then
 * rounded by the cast kernel (one extra launch), so no two threads share a packed word.
 */
export const tunedMatmul: Lowering<MatmulAttrs> = ({ inputs, outputs: [o], attrs }, ctx) => {
  const cfg = pickMatmulConfig(inputs[0], inputs[1], attrs, ctx);
  if (o.dtype !== "f16" && o.dtype !== "bf16") return generateMatmul(inputs, o, attrs, cfg, ctx);
  const f32: TensorInfo = { shape: o.shape, dtype: "f32" };
  const mm = generateMatmul(inputs, f32, attrs, cfg, ctx, { scratch: 0 });
  const cast = castLowerings.cast({ inputs: [f32], outputs: [o], attrs: { dtype: o.dtype } }, ctx);
  const fromScratch = (l: Launch): Launch => ({
    ...l,
    bindings: l.bindings.map((b) => ("input" in b ? { scratch: 0 } : b)),
  });
  return { launches: [...mm.launches, ...cast.launches.map(fromScratch)], scratch: [numel(o.shape) * 4] };
};

/** Lowerings of this family by op name. */
export const lowerings: Record<string, Lowering> = {
  matmul: tunedMatmul as Lowering,
};
