/**
 * Causal self-attention as one fused op family (flash-attention style): `attention` gives the output
 * and the row log-sum-exp; its gradient is the `attention_bwd` op, which recomputes the probabilities
 * from the log-sum-exp, so no L×L matrix is ever kept.
 *
 * Layout is the one a projection reshaped gives, no transposes: q [B, L, Hq, D], k and v [B, L, Hkv, D],
 * with grouped-query heads (query head h reads kv head floor(h / (Hq / Hkv))).
 *
 * Visibility of key j from query i (all that apply):
 * - causal: j <= i;
 * - window W: i - j < W (sliding window; with causal, the W most recent keys including i itself);
 * - segments: segments[b, j] == segments[b, i] (padding: pad tokens 0, real tokens 1; packing: 1, 2, 3...).
 *
 * Scores: s = scale · q·k, then with softcap c: s = c · tanh(s / c) (Gemma 2).
 * @module
 */
import { defineOp, type RefTensor, registerOps } from "../op.ts";
import { graphOf, type Tensor } from "../graph.ts";
import type { TensorInfo } from "../types.ts";
import { expand } from "./shape.ts";

/** Attributes shared by `attention` and `attention_bwd`. */
export interface AttentionAttrs extends Record<string, unknown> {
  /** Multiplies q·k. */
  scale: number;
  /** Key j visible from query i only if j <= i. */
  causal: boolean;
  /** Sliding window: key j visible from query i only if i - j < window; 0 = no window. */
  window: number;
  /** Logit soft-capping s = softcap · tanh(s / softcap); 0 = none. */
  softcap: number;
  /** Whether a segments input [B, L] i32 follows q, k, v (attention) or dO (attention_bwd). */
  segmented: boolean;
}

/** Attributes of `attention_bwd`: those of the forward, and whether a dLSE input comes last. */
export interface AttentionBwdAttrs extends AttentionAttrs {
  /** Whether the gradient of the log-sum-exp output [B, Hq, L] is the last input. */
  dlse: boolean;
}

/** Resolved sizes of an attention. */
export interface AttentionDims {
  B: number;
  L: number;
  Hq: number;
  Hkv: number;
  D: number;
}

/** Sizes of an attention from q, k, v (and segments) infos; throws saying what was expected. */
export function attentionDims(q: TensorInfo, k: TensorInfo, v: TensorInfo, seg?: TensorInfo): AttentionDims {
  if (q.shape.length !== 4 || k.shape.length !== 4 || v.shape.length !== 4) {
    throw new Error("q, k, v must be [B, L, H, D] (rank 4)");
  }
  const [B, L, Hq, D] = q.shape;
  const Hkv = k.shape[2];
  if (k.shape.join() !== v.shape.join()) {
    throw new Error(`k and v must have one shape, got [${k.shape.join(", ")}] and [${v.shape.join(", ")}]`);
  }
  if (k.shape[0] !== B || k.shape[1] !== L || k.shape[3] !== D) {
    throw new Error(`k and v must be [${B}, ${L}, Hkv, ${D}] to match q, got [${k.shape.join(", ")}]`);
  }
  if (Hkv < 1 || Hq % Hkv !== 0) throw new Error(`query heads (${Hq}) must be a multiple of kv heads (${Hkv})`);
  for (const [n, t] of [["q", q], ["k", k], ["v", v]] as const) {
    if (t.dtype !== "f32") throw new Error(`${n} must be f32, got ${t.dtype}; cast first`);
  }
  if (seg && (seg.dtype !== "i32" || seg.shape.join() !== [B, L].join())) {
    throw new Error(`segments must be [${B}, ${L}] i32, got [${seg.shape.join(", ")}] ${seg.dtype}`);
  }
  return { B, L, Hq, Hkv, D };
}

/** Whether key j is visible from query i (segment ids si, sj). */
export function attends(i: number, j: number, si: number, sj: number, a: AttentionAttrs): boolean {
  return (!a.causal || j <= i) && (!a.window || i - j < a.window) && si === sj;
}

/** The score of one pair from q·k: scaled, then soft-capped; and d score / d(scale · q·k). */
export function capScore(dot: number, a: AttentionAttrs): [number, number] {
  const s = dot * a.scale;
  if (!a.softcap) return [s, 1];
  const t = Math.tanh(s / a.softcap);
  return [a.softcap * t, 1 - t * t];
}

