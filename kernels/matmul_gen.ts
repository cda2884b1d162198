/**
 * The tunable matmul kernel generator: C[z, M, N] = op(A)[z, M, K] · op(B)[z, K, N] in f32.
 *
 * Each workgroup owns a BM×BN output tile (BM = wgY·tm, BN = wgX·tn); each thread owns a tm×tn
 * register block. Two variants:
 * - `tk = 0`: operands are read straight from storage into registers, k innermost over groups of 4
 *   (each accumulator read and written once a group). The fast form on software adapters: lavapipe
 *   (Mesa 22) turns every storage or workgroup load whose address is not a compile-time constant into
 *   a loop over the SIMD lanes with a bounds check per component, so what counts is values loaded a
 *   lane per FMA; a 32×32 block (1024 accumulators, spilled to the stack) loads 1/16 of a value per
 *   FMA and measured 2–3× an 8×8 block at 1024³; workgroup-memory tiles only add barriers there.
 * - `tk > 0`: the classic workgroup-memory tiling (BM×tk of A, tk×BN of B per step, two barriers);
 *   the fast form on real GPUs.
 *
 * Transposes are read by index, batch axes broadcast, any M/N/K works (rows and columns past the
 * edge are clamped for loads and skipped for stores). f16/bf16 operands are unpacked in the kernel;
 * accumulation is f32. With `vec` set, 4-wide loads are used where the layout allows (the
 * contiguous axis divisible by 4): along K for A / Bᵀ, along M/N for Aᵀ / B.
 *
 * Variants (flags of {@link MatmulConfig}, each refused by {@link configProblem} where the adapter
 * lacks what it needs):
 * - `f16` (needs shader-f16): f16-stored operands are declared `array<f16>` / `array<vec4<f16>>` and
 *   read natively, and the workgroup-memory tiles of those operands hold f16 (half the bytes and
 *   bank traffic); with `ctx.matmulF16Operands` f32 operands are rounded into f16 tiles too. Products
 *   and accumulation stay f32, so f16-stored operands give the same result as the plain kernel.
 *   bf16 operands keep f32 tiles (bf16 → f16 would lose range).
 * - `sg` (needs subgroups of a fixed size S = wgX): kernels/matmul_sg.ts — A fragments shared across
 *   a subgroup by `subgroupShuffle` instead of workgroup memory.
 * @module
 */
import { type MatmulAttrs, matmulDims } from "../engine/graph/ops/matmul.ts";
import { type DType, numel, stridesOf, type TensorInfo } from "../engine/graph/types.ts";
import {
  type BindingRef,
  grid,
  type KernelContext,
  loadF32,
  type Lowered,
  storeF32,
  wgslStorageType,
} from "./kernel.ts";

/** Tuning parameters of the matmul kernel. */
export interface MatmulConfig {
  /** Threads of a workgroup along N. */
  wgX: number;
  /** Threads of a workgroup along M. */
  wgY: number;
  /** Outputs per thread along M. */
  tm: number;
  /** Outputs per thread along N. */
  tn: number;
  /** K step of workgroup-memory tiles; 0 reads operands straight from storage. */
  tk: number;
  /** Use 4-wide loads where the layout allows. */
  vec: boolean;
  /** f16 variant: native f16 loads and f16 workgroup tiles of f16 operands (needs `ctx.f16`). */
  f16?: boolean;
  /** Subgroup variant (kernels/matmul_sg.ts): wgX is the subgroup size, tk is 0 (needs `ctx.subgroupSize`). */
  sg?: boolean;
}

/** "8x4 wg64x1 vec" — a config as a short label (for bench records and errors). */
export function configLabel(c: MatmulConfig): string {
  return `${c.tm}x${c.tn} wg${c.wgX}x${c.wgY}${c.tk ? ` tk${c.tk}` : ""}${c.vec ? " vec" : ""}${c.f16 ? " f16" : ""}${
    c.sg ? " sg" : ""
  }`;
}

