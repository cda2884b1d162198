/**
 * WGSL flash-attention forward, and the pieces the backward kernels share (constants, row loads,
 * the visibility test, soft-capping, block sizes).
 *
 * Forward: one workgroup per (batch, query head, block of BQ queries), one thread per query row. The
 * thread keeps its (pre-scaled) q row, the output accumulator and the running max / sum in private
 * memory; the workgroup streams over blocks of BK keys, staging K and V in workgroup memory, with the
 * online softmax. Key blocks that no query of the block can see (causal, sliding window) are skipped,
 * so no L×L buffer exists and causal attention does half the work.
 *
 * Rows are held as vec4 chunks (D rounded up to D4 = ⌈D/4⌉ chunks, zero padded), so any D works;
 * shared memory per tile is 2·BK·4·D4 floats, and BK shrinks for big heads (D = 256 → BK ≤ 16).
 * @module
 */
import { type AttentionAttrs, attentionDims, type AttentionDims } from "../engine/graph/ops/attention.ts";
import type { TensorInfo } from "../engine/graph/types.ts";
import { declare, grid, type KernelContext, type LowerNode, type Lowered } from "./kernel.ts";
import { tilesForward } from "./attention_tiles.ts";

/** Block sizes of the attention kernels (`ctx.tuned.get("attention")` may override any of them). */
export interface AttentionTuning {
  /** Forward and dQ: queries per workgroup (= threads). */
  bq: number;
  /** Forward and dQ: keys per shared-memory tile. */
  bk: number;
  /** dK/dV: keys per workgroup (= threads). */
  bkv: number;
  /** dK/dV: queries per shared-memory tile. */
  bqt: number;
  /** Stage the streamed rows in workgroup memory (else every thread reads them from storage). */
  shared: boolean;
  /** Kernel form: "rows" (a thread per row, above) or "tiles" (register blocks, attention_tiles.ts). */
  form: "rows" | "tiles";
  /** Tiles form: query rows per forward / dQ workgroup. */
  tq: number;
  /** Tiles form: key rows per dK/dV workgroup. */
  tkv: number;
  /** Tiles form: row groups (threads = D4 · rg); 0 = chosen from D. */
  rg: number;
}

/** Defaults, measured on lavapipe (see bench/attention.ts). */
export const ATTENTION_DEFAULTS: AttentionTuning = {
  bq: 32,
  bk: 32,
  bkv: 32,
  bqt: 32,
  shared: true,
  form: "tiles",
  tq: 8,
  tkv: 8,
  rg: 0,
};

/** The block sizes to use for an attention of dims `d` (tile sizes clamped to workgroup memory). */
export function attentionTuning(ctx: KernelContext, d: AttentionDims, segmented: boolean): AttentionTuning {
  const t = { ...ATTENTION_DEFAULTS, ...(ctx.tuned.get("attention") as Partial<AttentionTuning> | undefined) };
  const lpow = 1 << Math.ceil(Math.log2(Math.max(1, d.L)));
  const d4 = Math.ceil(d.D / 4);
  // Two row tiles of vec4 + a few words per row must fit the workgroup storage.
  const fit = (rows: number, perRow: number) => {
    let r = Math.min(rows, lpow, Math.floor(ctx.maxWorkgroupStorage / (32 * d4 + perRow)));
    r = 1 << Math.floor(Math.log2(Math.max(1, r)));
    return r;
  };
  const threads = (n: number) => Math.max(1, Math.min(n, lpow, ctx.maxInvocations, 256));
  const seg = segmented ? 4 : 0;
  // Tiles: about 16 threads (D4 · rg), rg a power of two dividing the row blocks.
  const rg = t.rg || Math.max(1, Math.min(t.tq, t.tkv, 1 << Math.floor(Math.log2(Math.max(1, 16 / d4)))));
  const rows = (n: number) => Math.max(rg, Math.ceil(Math.min(n, lpow) / rg) * rg);
  return {
    ...t,
    bq: threads(t.bq),
    bk: fit(t.bk, seg),
    bkv: threads(t.bkv),
    bqt: fit(t.bqt, 8 + seg),
    tq: rows(t.tq),
    tkv: rows(t.tkv),
    rg: Math.min(rg, Math.floor(ctx.maxInvocations / d4)),
  };
}