/** f64 walk over visible (i, j) pairs of one (b, h): calls pair(i, j, s, dsda) for each. */
function forPairs(
  [q, k, , seg]: readonly (RefTensor | undefined)[],
  dims: AttentionDims,
  a: AttentionAttrs,
  b: number,
  h: number,
  i: number,
  pair: (j: number, s: number, dsda: number) => void,
): void {
  const { L, Hq, Hkv, D } = dims;
  const hk = Math.floor(h / (Hq / Hkv));
  const qo = ((b * L + i) * Hq + h) * D;
  for (let j = 0; j < L; j++) {
    if (!attends(i, j, seg ? seg.data[b * L + i] : 0, seg ? seg.data[b * L + j] : 0, a)) continue;
    const ko = ((b * L + j) * Hkv + hk) * D;
    let dot = 0;
    for (let d = 0; d < D; d++) dot += q!.data[qo + d] * k!.data[ko + d];
    const [s, dsda] = capScore(dot, a);
    pair(j, s, dsda);
  }
}

// q [B, L, Hq, D], k [B, L, Hkv, D], v [B, L, Hkv, D], segments? [B, L] i32 -> o [B, L, Hq, D], lse [B, Hq, L]
function attentionRef(ins: readonly RefTensor[], a: AttentionAttrs): Float64Array[] {
  const dims = attentionDims(ins[0], ins[1], ins[2], a.segmented ? ins[3] : undefined);
  const { B, L, Hq, Hkv, D } = dims;
  const v = ins[2].data;
  const o = new Float64Array(B * L * Hq * D), lse = new Float64Array(B * Hq * L);
  const hg = Hq / Hkv;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      for (let i = 0; i < L; i++) {
        const js: number[] = [], ss: number[] = [];
        forPairs(ins, dims, a, b, h, i, (j, s) => (js.push(j), ss.push(s)));
        if (!js.length) continue; // no visible key: o = 0, lse = 0
        const m = Math.max(...ss);
        let l = 0;
        for (const s of ss) l += Math.exp(s - m);
        lse[(b * Hq + h) * L + i] = m + Math.log(l);
        const oo = ((b * L + i) * Hq + h) * D;
        js.forEach((j, n) => {
          const p = Math.exp(ss[n] - m) / l;
          const vo = ((b * L + j) * Hkv + Math.floor(h / hg)) * D;
          for (let d = 0; d < D; d++) o[oo + d] += p * v[vo + d];
        });
      }
    }
  }
  return [o, lse];
}

// q, k, v, o, lse, dO, segments?, dlse? -> dq [B, L, Hq, D], dk [B, L, Hkv, D], dv [B, L, Hkv, D]
// With P = exp(S - lse): dV = Pᵀ·dO, dP = dO·Vᵀ, dS = P ∘ (dP - Δ + dlse) with Δ_i = Σ_d dO_i·O_i,
// dA = dS ∘ ds/da, dQ = scale · dA·K, dK = scale · dAᵀ·Q.
function attentionBwdRef(ins: readonly RefTensor[], a: AttentionBwdAttrs): Float64Array[] {
  const [q, k, v, o, lse, dO] = ins;
  const seg = a.segmented ? ins[6] : undefined;
  const dlse = a.dlse ? ins[a.segmented ? 7 : 6] : undefined;
  const dims = attentionDims(q, k, v, seg);
  const { B, L, Hq, Hkv, D } = dims;
  const dq = new Float64Array(q.data.length),
    dk = new Float64Array(k.data.length),
    dv = new Float64Array(v.data.length);
  const hg = Hq / Hkv;
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < Hq; h++) {
      for (let i = 0; i < L; i++) {
        const qo = ((b * L + i) * Hq + h) * D;
        const li = (b * Hq + h) * L + i;
        let delta = dlse ? -dlse.data[li] : 0;
        for (let d = 0; d < D; d++) delta += dO.data[qo + d] * o.data[qo + d];
        forPairs([q, k, v, seg], dims, a, b, h, i, (j, s, dsda) => {
          const ko = ((b * L + j) * Hkv + Math.floor(h / hg)) * D;
          const p = Math.exp(s - lse.data[li]);
          let dp = 0;
          for (let d = 0; d < D; d++) {
            dv[ko + d] += p * dO.data[qo + d];
            dp += dO.data[qo + d] * v.data[ko + d];
          }
          const da = p * (dp - delta) * dsda * a.scale;
          for (let d = 0; d < D; d++) {
            dq[qo + d] += da * k.data[ko + d];
            dk[ko + d] += da * q.data[qo + d];
          }
        });
      }
    }
  }
  return [dq, dk, dv];
}

function checkAttrs(a: AttentionAttrs): void {
  if (!(a.scale > 0) || !Number.isFinite(a.scale)) throw new Error(`scale must be a positive number, got ${a.scale}`);
  if (!Number.isInteger(a.window) || a.window < 0) {
    throw new Error(`window must be a positive integer (0 = none), got ${a.window}`);
  }
  if (!(a.softcap >= 0) || !Number.isFinite(a.softcap)) {
    throw new Error(`softcap must be >= 0 (0 = none), got ${a.softcap}`);
  }
}

