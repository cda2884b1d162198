/**
 * WGSL of `matmul_q` and `dequant_q`: matmuls whose weight W [N, K] is stored quantized (NF4 / FP4 / int8 blocks,
 * engine/quant) and dequantized in registers as the tiled kernel reads it — W is never written out in f32.
 *
 * y [M, C] = x [M, R] · B [R, C] with B = Wᵀ (R = K, C = N) or, for the input gradient, B = W (R = N, C = K).
 * Each workgroup owns a BM×BN tile of y (BM = wgY·tm, BN = wgX·tn), each thread a tm×tn register block of
 * consecutive rows and columns, reading x and the codes straight from storage (the form that is fast on software
 * adapters, see kernels/matmul_gen.ts). Code paths:
 * - `x·Wᵀ`, whole words along K (4-bit: K and blocksize multiples of 8; int8: of 4): per column one word (8 or 4
 *   codes), one absmax and a table lookup per code feed 8 (4) k steps of every row of the block.
 * - `x·W`, whole words along the columns (the same conditions, tn a multiple of 8 or 4): per k step one word and one
 *   absmax per 8 (4) consecutive columns of the thread.
 * - any other shape: each weight element decoded on its own (word, shift, absmax).
 * With double quantization a first launch decodes the absmax of every block (code · absmax2 + offset, f32, as
 * bitsandbytes' `dequantize_blockwise` does) into a scratch buffer of N·K/blocksize floats.
 * @module
 */
import type { MatmulQAttrs } from "../engine/graph/ops/matmul_q.ts";
import { numel, type TensorInfo } from "../engine/graph/types.ts";
import { code4, dynamicMap, INV127 } from "../engine/quant/codes.ts";
import { NESTED_BLOCK } from "../engine/quant/blockwise.ts";
import { entry1d, grid, type KernelContext, type Launch, linearIndex, loadF32, type Lowering } from "./kernel.ts";
import { ADAPTER_KIND_KEY, type AdapterKind } from "./matmul.ts";
import { fl } from "./norm.ts";

/** Tuning parameters of the quantized matmul kernel. */
export interface MatmulQConfig {
  /** Threads of a workgroup along the columns and rows. */
  wgX: number;
  wgY: number;
  /** Rows and columns of a thread's register block. */
  tm: number;
  tn: number;
}

const decl = (i: number, name: string, type: string) =>
  `@group(0) @binding(${i}) var<storage, read_write> ${name}: array<${type}>;`;

/** `var<private> NAME: array<f32, n> = array<f32, n>(...)`: a code book WGSL can index at run time. */
function table(name: string, values: ArrayLike<number>): string {
  const list = Array.from(values, (v) => fl(v)).join(", ");
  return `var<private> ${name}: array<f32, ${values.length}> = array<f32, ${values.length}>(${list});`;
}

/** Codes a 32-bit word holds, and whether the weight is 4-bit. */
const perWord = (a: MatmulQAttrs) => (a.kind === "int8" ? 4 : 8);

/** WGSL expression of code u (0..perWord-1) of word `w` dequantized with absmax `s` (int8: `s` includes 1/127). */
function decode(a: MatmulQAttrs, w: string, u: number | string, s: string): string {
  if (a.kind === "int8") {
    const sh = typeof u === "number" ? `${24 - 8 * u}u` : `(24u - 8u * (${u}))`;
    return `(f32(bitcast<i32>(${w} << ${sh}) >> 24u) * ${s})`;
  }
  // byte u >> 1, high nibble first
  const sh = typeof u === "number"
    ? `${(u >> 1) * 8 + (u & 1 ? 0 : 4)}u`
    : `((((${u}) >> 1u) * 8u) + select(4u, 0u, ((${u}) & 1u) == 1u))`;
  return `(CODE[(${w} >> ${sh}) & 15u] * ${s})`;
}

/** Absmax of the block holding element `e` as the decode factor (int8: times 1/127 after the product). */
function scaleOf(a: MatmulQAttrs, e: string): string {
  return `AM[(${e}) / ${a.blocksize}u]`;
}

/** WGSL function decoding any element e of W (the generic path). */
function elementFn(a: MatmulQAttrs): string {
  if (a.kind === "int8") {
    return `fn wq(e: u32) -> f32 {
  let q = f32(bitcast<i32>(QW[e >> 2u] << (24u - 8u * (e & 3u))) >> 24u);
  return (q * AM[e / ${a.blocksize}u]) * ${fl(INV127)};
}`;
  }
  return `fn wq(e: u32) -> f32 {
  let sh = ((e >> 1u) & 3u) * 8u + select(4u, 0u, (e & 1u) == 1u);
  return CODE[(QW[e >> 3u] >> sh) & 15u] * AM[e / ${a.blocksize}u];
}`;
}

