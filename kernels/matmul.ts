/**
 * WGSL matmul: the tuned kernel (see {@link generateMatmul}) with its config chosen per shape class
 * from `ctx.tuned` (filled by the tuner, `engine/exec/tuner.ts`) or a default per adapter kind, and
 * the naive baseline (one thread per output element) it is benchmarked against.
 * @module
 */
import { matmulDims, type MatmulAttrs } from "../engine/graph/ops/matmul.ts";
import { numel, stridesOf, type TensorInfo } from "../engine/graph/types.ts";
import { declare, grid, type KernelContext, loadF32, type Lowering, storeF32 } from "./kernel.ts";
import { configProblem, generateMatmul, type MatmulConfig } from "./matmul_gen.ts";

export { configLabel, generateMatmul, type MatmulConfig } from "./matmul_gen.ts";

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
 * (transA, transB); align is `a4` when M, N and K are multiples of 4, else `a1`.
 */
export function matmulShapeClass(a: TensorInfo, b: TensorInfo, attrs: MatmulAttrs): string {
  const { M, K, N } = matmulDims(a, b, attrs);
  const work = M * N * K;
  const size = M < 8 ? "rows" : N < 8 ? "cols" : work < 2 ** 21 ? "s" : work < 2 ** 27 ? "m" : "l";
  const layout = `${attrs.transA ? "t" : "n"}${attrs.transB ? "t" : "n"}`;
  const align = M % 4 === 0 && N % 4 === 0 && K % 4 === 0 ? "a4" : "a1";
  return `matmul:${size}:${layout}:${a.dtype}.${b.dtype}:${align}`;
}

/**
 * The untuned default config for a shape class on an adapter kind. On software adapters (lavapipe)
 * register blocking straight from storage with uniform A rows measured fastest; on GPUs the
 * workgroup-memory tiles.
 */
export function defaultMatmulConfig(kind: AdapterKind, shapeClass: string): MatmulConfig {
  const rows = shapeClass.startsWith("matmul:rows:");
  if (kind === "cpu") {
    return rows ? { wgX: 64, wgY: 1, tm: 1, tn: 4, tk: 0, vec: true } : { wgX: 16, wgY: 1, tm: 8, tn: 4, tk: 0, vec: true };
  }
  return rows ? { wgX: 64, wgY: 1, tm: 1, tn: 4, tk: 0, vec: true } : { wgX: 16, wgY: 16, tm: 4, tn: 4, tk: 16, vec: false };
}

/** The configs the tuner tries on an adapter kind (each checked against `ctx` limits before use). */
export function matmulCandidates(kind: AdapterKind): MatmulConfig[] {
  const out: MatmulConfig[] = [];
  for (const vec of [true, false]) {
    for (const [tm, tn] of [[4, 4], [8, 4], [4, 8], [8, 8], [1, 4], [16, 4]]) {
      for (const wgX of [8, 16, 32, 64]) out.push({ wgX, wgY: 1, tm, tn, tk: 0, vec });
    }
  }
  for (const [wgX, wgY, tm, tn, tk] of [[16, 16, 4, 4, 16], [16, 8, 4, 4, 16], [8, 8, 4, 4, 8], [16, 16, 4, 4, 8], [8, 8, 8, 8, 8]]) {
    out.push({ wgX, wgY, tm, tn, tk, vec: false });
  }
  if (kind === "gpu") out.push({ wgX: 8, wgY: 8, tm: 4, tn: 4, tk: 0, vec: true });
  return out;
}

/** The config a lowering uses for a matmul: tuned for its shape class, else the adapter default. */
export function pickMatmulConfig(a: TensorInfo, b: TensorInfo, attrs: MatmulAttrs, ctx: KernelContext): MatmulConfig {
  const cls = matmulShapeClass(a, b, attrs);
  const tuned = ctx.tuned.get(cls) as MatmulConfig | undefined;
  if (tuned && !configProblem(tuned, ctx)) return tuned;
  const kind = (ctx.tuned.get(ADAPTER_KIND_KEY) as AdapterKind | undefined) ?? "cpu";
  const def = defaultMatmulConfig(kind, cls);
  return configProblem(def, ctx) ? { wgX: 8, wgY: 8, tm: 2, tn: 2, tk: 0, vec: false } : def;
}

/** The tuned matmul lowering. */
export const tunedMatmul: Lowering<MatmulAttrs> = ({ inputs, outputs, attrs }, ctx) =>
  generateMatmul(inputs, outputs[0], attrs, pickMatmulConfig(inputs[0], inputs[1], attrs, ctx), ctx);

/** Lowerings of this family by op name. */
export const lowerings: Record<string, Lowering> = {
  matmul: tunedMatmul as Lowering,
};
