/**
 * WGSL flash-attention forward, and the pieces the backward kernels share (tuning, constants, row
 * loads, the visibility test, soft-capping).
 *
 * Forward: one workgroup per (batch, query head, block of BQ·TM queries); thread t owns the TM query
 * rows q0 + k·BQ + t, keeping each (pre-scaled) q row, its output accumulator and its running max
 * and sum in private memory. The workgroup streams over the keys BK at a time with the online
 * softmax: the BK keys of a step are unrolled into registers (TM·BK scores), so every K or V chunk
 * loaded serves TM rows. Key blocks no query of the block can see (causal, sliding window) are
 * skipped, so no L×L buffer exists and causal attention does about half the work.
 *
 * Measured on lavapipe, loads dominate (without the K/V loads the kernel ran ~3x faster): hence rows
 * as vec4 (one load per 4 floats) and TM rows a thread. Staging each step's K/V rows in workgroup
 * memory (`shared`) ran as fast there as reading them straight from storage and builds its
 * pipeline ~3x faster (lavapipe's compile time grows with the unrolled loads), so it is the default;
 * it is also the form GPUs want.
 *
 * Rows are vec4 chunks (D4 = ⌈D/4⌉ chunks, the tail zero padded), so any D works; vec4 storage
 * arrays are used when D is a multiple of 4, scalar guarded loads otherwise.
 * @module
 */
import { type AttentionAttrs, type AttentionDims, attentionDims } from "../engine/graph/ops/attention.ts";
import type { DType, TensorInfo } from "../engine/graph/types.ts";
import { type BindingRef, grid, type KernelContext, type Launch, type Lowered, type LowerNode } from "./kernel.ts";

/** Block sizes of the attention kernels (`ctx.tuned.get("attention")` may override any of them). */
export interface AttentionTuning {
  /** Forward and dQ: threads per workgroup. */
  bq: number;
  /** Forward and dQ: query rows per thread (a workgroup owns bq·tm queries). */
  tm: number;
  /** Forward and dQ: keys per step (unrolled). */
  bk: number;
  /** dK/dV: threads per workgroup. */
  bkv: number;
  /** dK/dV: key rows per thread. */
  tn: number;
  /** dK/dV: queries per step (unrolled). */
  bqt: number;
  /** Stage each step's rows in workgroup memory (else every thread reads them from storage). */
  shared: boolean;
}

/** Defaults, measured on lavapipe (see bench/attention.ts). */
export const ATTENTION_DEFAULTS: AttentionTuning = { bq: 32, tm: 4, bk: 8, bkv: 32, tn: 4, bqt: 8, shared: true };

/**
 * Defaults for short sequences (L <= 64): little work, so pipeline build time dominates, and on
 * lavapipe it grows with the unrolling (about 3 s for the three big kernels here against 9 s).
 */
export const ATTENTION_SHORT: AttentionTuning = { bq: 32, tm: 1, bk: 4, bkv: 32, tn: 1, bqt: 4, shared: true };

/** The block sizes for an attention of dims `d`: defaults, tuned overrides, clamped to the adapter and L. */
export function attentionTuning(ctx: KernelContext, d: AttentionDims): AttentionTuning {
  const base = d.L <= 64 ? ATTENTION_SHORT : ATTENTION_DEFAULTS;
  const t = { ...base, ...(ctx.tuned.get("attention") as Partial<AttentionTuning> | undefined) };
  const d4 = Math.ceil(d.D / 4);
  const pow2 = (n: number) => 1 << Math.floor(Math.log2(Math.max(1, n)));
  const lpow = 1 << Math.ceil(Math.log2(Math.max(1, d.L)));
  // Private rows per thread: keep TM·D4 (and TN·D4) at most 64 chunks (D = 256 → one row a thread).
  const rowsPerThread = (n: number) => Math.max(1, Math.min(pow2(n), pow2(64 / d4)));
  const tm = rowsPerThread(t.tm), tn = rowsPerThread(t.tn);
  const threads = (n: number, per: number) =>
    Math.max(1, Math.min(pow2(n), pow2(Math.max(1, lpow / per)), pow2(ctx.maxInvocations), 256));
  // Shared tiles: two tiles of `rows` vec4 rows must fit workgroup storage.
  const fit = (n: number) =>
    t.shared ? Math.max(1, Math.min(n, pow2(ctx.maxWorkgroupStorage / (32 * d4 + 4)))) : Math.max(1, n);
  return {
    bq: threads(t.bq, tm),
    tm,
    bk: fit(Math.min(t.bk, 32)),
    bkv: threads(t.bkv, tn),
    tn,
    bqt: fit(Math.min(t.bqt, 32)),
    shared: t.shared,
  };
}