/**
 * The default config on an adapter kind for y [M, C]. Software adapters: one SIMD batch (8 threads) a workgroup and
 * the largest register block the shape fills (32×32 measured about twice 16×16 on lavapipe, at 8–16 s of shader
 * compile once), shrunk until there are 4 workgroups for the cores. GPUs: 128 threads of 4×8 blocks (untuned).
 */
export function defaultMatmulQConfig(kind: AdapterKind, M: number, C: number): MatmulQConfig {
  if (kind === "gpu") return M < 8 ? { wgX: 64, wgY: 1, tm: 1, tn: 8 } : { wgX: 16, wgY: 8, tm: 4, tn: 8 };
  let tm = [32, 16, 8, 4, 2, 1].find((t) => t <= M)!;
  let tn = C >= 256 ? 32 : C >= 64 ? 16 : 8;
  const groups = () => Math.ceil(M / tm) * Math.ceil(C / (8 * tn));
  while (groups() < 4 && tm > 4) tm /= 2;
  while (groups() < 4 && tn > 8) tn /= 2;
  return { wgX: 8, wgY: 1, tm, tn };
}

/** The launches of one quantized matmul with `cfg`; `am` is the binding of the f32 absmax. */
export function generateMatmulQ(
  x: TensorInfo,
  a: MatmulQAttrs,
  cfg: MatmulQConfig,
  ctx: KernelContext,
  am: Launch["bindings"][number],
): Launch {
  const { wgX, wgY, tm, tn } = cfg;
  if (wgX * wgY > ctx.maxInvocations) throw new Error(`matmul_q: ${wgX * wgY} threads > ${ctx.maxInvocations}`);
  const R = a.trans ? a.N : a.K, C = a.trans ? a.K : a.N, M = numel(x.shape) / R, K = a.K;
  const pw = perWord(a), bs = a.blocksize;
  const wordAligned = K % pw === 0 && bs % pw === 0;
  const mode = !wordAligned ? "element" : !a.trans ? "kword" : tn % pw === 0 ? "cword" : "element";
  const xVec = x.dtype === "f32" && R % 4 === 0;
  const yVec = tn % 4 === 0 && C % 4 === 0;
  const BM = wgY * tm, BN = wgX * tn;
  const tilesN = Math.ceil(C / BN), tiles = tilesN * Math.ceil(M / BM);
  const xType = x.dtype === "f32" ? (xVec ? "vec4<f32>" : "f32") : "u32";
  const head = [
    decl(0, "X", xType),
    decl(1, "QW", "u32"),
    decl(2, "AM", "f32"),
    decl(3, "Y", yVec ? "vec4<f32>" : "f32"),
  ];
  if (a.kind !== "int8") head.push(table("CODE", code4(a.kind)));
  if (mode === "element") head.push(elementFn(a));
  const body: string[] = [];
  const L = (s: string) => body.push(`  ${s}`);
  L(`let tile = wid.x + wid.y * nwg.x;`);
  L(`if (tile >= ${tiles}u) { return; }`);
  L(`let rb = (tile / ${tilesN}u) * ${BM}u + lid.y * ${tm}u;`);
  L(`let cb = (tile % ${tilesN}u) * ${BN}u + lid.x * ${tn}u;`);
  for (let i = 0; i < tm; i++) L(`let px${i} = min(rb + ${i}u, ${M - 1}u) * ${R}u;`);
  for (let i = 0; i < tm; i++) for (let j = 0; j < tn; j++) L(`var c${i}_${j} = 0.0;`);
  // x[i][r + u] as WGSL expressions, `U` steps at a time (vec4 loads where aligned).
  const xLoads = (U: number): string[][] => {
    const vals: string[][] = [];
    for (let i = 0; i < tm; i++) {
      vals.push([]);
      if (xVec) {
        for (let u = 0; u < U; u += 4) {
          L(`  let xv${i}_${u} = X[(px${i} + r${u ? ` + ${u}u` : ""}) >> 2u];`);
          for (const comp of ["x", "y", "z", "w"]) vals[i].push(`xv${i}_${u}.${comp}`);
        }
      } else {
        for (let u = 0; u < U; u++) {
          L(`  let xs${i}_${u} = ${loadF32("X", x.dtype, `px${i} + r${u ? ` + ${u}u` : ""}`)};`);
          vals[i].push(`xs${i}_${u}`);
        }
      }
    }
    return vals;
  };
  const int8 = a.kind === "int8";
  const scaled = (s: string) => (int8 ? `(${s} * ${fl(INV127)})` : s);
  if (mode === "kword") {
    // B[r][c] = W[c][r]: column c's codes for r..r+pw-1 are one word.
    for (let j = 0; j < tn; j++) L(`let pw${j} = min(cb + ${j}u, ${C - 1}u) * ${K}u;`);
    body.push(`  for (var r = 0u; r < ${R}u; r += ${pw}u) {`);
    const xs = xLoads(pw);
    for (let j = 0; j < tn; j++) {
      L(`  let w${j} = QW[(pw${j} + r) >> ${int8 ? 2 : 3}u];`);
      L(`  let s${j} = ${scaled(scaleOf(a, `pw${j} + r`))};`);
      for (let u = 0; u < pw; u++) L(`  let b${j}_${u} = ${decode(a, `w${j}`, u, `s${j}`)};`);
      for (let i = 0; i < tm; i++) {
        let e = `c${i}_${j}`;
        for (let u = 0; u < pw; u++) e = `fma(${xs[i][u]}, b${j}_${u}, ${e})`;
        L(`  c${i}_${j} = ${e};`);
      }
    }
    L(`}`);
  } else if (mode === "cword") {
    // B[r][c] = W[r][c]: a thread's columns come in groups of pw consecutive ones, one word each.
    const groups = tn / pw;
    for (let g = 0; g < groups; g++) L(`let pc${g} = min(cb + ${g * pw}u, ${C - pw}u);`);
    const U = !xVec ? 1 : R % 8 === 0 ? 8 : 4;
    body.push(`  for (var r = 0u; r < ${R}u; r += ${U}u) {`);
    const xs = xLoads(U);
    // Decode U rows of the thread's columns, then each accumulator once (U fused steps).
    for (let u = 0; u < U; u++) {
      for (let g = 0; g < groups; g++) {
        const e = `(r + ${u}u) * ${K}u + pc${g}`;
        L(`  let w${g}_${u} = QW[(${e}) >> ${int8 ? 2 : 3}u];`);
        L(`  let s${g}_${u} = ${scaled(scaleOf(a, e))};`);
        for (let v = 0; v < pw; v++) L(`  let b${g * pw + v}_${u} = ${decode(a, `w${g}_${u}`, v, `s${g}_${u}`)};`);
      }
    }
    for (let i = 0; i < tm; i++) {
      for (let j = 0; j < tn; j++) {
        let e = `c${i}_${j}`;
        for (let u = 0; u < U; u++) e = `fma(${xs[i][u]}, b${j}_${u}, ${e})`;
        L(`  c${i}_${j} = ${e};`);
      }
    }
    L(`}`);
  } else {
    for (let j = 0; j < tn; j++) L(`let pj${j} = min(cb + ${j}u, ${C - 1}u);`);
    body.push(`  for (var r = 0u; r < ${R}u; r++) {`);
    const xs = xLoads(xVec ? 0 : 1);
    for (let i = 0; i < tm; i++) if (xVec) L(`  let xe${i} = X[(px${i} + r) >> 2u][(px${i} + r) & 3u];`);
    for (let j = 0; j < tn; j++) {
      L(`  let b${j} = wq(${a.trans ? `r * ${K}u + pj${j}` : `pj${j} * ${K}u + r`});`);
      for (let i = 0; i < tm; i++) L(`  c${i}_${j} = fma(${xVec ? `xe${i}` : xs[i][0]}, b${j}, c${i}_${j});`);
    }
    L(`}`);
  }
  // Stores, guarded (consecutive columns: vec4 when C and tn are multiples of 4).
  for (let i = 0; i < tm; i++) {
    L(`if (rb + ${i}u < ${M}u) {`);
    for (let j = 0; j < tn; j += yVec ? 4 : 1) {
      const at = `(rb + ${i}u) * ${C}u + cb + ${j}u`;
      const v = yVec ? `vec4<f32>(c${i}_${j}, c${i}_${j + 1}, c${i}_${j + 2}, c${i}_${j + 3})` : `c${i}_${j}`;
      L(`  if (cb + ${j}u < ${C}u) { Y[${yVec ? `(${at}) >> 2u` : at}] = ${v}; }`);
    }
    L(`}`);
  }
  const code = `${head.join("\n")}
@compute @workgroup_size(${wgX}, ${wgY})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
${body.join("\n")}
}`;
  return {
    code,
    bindings: [{ input: 0 }, { input: 1 }, am, { output: 0 }],
    workgroups: grid(tiles, ctx.maxWorkgroupsPerDim),
  };
}