/** WGSL constants and helpers common to the attention kernels. */
export function attentionPrelude(d: AttentionDims, a: AttentionAttrs, rowBuffers: readonly string[]): string {
  const d4 = Math.ceil(d.D / 4);
  const even = d.D % 4 === 0;
  const rows = rowBuffers.map((n) =>
    even
      ? `fn ld_${n}(o: u32, c: u32) -> vec4<f32> {
  let x = o + 4u * c;
  return vec4<f32>(${n}[x], ${n}[x + 1u], ${n}[x + 2u], ${n}[x + 3u]);
}`
      : `fn ld_${n}(o: u32, c: u32) -> vec4<f32> {
  var r = vec4<f32>(0.0);
  for (var e = 0u; e < 4u; e++) { if (4u * c + e < D) { r[e] = ${n}[o + 4u * c + e]; } }
  return r;
}`
  ).join("\n");
  return `const B = ${d.B}u;
const L = ${d.L}u;
const D = ${d.D}u;
const D4 = ${d4}u;
const HQ = ${d.Hq}u;
const HKV = ${d.Hkv}u;
const GRP = ${d.Hq / d.Hkv}u;
const SCALE = ${f32(a.scale)};
const SOFTCAP = ${f32(a.softcap || 1)};
const WIN = ${a.window}u;
const NEG = -1e30;
const HALF_NEG = -5e29;
${rows}
// tanh without overflow for any |u|
fn tanh_safe(u: f32) -> f32 {
  let t = exp(-2.0 * abs(u));
  return sign(u) * (1.0 - t) / (1.0 + t);
}`;
}

/** Stores the first D components of chunk c of a row (D need not be a multiple of 4). */
export function storeRow(buf: string, d: number, o: string, val: string): string {
  if (d % 4 === 0) {
    return `{ let x = ${o} + 4u * c; let y = ${val}; ${buf}[x] = y.x; ${buf}[x + 1u] = y.y; ${buf}[x + 2u] = y.z; ${buf}[x + 3u] = y.w; }`;
  }
  return `{ let y = ${val}; for (var e = 0u; e < 4u; e++) { if (4u * c + e < D) { ${buf}[${o} + 4u * c + e] = y[e]; } } }`;
}

/**
 * WGSL boolean: key `j` visible from query `i` (both u32, j < L checked here); `si`, `sj` are the
 * segment ids (ignored when unsegmented).
 */
export function visibleExpr(a: AttentionAttrs, i: string, j: string, si: string, sj: string): string {
  const parts = [`${j} < L`];
  if (a.causal) parts.push(`${j} <= ${i}`);
  if (a.window) parts.push(`${i} < ${j} + WIN`);
  if (a.segmented) parts.push(`${si} == ${sj}`);
  return parts.join(" && ");
}

/** WGSL statements turning `x` (scale · q·k) into score `s` and `dsda` = ds/dx. */
export function scoreCode(a: AttentionAttrs, x: string): string {
  if (!a.softcap) return `let s = ${x}; let dsda = 1.0;`;
  return `let th = tanh_safe(${x} / SOFTCAP); let s = SOFTCAP * th; let dsda = 1.0 - th * th;`;
}

/** The key range [start, end) any query of the block [q0, q0 + bq) can see, as WGSL u32 expressions. */
export function keyRange(a: AttentionAttrs, q0: string, bq: number): { start: string; end: string } {
  return {
    start: a.window ? `select(0u, ${q0} + 1u - WIN, ${q0} + 1u > WIN)` : "0u",
    end: a.causal ? `min(L, ${q0} + ${bq}u)` : "L",
  };
}

/** Workgroup tiles of `rows` vec4 rows named `names` (and `segt` when segmented). */
export function tileDecl(names: readonly string[], rows: number, d: number, segmented: boolean): string {
  const n = rows * Math.ceil(d / 4);
  return [...names.map((x) => `var<workgroup> ${x}: array<vec4<f32>, ${n}>;`), segmented ? `var<workgroup> segt: array<i32, ${rows}>;` : ""].join("\n");
}

/**
 * Cooperative load of K and V rows [r0, r0 + rows) of kv head `hk` into tiles kt, vt (and segment ids
 * into segt), by `threads` threads, then a barrier. Rows past L repeat row L - 1 (masked anyway).
 */
export function tileLoad(a: AttentionAttrs, r0: string, rows: string, threads: string): string {
  return `for (var e = lid.x; e < ${rows} * D4; e += ${threads}) {
      let ko = ((b * L + min(${r0} + e / D4, L - 1u)) * HKV + hk) * D;
      kt[e] = ld_K(ko, e % D4);
      vt[e] = ld_V(ko, e % D4);
    }
    ${a.segmented ? `for (var e = lid.x; e < ${rows}; e += ${threads}) { segt[e] = SEG[b * L + min(${r0} + e, L - 1u)]; }` : ""}
    workgroupBarrier();`;
}

/** A float as a WGSL f32 literal. */
export function f32(x: number): string {
  const s = String(Math.fround(x));
  return /[.e]/.test(s) ? s : `${s}.0`;
}

/** Splits the inputs of an attention-family node: q, k, v, and the segments info if any. */
export function attentionInputs(inputs: readonly TensorInfo[], a: AttentionAttrs, segAt: number) {
  const seg = a.segmented ? inputs[segAt] : undefined;
  return { dims: attentionDims(inputs[0], inputs[1], inputs[2], seg), seg };
}