registerOps([
  defineOp<AttentionAttrs>({
    name: "attention",
    infer: (ins, a) => {
      checkAttrs(a);
      if (ins.length !== (a.segmented ? 4 : 3)) {
        throw new Error(`expected ${a.segmented ? "q, k, v, segments" : "q, k, v"}, got ${ins.length} inputs`);
      }
      const { B, L, Hq } = attentionDims(ins[0], ins[1], ins[2], ins[3]);
      return [{ shape: [...ins[0].shape], dtype: "f32" }, { shape: [B, Hq, L], dtype: "f32" }];
    },
    ref: (ins, a) => attentionRef(ins, a),
    grad: (c) => {
      const [q, k, v, seg] = c.inputs;
      const [o, lse] = c.outputs;
      const dO = c.grads[0] ?? expand(o.graph.scalar(0), o.shape);
      const ins = [q, k, v, o, lse, dO];
      if (seg) ins.push(seg);
      if (c.grads[1]) ins.push(c.grads[1]);
      const attrs: AttentionBwdAttrs = { ...c.attrs, dlse: !!c.grads[1] };
      const [dq, dk, dv] = graphOf(...ins).apply("attention_bwd", ins, attrs);
      return [dq, dk, dv, undefined];
    },
  }),
  defineOp<AttentionBwdAttrs>({
    name: "attention_bwd",
    infer: (ins, a) => {
      checkAttrs(a);
      const n = 6 + (a.segmented ? 1 : 0) + (a.dlse ? 1 : 0);
      if (ins.length !== n) {
        throw new Error(`expected q, k, v, o, lse, dO[, segments][, dlse]: ${n} inputs, got ${ins.length}`);
      }
      const [q, k, v, o, lse, dO] = ins;
      const { B, L, Hq } = attentionDims(q, k, v, a.segmented ? ins[6] : undefined);
      for (const [name, t, shape] of [["o", o, q.shape], ["dO", dO, q.shape], ["lse", lse, [B, Hq, L]]] as const) {
        if (t.dtype !== "f32" || t.shape.join() !== shape.join()) {
          throw new Error(`${name} must be [${shape.join(", ")}] f32, got [${t.shape.join(", ")}] ${t.dtype}`);
        }
      }
      if (a.dlse && ins[n - 1].shape.join() !== lse.shape.join()) {
        throw new Error(`dlse must be [${lse.shape.join(", ")}], got [${ins[n - 1].shape.join(", ")}]`);
      }
      return [q, k, v].map((t) => ({ shape: [...t.shape], dtype: "f32" as const }));
    },
    ref: (ins, a) => attentionBwdRef(ins, a),
  }),
]);

/** Options of {@link attention}. */
export interface AttentionOptions {
  /** Multiplies q·k; default 1/√D. */
  scale?: number;
  /** Key j visible from query i only if j <= i; default true. */
  causal?: boolean;
  /** Sliding window: key j visible from query i only if i - j < window. */
  window?: number;
  /** Logit soft-capping: s = softcap · tanh(s / softcap) (Gemma 2). */
  softcap?: number;
  /**
   * i32 [B, L]: key j visible from query i only if segments[b, j] == segments[b, i]. Padding masks
   * (pad tokens 0, real tokens 1) and packed sequences (1, 2, 3, ...) both use it.
   */
  segments?: Tensor;
}

/**
 * Fused (flash) attention: q [B, L, Hq, D], k and v [B, L, Hkv, D] → o [B, L, Hq, D] and the row
 * log-sum-exp lse [B, Hq, L] of the scores (saved for the backward pass). Hq must be a multiple of
 * Hkv (grouped-query attention). A query row that sees no key gives o = 0 and lse = 0.
 *
 * @example
 * ```ts
 * const q = reshape(matmul(x, wq, { transB: true }), [B, L, Hq, D]);
 * const { o } = attention(q, k, v, { segments }); // causal by default
 * ```
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): { o: Tensor; lse: Tensor } {
  const attrs: AttentionAttrs = {
    scale: opts.scale ?? 1 / Math.sqrt(q.shape[q.rank - 1]),
    causal: opts.causal ?? true,
    window: opts.window ?? 0,
    softcap: opts.softcap ?? 0,
    segmented: !!opts.segments,
  };
  const ins = opts.segments ? [q, k, v, opts.segments] : [q, k, v];
  const [o, lse] = graphOf(...ins).apply("attention", ins, attrs);
  return { o, lse };
}