const WG = 64;

/** The launch decoding double-quantized absmax (inputs `first`..`first`+2) into scratch 0: nb f32. */
function nestedLaunch(a: MatmulQAttrs, first: number, ctx: KernelContext): Launch {
  const nb = Math.ceil((a.N * a.K) / a.blocksize);
  const code = `${decl(0, "QA", "u32")}
${decl(1, "A2", "f32")}
${decl(2, "OFF", "f32")}
${decl(3, "AM", "f32")}
${table("DYN", dynamicMap())}
${entry1d(WG)} {
  ${linearIndex(WG)}
  if (gid >= ${nb}u) { return; }
  let q = (QA[gid >> 2u] >> ((gid & 3u) * 8u)) & 255u;
  AM[gid] = DYN[q] * A2[gid / ${NESTED_BLOCK}u] + OFF[0];
}`;
  return {
    code,
    bindings: [{ input: first }, { input: first + 1 }, { input: first + 2 }, { scratch: 0 }],
    workgroups: grid(Math.ceil(nb / WG), ctx.maxWorkgroupsPerDim),
  };
}

/** The config a lowering uses (tuned under `matmul_q:<M>x<C>` when present, else the adapter default). */
export function pickMatmulQConfig(M: number, C: number, ctx: KernelContext): MatmulQConfig {
  const tuned = ctx.tuned.get(`matmul_q:${M}x${C}`) as MatmulQConfig | undefined;
  if (tuned && tuned.wgX * tuned.wgY <= ctx.maxInvocations) return tuned;
  return defaultMatmulQConfig((ctx.tuned.get(ADAPTER_KIND_KEY) as AdapterKind | undefined) ?? "cpu", M, C);
}