/** Lowering of `attention`: q, k, v[, segments] → o, lse (one launch). */
export function lowerAttention(node: LowerNode<AttentionAttrs>, ctx: KernelContext): Lowered {
  const a = node.attrs;
  const { dims } = attentionInputs(node.inputs, a, 3);
  const tune = attentionTuning(ctx, dims, a.segmented);
  if (tune.form === "tiles") return { launches: [tilesForward(dims, a, { rows: tune.tq, rg: tune.rg }, ctx)] };
  const { bq, bk, shared } = tune;
  const kAt = shared ? "kt[r * D4 + c]" : "ld_K(kro, c)";
  const vAt = shared ? "vt[r * D4 + c]" : "ld_V(kro, c)";
  const segAt = shared ? "segt[r]" : "SEG[b * L + min(j, L - 1u)]";
  const kRow = shared ? "" : "let kro = ((b * L + min(kb + r, L - 1u)) * HKV + hk) * D;";
  const nqb = Math.ceil(dims.L / bq);
  const nwg = nqb * dims.Hq * dims.B;
  const kr = keyRange(a, "q0", bq);
  const binds: [string, "f32" | "i32"][] = [["Q", "f32"], ["K", "f32"], ["V", "f32"]];
  if (a.segmented) binds.push(["SEG", "i32"]);
  binds.push(["O", "f32"], ["LSE", "f32"]);
  const code = `${declare(binds)}
${attentionPrelude(dims, a, ["Q", "K", "V"])}
const BQ = ${bq}u;
const BK = ${bk}u;
${shared ? tileDecl(["kt", "vt"], bk, dims.D, a.segmented) : ""}

@compute @workgroup_size(${bq})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let w = wid.x + wid.y * nwg.x;
  if (w >= ${nwg}u) { return; }
  let q0 = (w % ${nqb}u) * BQ;
  let h = (w / ${nqb}u) % HQ;
  let b = w / ${nqb * dims.Hq}u;
  let hk = h / GRP;
  let i = q0 + lid.x;
  let valid = i < L;
  let ii = min(i, L - 1u);
  let qo = ((b * L + ii) * HQ + h) * D;
  var q: array<vec4<f32>, D4>;
  var acc: array<vec4<f32>, D4>;
  for (var c = 0u; c < D4; c++) {
    q[c] = ld_Q(qo, c) * SCALE;
    acc[c] = vec4<f32>(0.0);
  }
  ${a.segmented ? "let si = SEG[b * L + ii];" : ""}
  var m = NEG;
  var l = 0.0;
  var sc: array<f32, ${bk}>;
  let kEnd = ${kr.end};
  for (var kb = (${kr.start} / BK) * BK; kb < kEnd; kb += BK) {
    ${shared ? tileLoad(a, "kb", "BK", "BQ") : ""}
    // S = q·Kᵀ for the block, q chunk outer so each chunk is loaded once per block.
    for (var r = 0u; r < BK; r++) { sc[r] = 0.0; }
    for (var c = 0u; c < D4; c++) {
      let qc = q[c];
      for (var r = 0u; r < BK; r++) {
        ${kRow}
        sc[r] += dot(qc, ${kAt});
      }
    }
    var mb = m;
    for (var r = 0u; r < BK; r++) {
      let j = kb + r;
      ${scoreCode(a, "sc[r]")}
      let x = select(NEG, s, valid && ${visibleExpr(a, "i", "j", "si", segAt)});
      sc[r] = x;
      mb = max(mb, x);
    }
    // Online softmax: rescale, then O += P·V (masked keys get p = 0; an all-masked row stays 0).
    let alpha = exp(m - mb);
    l = l * alpha;
    for (var r = 0u; r < BK; r++) {
      let p = select(0.0, exp(sc[r] - mb), sc[r] > HALF_NEG);
      sc[r] = p;
      l += p;
    }
    for (var c = 0u; c < D4; c++) {
      var o = acc[c] * alpha;
      for (var r = 0u; r < BK; r++) {
        ${kRow}
        o += sc[r] * ${vAt};
      }
      acc[c] = o;
    }
    m = mb;
    ${shared ? "workgroupBarrier();" : ""}
  }
  if (valid) {
    let inv = select(0.0, 1.0 / l, l > 0.0);
    for (var c = 0u; c < D4; c++) ${storeRow("O", dims.D, "qo", "acc[c] * inv")}
    LSE[(b * HQ + h) * L + i] = select(0.0, m + log(l), l > 0.0);
  }
}`;
  const bindings = [{ input: 0 }, { input: 1 }, { input: 2 }, ...(a.segmented ? [{ input: 3 }] : []), { output: 0 }, {
    output: 1,
  }];
  return { launches: [{ code, bindings, workgroups: grid(nwg, ctx.maxWorkgroupsPerDim) }] };
}