/** One storage binding of an attention launch; `row` buffers hold [.., D] rows read as vec4 chunks. */
export interface AttnBind {
  name: string;
  ref: BindingRef;
  dtype?: DType;
  row?: boolean;
}

/**
 * The WGSL head of an attention launch: bindings (all `read_write`; row buffers as vec4 arrays when
 * D % 4 == 0), the shape constants, per-row-buffer load / store helpers and tanh.
 * `ld_X(o, c)` reads chunk c of the row at element offset o; `st_X(o, c, v)` writes it.
 */
export function attentionHead(d: AttentionDims, a: AttentionAttrs, binds: readonly AttnBind[]): string {
  const vec = d.D % 4 === 0;
  const decl = binds.map((x, i) => {
    const t = x.row && vec ? "vec4<f32>" : x.dtype === "i32" ? "i32" : "f32";
    return `@group(0) @binding(${i}) var<storage, read_write> ${x.name}: array<${t}>;`;
  });
  const helpers = binds.filter((x) => x.row).map(({ name: n }) =>
    vec
      ? `fn ld_${n}(o: u32, c: u32) -> vec4<f32> { return ${n}[(o >> 2u) + c]; }
fn st_${n}(o: u32, c: u32, v: vec4<f32>) { ${n}[(o >> 2u) + c] = v; }`
      : `fn ld_${n}(o: u32, c: u32) -> vec4<f32> {
  var r = vec4<f32>(0.0);
  for (var e = 0u; e < 4u; e++) { if (4u * c + e < D) { r[e] = ${n}[o + 4u * c + e]; } }
  return r;
}
fn st_${n}(o: u32, c: u32, v: vec4<f32>) {
  for (var e = 0u; e < 4u; e++) { if (4u * c + e < D) { ${n}[o + 4u * c + e] = v[e]; } }
}`
  );
  return `${decl.join("\n")}
const B = ${d.B}u;
const L = ${d.L}u;
const D = ${d.D}u;
const D4 = ${Math.ceil(d.D / 4)}u;
const HQ = ${d.Hq}u;
const HKV = ${d.Hkv}u;
const GRP = ${d.Hq / d.Hkv}u;
const SCALE = ${f32(a.scale)};
const SOFTCAP = ${f32(a.softcap || 1)};
const WIN = ${a.window}u;
const NEG = -1e30;
const HALF_NEG = -5e29;
${helpers.join("\n")}
// tanh without overflow for any |u|
fn tanh_safe(u: f32) -> f32 {
  let t = exp(-2.0 * abs(u));
  return sign(u) * (1.0 - t) / (1.0 + t);
}`;
}

/** A launch from its bindings, body and workgroup count. */
export function attentionLaunch(
  d: AttentionDims,
  a: AttentionAttrs,
  binds: readonly AttnBind[],
  body: string,
  workgroups: number,
  ctx: KernelContext,
): Launch {
  return {
    code: `${attentionHead(d, a, binds)}\n${body}`,
    bindings: binds.map((x) => x.ref),
    workgroups: grid(workgroups, ctx.maxWorkgroupsPerDim),
  };
}

/** `@compute` entry with `t` threads and the usual builtins. */
export function entry(t: number): string {
  return `@compute @workgroup_size(${t})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>)`;
}

/**
 * WGSL boolean: key `j` visible from query `i` (u32; both < L checked here); `si`, `sj` the segment
 * ids (unused when unsegmented).
 */