/** Largest register block (accumulators a thread) a config may ask for. */
export const MAX_BLOCK = 1024;

/** Why `c` cannot run on this adapter, or undefined when it can. */
export function configProblem(c: MatmulConfig, ctx: KernelContext): string | undefined {
  const ints = [c.wgX, c.wgY, c.tm, c.tn, c.tk];
  if (!ints.every((v) => Number.isInteger(v) && v >= 0) || !c.wgX || !c.wgY || !c.tm || !c.tn) {
    return `config ${JSON.stringify(c)}: expected positive integer wgX, wgY, tm, tn and tk >= 0`;
  }
  if (c.wgX * c.wgY > ctx.maxInvocations) return `${c.wgX * c.wgY} threads > ${ctx.maxInvocations} per workgroup`;
  if (c.tm * c.tn > MAX_BLOCK) return `register block ${c.tm}x${c.tn} > ${MAX_BLOCK} accumulators`;
  const shared = c.tk * (c.wgX * c.tn + c.wgY * c.tm) * 4;
  if (shared > ctx.maxWorkgroupStorage) return `${shared} bytes of workgroup memory > ${ctx.maxWorkgroupStorage}`;
  if (c.f16 && !ctx.f16) {
    return "the f16 variant needs shader-f16 (absent on this adapter, or its known-answer probe failed)";
  }
  if (c.sg) {
    const S = ctx.subgroupSize ?? 0;
    if (!S) return "the subgroup variant needs subgroups of one fixed size (absent, varying, or the probe failed)";
    if (c.wgX !== S) return `the subgroup variant needs wgX = the subgroup size ${S}, got ${c.wgX}`;
    if (c.tk) return `the subgroup variant reads straight from storage (tk 0), got tk ${c.tk}`;
    if (c.f16) return "the subgroup variant is not combined with the f16 variant";
  }
}

/** `off + o*so + k*sk` addresses element (outer o, k) of an operand. */
export interface Access {
  name: string;
  dtype: DType;
  /** Stride of the outer (row of A / column of B) index and of k. */
  so: number;
  sk: number;
  /** Size of the outer axis (M or N). */
  dim: number;
  /** Vector mode: along k, along the outer axis, or none. */
  mode: "k" | "o" | "none";
  /** f16 storage read natively (`array<f16>`, f16 variant). */
  native?: boolean;
}

/** WGSL of the thread's index along an axis: register r of thread t among T threads (R per thread). */
export function axisIndex(r: number, t: string, T: number, R: number): string {
  if (T === 1) return `${r}u`;
  if (R % 4 === 0) return `${((r >> 2) * T) * 4 + (r & 3)}u + ${t} * 4u`;
  return `${r * T}u + ${t}`;
}

/** Batch offset expression (elements) of an input with batch shape `inBatch`, broadcast to `batch`. */
export function batchOffset(batch: readonly number[], inBatch: readonly number[], mat: number): string {
  const bst = stridesOf(batch);
  const ist = stridesOf(inBatch);
  const d0 = batch.length - inBatch.length;
  const terms: string[] = [];
  for (let d = 0; d < batch.length; d++) {
    if (d < d0 || inBatch[d - d0] === 1) continue;
    terms.push(`((z / ${bst[d]}u) % ${batch[d]}u) * ${ist[d - d0] * mat}u`);
  }
  return terms.length ? terms.join(" + ") : "0u";
}

/** True when `dtype` can be read 4 at a time (f32 as vec4, f16/bf16 as two packed words). */
export function vectorizable(dtype: DType): boolean {
  return dtype === "f32" || dtype === "f16" || dtype === "bf16";
}