/** The matmul_q lowering (double quantization: absmax decoded first into a scratch buffer). */
export const matmulQLowering: Lowering<MatmulQAttrs> = ({ inputs, attrs: a }, ctx) => {
  const R = a.trans ? a.N : a.K, C = a.trans ? a.K : a.N, M = numel(inputs[0].shape) / R;
  const cfg = pickMatmulQConfig(M, C, ctx);
  if (!a.doubleQuant) return { launches: [generateMatmulQ(inputs[0], a, cfg, ctx, { input: 2 })] };
  const nb = Math.ceil((a.N * a.K) / a.blocksize);
  return {
    launches: [nestedLaunch(a, 2, ctx), generateMatmulQ(inputs[0], a, cfg, ctx, { scratch: 0 })],
    scratch: [nb * 4],
  };
};

/** dequant_q: one thread a word, writing its 8 (int8: 4) elements. */
const dequantQLowering: Lowering<MatmulQAttrs> = ({ attrs: a }, ctx) => {
  const n = a.N * a.K, pw = perWord(a), words = Math.ceil(n / pw);
  const code = `${decl(0, "QW", "u32")}
${decl(1, "AM", "f32")}
${decl(2, "Y", "f32")}
${a.kind === "int8" ? "" : table("CODE", code4(a.kind))}
${entry1d(WG)} {
  ${linearIndex(WG)}
  if (gid >= ${words}u) { return; }
  let w = QW[gid];
  for (var u = 0u; u < ${pw}u; u++) {
    let e = gid * ${pw}u + u;
    if (e < ${n}u) {
      let s = ${a.kind === "int8" ? `AM[e / ${a.blocksize}u]` : scaleOf(a, "e")};
      Y[e] = ${a.kind === "int8" ? `${decode(a, "w", "u", "s")} * ${fl(INV127)}` : decode(a, "w", "u", "s")};
    }
  }
}`;
  const am = a.doubleQuant ? { scratch: 0 } : { input: 1 };
  const main: Launch = {
    code,
    bindings: [{ input: 0 }, am, { output: 0 }],
    workgroups: grid(Math.ceil(words / WG), ctx.maxWorkgroupsPerDim),
  };
  if (!a.doubleQuant) return { launches: [main] };
  return { launches: [nestedLaunch(a, 1, ctx), main], scratch: [Math.ceil(n / a.blocksize) * 4] };
};

/** Lowerings of this family by op name. */
export const lowerings: Record<string, Lowering> = {
  matmul_q: matmulQLowering as Lowering,
  dequant_q: dequantQLowering as Lowering,
};