export function visibleExpr(a: AttentionAttrs, i: string, j: string, si: string, sj: string): string {
  const parts = [`${i} < L`, `${j} < L`];
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

/** The keys [start, end) any query of the block [q0, q0 + n) can see, as WGSL u32 expressions. */
export function keyRange(a: AttentionAttrs, q0: string, n: number): { start: string; end: string } {
  return {
    start: a.window ? `select(0u, ${q0} + 1u - WIN, ${q0} + 1u > WIN)` : "0u",
    end: a.causal ? `min(L, ${q0} + ${n}u)` : "L",
  };
}

/**
 * Code for the rows [r0, r0 + n) streamed in one step (keys for forward/dQ, queries for dK/dV):
 * `pre` computes element offsets `ro<r>` (and loads the tiles when shared), `at(buf, r)` reads chunk
 * c of row r of buffer `buf`, `post` ends the step.
 */
export function stepRows(
  shared: boolean,
  n: number,
  r0: string,
  offset: (row: string) => string,
  bufs: readonly string[],
  threads: number,
): { decl: string; pre: string; at: (buf: string, r: number) => string; post: string } {
  const R = [...Array(n).keys()];
  const offs = R.map((r) => `let ro${r} = ${offset(`min(${r0} + ${r}u, L - 1u)`)};`).join("\n    ");
  if (!shared) return { decl: "", pre: offs, at: (buf, r) => `ld_${buf}(ro${r}, c)`, post: "" };
  const decl = bufs.map((b) => `var<workgroup> t_${b}: array<vec4<f32>, ${n}u * D4>;`).join("\n");
  const pre = `${offs}
    for (var e = lid.x; e < ${n}u * D4; e += ${threads}u) {
      let ro = ${offset(`min(${r0} + e / D4, L - 1u)`)};
      ${bufs.map((b) => `t_${b}[e] = ld_${b}(ro, e % D4);`).join("\n      ")}
    }
    workgroupBarrier();`;
  return { decl, pre, at: (buf, r) => `t_${buf}[${r}u * D4 + c]`, post: "workgroupBarrier();" };
}

/** A float as a WGSL f32 literal. */
export function f32(x: number): string {
  const s = String(Math.fround(x));
  return /[.e]/.test(s) ? s : `${s}.0`;
}

/** Dims of an attention-family node from q, k, v and (if segmented) the segments input at `segAt`. */
export function nodeDims(inputs: readonly TensorInfo[], a: AttentionAttrs, segAt: number): AttentionDims {
  return attentionDims(inputs[0], inputs[1], inputs[2], a.segmented ? inputs[segAt] : undefined);
}

/** `n` numbers 0..n-1. */
export const range = (n: number): number[] => [...Array(n).keys()];

/** Lowering of `attention`: q, k, v[, segments] → o, lse (one launch). */
export function lowerAttention(node: LowerNode<AttentionAttrs>, ctx: KernelContext): Lowered {
  const a = node.attrs;
  const d = nodeDims(node.inputs, a, 3);
  const { bq, tm, bk, shared } = attentionTuning(ctx, d);
  const nq = bq * tm;
  const nqb = Math.ceil(d.L / nq);
  const nwg = nqb * d.Hq * d.B;
  const kr = keyRange(a, "q0", nq);
  const M = range(tm), R = range(bk);
  const binds: AttnBind[] = [
    { name: "Q", ref: { input: 0 }, row: true },
    { name: "K", ref: { input: 1 }, row: true },
    { name: "V", ref: { input: 2 }, row: true },
  ];
  if (a.segmented) binds.push({ name: "SEG", ref: { input: 3 }, dtype: "i32" });
  binds.push({ name: "O", ref: { output: 0 }, row: true }, { name: "LSE", ref: { output: 1 } });
  const st = stepRows(shared, bk, "kb", (j) => `((b * L + ${j}) * HKV + hk) * D`, ["K", "V"], bq);
  const body = `const BQ = ${bq}u;
${st.decl}
${entry(bq)} {
  let w = wid.x + wid.y * nwg.x;
  if (w >= ${nwg}u) { return; }
  let q0 = (w % ${nqb}u) * ${nq}u;
  let h = (w / ${nqb}u) % HQ;
  let b = w / ${nqb * d.Hq}u;
  let hk = h / GRP;
  var q: array<vec4<f32>, ${tm}u * D4>;
  var acc: array<vec4<f32>, ${tm}u * D4>;
  ${
    M.map((k) =>
      `let i${k} = q0 + ${k}u * BQ + lid.x;
  let qo${k} = ((b * L + min(i${k}, L - 1u)) * HQ + h) * D;
  var m${k} = NEG;
  var l${k} = 0.0;
  ${a.segmented ? `let si${k} = SEG[b * L + min(i${k}, L - 1u)];` : ""}`
    ).join("\n  ")
  }
  for (var c = 0u; c < D4; c++) {
    ${M.map((k) => `q[${k}u * D4 + c] = ld_Q(qo${k}, c) * SCALE; acc[${k}u * D4 + c] = vec4<f32>(0.0);`).join("\n    ")}
  }
  let kEnd = ${kr.end};
  for (var kb = ${kr.start}; kb < kEnd; kb += ${bk}u) {
    ${st.pre}
    // S = Q·Kᵀ for the step: TM×BK scores in registers; each K chunk loaded once for TM rows.
    ${M.map((k) => R.map((r) => `var s${k}_${r} = 0.0;`).join(" ")).join("\n    ")}
    for (var c = 0u; c < D4; c++) {
      ${M.map((k) => `let q${k} = q[${k}u * D4 + c];`).join(" ")}
      ${
    R.map((r) => `{ let kc = ${st.at("K", r)}; ${M.map((k) => `s${k}_${r} += dot(q${k}, kc);`).join(" ")} }`).join(
      "\n      ",
    )
  }
    }
    // Mask, soft-cap, online softmax (masked keys get p = 0; a row that sees nothing stays 0).
    ${a.segmented ? R.map((r) => `let sj${r} = SEG[b * L + min(kb + ${r}u, L - 1u)];`).join(" ") : ""}
    ${
    M.map((k) =>
      `var mb${k} = m${k};
    ${
        R.map((r) =>
          `{ ${scoreCode(a, `s${k}_${r}`)} s${k}_${r} = select(NEG, s, ${
            visibleExpr(a, `i${k}`, `kb + ${r}u`, `si${k}`, `sj${r}`)
          }); mb${k} = max(mb${k}, s${k}_${r}); }`
        ).join("\n    ")
      }
    let al${k} = exp(m${k} - mb${k});
    m${k} = mb${k};
    l${k} = l${k} * al${k};
    ${
        R.map((r) =>
          `let p${k}_${r} = select(0.0, exp(s${k}_${r} - mb${k}), s${k}_${r} > HALF_NEG); l${k} += p${k}_${r};`
        ).join("\n    ")
      }`
    ).join("\n    ")
  }
    for (var c = 0u; c < D4; c++) {
      ${R.map((r) => `let v${r} = ${st.at("V", r)};`).join(" ")}
      ${
    M.map((k) =>
      `acc[${k}u * D4 + c] = acc[${k}u * D4 + c] * al${k} + ${R.map((r) => `p${k}_${r} * v${r}`).join(" + ")};`
    ).join("\n      ")
  }
    }
    ${st.post}
  }
  ${
    M.map((k) =>
      `if (i${k} < L) {
    let inv = select(0.0, 1.0 / l${k}, l${k} > 0.0);
    for (var c = 0u; c < D4; c++) { st_O(qo${k}, c, acc[${k}u * D4 + c] * inv); }
    LSE[(b * HQ + h) * L + i${k}] = select(0.0, m${k} + log(l${k}), l${k} > 0.0);
  }`
    ).join("\n  ")
  }
}`;
  return { launches: [attentionLaunch(d, a, binds, body, nwg, ctx)] };
}