/** The 4 f32 values at element `e` (a multiple of 4) of a vectorized operand, as `let` lines + exprs. */
export function load4(x: Access, v: string, e: string): { lines: string[]; vals: string[] } {
  if (x.native) {
    return {
      lines: [`let ${v} = vec4<f32>(${x.name}[(${e}) >> 2u]);`],
      vals: ["x", "y", "z", "w"].map((c) => `${v}.${c}`),
    };
  }
  const lines = [`let ${v} = ${x.name}[(${e}) >> 2u];`];
  if (x.dtype === "f32") return { lines, vals: ["x", "y", "z", "w"].map((c) => `${v}.${c}`) };
  if (x.dtype === "f16") {
    lines.push(`let ${v}a = unpack2x16float(${v}.x);`, `let ${v}b = unpack2x16float(${v}.y);`);
    return { lines, vals: [`${v}a.x`, `${v}a.y`, `${v}b.x`, `${v}b.y`] };
  }
  const lo = (w: string) => `bitcast<f32>(${w} << 16u)`, hi = (w: string) => `bitcast<f32>(${w} & 0xffff0000u)`;
  return { lines, vals: [lo(`${v}.x`), hi(`${v}.x`), lo(`${v}.y`), hi(`${v}.y`)] };
}

/**
 * Storage declaration of an operand: 4-element vectors (vec4<f32>, vec2<u32> of 16-bit pairs) when
 * vectorized; native f16 storage is `array<f16>` / `array<vec4<f16>>`.
 */
export function decl(i: number, name: string, dtype: DType, vec: boolean, native = false): string {
  const t = native
    ? (vec ? "vec4<f16>" : "f16")
    : !vec
    ? wgslStorageType(dtype)
    : dtype === "f32"
    ? "vec4<f32>"
    : "vec2<u32>";
  return `@group(0) @binding(${i}) var<storage, read_write> ${name}: array<${t}>;`;
}

/** WGSL expression of element `idx` of operand `x` as f32 (native f16 storage converted). */
export function loadOperand(x: Access, idx: string): string {
  return x.native ? `f32(${x.name}[${idx}])` : loadF32(x.name, x.dtype, idx);
}

/**
 * An epilogue of the matmul (see kernels/fused.ts): instead of storing C, each result calls `call(index, value)`
 * (index the linear index into C); `code` declares its bindings from 2 on and its functions.
 */
export interface MatmulEpilogue {
  readonly code: string;
  readonly call: (idx: string, val: string) => string;
  readonly bindings: readonly BindingRef[];
}

/**
 * WGSL of one matmul with config `cfg` (not a subgroup config: {@link generateMatmul} in
 * kernels/matmul.ts dispatches those to kernels/matmul_sg.ts), C written to `cBinding` (or handed to `epilogue`).
 * The output must be f32/i32/u32; the inputs may have any dtypes, each its own (f16/bf16 unpacked, i32/u32
 * converted). With `accumulate` (f32 only), C += A·B: each accumulator starts from C's value and continues the same
 * fma chain over k, so a product split along K into consecutive launches gives the bits of the whole one (segmented
 * weights). `accumulate` and `epilogue` are exclusive.
 */
export function generateMatmulTiled(
  inputs: readonly TensorInfo[],
  out: TensorInfo,
  attrs: MatmulAttrs,
  cfg: MatmulConfig,
  ctx: KernelContext,
  cBinding: BindingRef = { output: 0 },
  accumulate = false,
  epilogue?: MatmulEpilogue,
): Lowered {
  if (cfg.sg) {
    throw new Error(
      "subgroup configs are generated by kernels/matmul_sg.ts (generateMatmul in kernels/matmul.ts picks)",
    );
  }
  const [a, b] = inputs;
  const problem = configProblem(cfg, ctx);
  if (problem) throw new Error(`matmul config ${configLabel(cfg)} cannot run here: ${problem}`);
  if (out.dtype === "f16" || out.dtype === "bf16") {
    throw new Error(`the matmul kernel stores f32/i32/u32 outputs, got ${out.dtype}; store f32 and cast after`);
  }
  const { batch, M, K, N } = matmulDims(a, b, attrs);
  const nb = numel(batch);
  const { wgX, wgY, tm, tn, tk } = cfg;
  const BM = wgY * tm, BN = wgX * tn;
  const tilesN = Math.ceil(N / BN), tilesM = Math.ceil(M / BM);
  const T = tilesN * tilesM * nb;
  const A: Access = {
    name: "A",
    dtype: a.dtype,
    so: attrs.transA ? 1 : K,
    sk: attrs.transA ? M : 1,
    dim: M,
    mode: "none",
    native: !!cfg.f16 && a.dtype === "f16",
  };
  const B: Access = {
    name: "B",
    dtype: b.dtype,
    so: attrs.transB ? K : 1,
    sk: attrs.transB ? 1 : N,
    dim: N,
    mode: "none",
    native: !!cfg.f16 && b.dtype === "f16",
  };
  const useVec = cfg.vec && !tk;
  for (const [x, R] of [[A, tm], [B, tn]] as const) {
    if (!useVec || !vectorizable(x.dtype)) continue;
    if (x.sk === 1 && K % 4 === 0) x.mode = "k";
    else if (x.so === 1 && x.dim % 4 === 0 && R % 4 === 0) x.mode = "o";
  }
  const KU = A.mode === "k" || B.mode === "k" ? 4 : tk ? 1 : 2;
  if (accumulate && out.dtype !== "f32") throw new Error(`an accumulating matmul stores f32, got ${out.dtype}`);
  if (accumulate && epilogue) throw new Error("a matmul either accumulates into C or hands C to an epilogue, not both");
  const vecC = out.dtype === "f32" && tn % 4 === 0 && N % 4 === 0 && useVec && !accumulate && !epilogue;
  // f16 variant: f16 workgroup tiles for f16 operands (and f32 ones when the caller allows rounding).
  const tile16 = (dtype: DType) => !!cfg.f16 && (dtype === "f16" || (dtype === "f32" && !!ctx.matmulF16Operands));
  const [tA, tB] = [tile16(a.dtype) ? "f16" : "f32", tile16(b.dtype) ? "f16" : "f32"];
  const head = [
    decl(0, "A", a.dtype, A.mode !== "none", A.native),
    decl(1, "B", b.dtype, B.mode !== "none", B.native),
    epilogue ? epilogue.code : decl(2, "C", out.dtype, vecC),
  ];
  if (A.native || B.native || (tk && (tA === "f16" || tB === "f16"))) head.unshift("enable f16;");
  if (tk) head.push(`var<workgroup> As: array<${tA}, ${BM * tk}>;`, `var<workgroup> Bs: array<${tB}, ${tk * BN}>;`);
  const body: string[] = [];
  const L = (s: string) => body.push(`  ${s}`);
  L(`let tile = wid.x + wid.y * nwg.x;`);
  L(`if (tile >= ${T}u) { return; }`);
  L(`let z = tile / ${tilesN * tilesM}u;`);
  L(`let rb = ((tile / ${tilesN}u) % ${tilesM}u) * ${BM}u;`);
  L(`let cb = (tile % ${tilesN}u) * ${BN}u;`);
  L(`let oa = ${batchOffset(batch, a.shape.slice(0, -2), M * K)};`);
  L(`let ob = ${batchOffset(batch, b.shape.slice(0, -2), K * N)};`);
  const rowOf = (i: number) => axisIndex(i, "lid.y", wgY, tm);
  const colOf = (j: number) => axisIndex(j, "lid.x", wgX, tn);
  for (let i = 0; i < tm; i++) {
    for (let j = 0; j < tn; j++) {
      if (!accumulate) {
        L(`var c${i}_${j} = 0.0;`);
        continue;
      }
      const r = `rb + ${rowOf(i)}`, c = `cb + ${colOf(j)}`;
      L(
        `var c${i}_${j} = select(0.0, C[min(z * ${M * N}u + (${r}) * ${N}u + ${c}, ${nb * M * N - 1}u)], ` +
          `${r} < ${M}u && ${c} < ${N}u);`,
      );
    }
  }
  const fmas = (av: (i: number) => string, bv: (j: number) => string) => {
    for (let i = 0; i < tm; i++) for (let j = 0; j < tn; j++) L(`  c${i}_${j} = fma(${av(i)}, ${bv(j)}, c${i}_${j});`);
  };
  if (!tk) {
    // Per-operand base addresses of each register row/column (clamped to stay in bounds).
    const bases = (x: Access, p: string, R: number, idx: (r: number) => string, off: string, base: string) => {
      const step = x.mode === "o" ? 4 : 1;
      const clampTo = x.mode === "o" ? x.dim - 4 : x.dim - 1;
      for (let r = 0; r < R; r += step) L(`let ${p}${r} = ${off} + min(${base} + ${idx(r)}, ${clampTo}u) * ${x.so}u;`);
    };
    bases(A, "pa", tm, rowOf, "oa", "rb");
    bases(B, "pb", tn, colOf, "ob", "cb");
    // Values of one k step group: vals[r][kk] for register r, k offset kk.
    const loads = (x: Access, p: string, R: number, ku: number): string[][] => {
      const vals: string[][] = Array.from({ length: R }, () => []);
      if (x.mode === "k") {
        for (let r = 0; r < R; r++) {
          for (let u = 0; u < ku; u += 4) {
            const l = load4(x, `v${p}${r}_${u}`, `${p}${r} + k${u ? ` + ${u}u` : ""}`);
            l.lines.forEach((s) => L(`  ${s}`));
            vals[r].push(...l.vals);
          }
        }
      } else if (x.mode === "o") {
        for (let kk = 0; kk < ku; kk++) {
          for (let r = 0; r < R; r += 4) {
            const l = load4(x, `v${p}${r}_${kk}`, `${p}${r} + (k + ${kk}u) * ${x.sk}u`);
            l.lines.forEach((s) => L(`  ${s}`));
            for (let e = 0; e < 4; e++) vals[r + e][kk] = l.vals[e];
          }
        }
      } else {
        for (let kk = 0; kk < ku; kk++) {
          for (let r = 0; r < R; r++) {
            const kx = kk ? `k + ${kk}u` : "k";
            L(`  let s${p}${r}_${kk} = ${loadOperand(x, `${p}${r} + ${x.sk === 1 ? kx : `(${kx}) * ${x.sk}u`}`)};`);
            vals[r][kk] = `s${p}${r}_${kk}`;
          }
        }
      }
      return vals;
    };
    const loop = (from: string, to: number, ku: number) => {
      if (to <= 0 && from === "0u") return;
      body.push(`  for (var k = ${from}; k < ${to}u; k += ${ku}u) {`);
      const av = loads(A, "pa", tm, ku), bv = loads(B, "pb", tn, ku);
      // k innermost: each accumulator is read and written once a group (they spill on CPUs).
      for (let i = 0; i < tm; i++) {
        for (let j = 0; j < tn; j++) {
          let e = `c${i}_${j}`;
          for (let kk = 0; kk < ku; kk++) e = `fma(${av[i][kk]}, ${bv[j][kk]}, ${e})`;
          L(`  c${i}_${j} = ${e};`);
        }
      }
      L(`}`);
    };
    // Vector loads along k need K % 4 == 0, so only the scalar or outer-vector forms have a tail.
    const K4 = K - (K % KU);
    loop("0u", K4, KU);
    if (K4 < K) loop(`${K4}u`, K, A.mode === "k" || B.mode === "k" ? 4 : 1);
  } else {
    // Workgroup-memory tiles: As[kk][m] (BM×tk), Bs[kk][n] (tk×BN), loaded by all threads.
    const nth = wgX * wgY;
    L(`let lin = lid.y * ${wgX}u + lid.x;`);
    body.push(`  for (var k0 = 0u; k0 < ${K}u; k0 += ${tk}u) {`);
    const fill = (x: Access, sh: string, O: number, base: string, t: string) => {
      const n = O * tk;
      for (let s = 0; s < Math.ceil(n / nth); s++) {
        const kFast = x.sk === 1; // read along the contiguous axis for coalescing
        const e = `(lin + ${s * nth}u)`;
        const [o, kk] = kFast ? [`${e} / ${tk}u`, `${e} % ${tk}u`] : [`${e} % ${O}u`, `${e} / ${O}u`];
        const guard = (s + 1) * nth > n ? `if (${e} < ${n}u) ` : "";
        L(`  ${guard}{`);
        L(`    let o = ${o}; let kk = ${kk}; let go = ${base} + o; let gk = k0 + kk;`);
        const idx = `${x.name === "A" ? "oa" : "ob"} + min(go, ${x.dim - 1}u) * ${x.so}u + min(gk, ${
          K - 1
        }u) * ${x.sk}u`;
        const v = t === "f32" ? loadOperand(x, idx) : x.native ? `${x.name}[${idx}]` : `f16(${loadOperand(x, idx)})`;
        L(`    ${sh}[kk * ${O}u + o] = select(${t}(0.0), ${v}, go < ${x.dim}u && gk < ${K}u);`);
        L(`  }`);
      }
    };
    fill(A, "As", BM, "rb", tA);
    fill(B, "Bs", BN, "cb", tB);
    L(`  workgroupBarrier();`);
    body.push(`    for (var kk = 0u; kk < ${tk}u; kk++) {`);
    const f32of = (t: string, e: string) => (t === "f32" ? e : `f32(${e})`);
    for (let i = 0; i < tm; i++) L(`    let a${i} = ${f32of(tA, `As[kk * ${BM}u + ${rowOf(i)}]`)};`);
    for (let j = 0; j < tn; j++) L(`    let b${j} = ${f32of(tB, `Bs[kk * ${BN}u + ${colOf(j)}]`)};`);
    fmas((i) => `a${i}`, (j) => `b${j}`);
    L(`  }`);
    L(`  workgroupBarrier();`);
    L(`}`);
  }
  // Stores, guarded.
  L(`let oc = z * ${M * N}u;`);
  for (let i = 0; i < tm; i++) {
    L(`let r${i} = rb + ${rowOf(i)};`);
    if (vecC) {
      for (let j = 0; j < tn; j += 4) {
        const c = `cb + ${colOf(j)}`;
        const v = `vec4<f32>(c${i}_${j}, c${i}_${j + 1}, c${i}_${j + 2}, c${i}_${j + 3})`;
        L(`if (r${i} < ${M}u && ${c} < ${N}u) { C[(oc + r${i} * ${N}u + ${c}) >> 2u] = ${v}; }`);
      }
    } else {
      for (let j = 0; j < tn; j++) {
        const c = `cb + ${colOf(j)}`;
        const idx = `oc + r${i} * ${N}u + ${c}`;
        const store = epilogue ? epilogue.call(idx, `c${i}_${j}`) : storeF32("C", out.dtype, idx, `c${i}_${j}`);
        L(`if (r${i} < ${M}u && ${c} < ${N}u) { ${store} }`);
      }
    }
  }
  const code = `${head.join("\n")}
@compute @workgroup_size(${wgX}, ${wgY})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
${body.join("\n")}
}`;
  return {
    launches: [{
      code,
      bindings: [{ input: 0 }, { input: 1 }, ...(epilogue ? epilogue.bindings : [cBinding])],
      workgroups: grid(Math.max(1, T), ctx.maxWorkgroupsPerDim),
    }],
  };
}
