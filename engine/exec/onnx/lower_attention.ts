/**
 * ONNX lowering of `attention` and `attention_bwd` as plain matmuls over an explicit score matrix:
 * q [B, L, Hq, D] is regrouped by kv head to [B, Hkv, G·L, D] (G = Hq / Hkv), so grouped-query
 * attention needs no copy of k and v; the visibility mask (causal, window, segments) is built once per
 * node from index ranges. On a CPU this is what a fused kernel would do anyway at these sizes.
 * @module
 */
import type { AttentionAttrs, AttentionBwdAttrs } from "../../graph/ops/attention.ts";
import type { OnnxBuilder } from "./builder.ts";
import type { OnnxLowering } from "./lower_types.ts";

interface Dims {
  B: number;
  L: number;
  Hq: number;
  Hkv: number;
  D: number;
  G: number;
}

/** q [B, L, Hq, D] → [B, Hkv, G·L, D] (query heads grouped under their kv head). */
function groupQ(b: OnnxBuilder, q: string, { B, L, Hkv, D, G }: Dims): string {
  return b.reshape(b.transpose(b.reshape(q, [B, L, Hkv, G, D]), [0, 2, 3, 1, 4]), [B, Hkv, G * L, D]);
}

/** [B, Hkv, G·L, D] → [B, L, Hq, D]. */
function ungroupQ(b: OnnxBuilder, x: string, { B, L, Hq, Hkv, D, G }: Dims): string {
  return b.reshape(b.transpose(b.reshape(x, [B, Hkv, G, L, D]), [0, 3, 1, 2, 4]), [B, L, Hq, D]);
}

/** Additive mask FLOAT [B, 1, 1, L, L]: 0 where key j is visible from query i, -inf elsewhere. */
function maskOf(b: OnnxBuilder, a: AttentionAttrs, seg: string | undefined, { B, L }: Dims): string | undefined {
  const idx = Array.from({ length: L }, (_, i) => i);
  const rows = b.i32s([L, 1], idx), cols = b.i32s([1, L], idx);
  let vis: string | undefined;
  const and = (m: string) => (vis = vis ? b.op1("And", [vis, m]) : m);
  if (a.causal) and(b.op1("LessOrEqual", [cols, rows]));
  if (a.window) and(b.op1("Less", [b.sub(rows, cols), b.i32(a.window)]));
  if (seg) and(b.op1("Equal", [b.reshape(seg, [B, L, 1]), b.reshape(seg, [B, 1, L])]));
  if (!vis) return undefined;
  const m = b.op1("Where", [vis, b.f32(0), b.f32(-Infinity)]);
  return b.reshape(b.op1("Expand", [m, b.i64([B, L, L])]), [B, 1, 1, L, L]);
}

/** Scores [B, Hkv, G, L, L] (scaled, soft-capped, masked) and, with softcap, tanh of the scaled scores. */
function scores(
  b: OnnxBuilder,
  qg: string,
  k: string,
  a: AttentionAttrs,
  mask: string | undefined,
  d: Dims,
): { s: string; t?: string } {
  const kT = b.transpose(k, [0, 2, 3, 1]); // [B, Hkv, D, L]
  let s = b.mul(b.op1("MatMul", [qg, kT]), b.f32(a.scale)); // [B, Hkv, G·L, L]
  let t: string | undefined;
  if (a.softcap) {
    t = b.op1("Tanh", [b.mul(s, b.f32(1 / a.softcap))]);
    s = b.mul(t, b.f32(a.softcap));
  }
  s = b.reshape(s, [d.B, d.Hkv, d.G, d.L, d.L]);
  return { s: mask ? b.add(s, mask) : s, t };
}

function dimsOf(q: readonly number[], k: readonly number[]): Dims {
  const [B, L, Hq, D] = q, Hkv = k[2];
  return { B, L, Hq, Hkv, D, G: Hq / Hkv };
}

/** The lowerings of this file. */
export const attentionLowerings: Record<string, OnnxLowering> = {
  // q, k, v, segments? -> o [B, L, Hq, D], lse [B, Hq, L]
  attention: ({ b, ins, inInfos, attrs }) => {
    const a = attrs as AttentionAttrs;
    const d = dimsOf(inInfos[0].shape, inInfos[1].shape);
    const { B, L, Hq, Hkv, G } = d;
    const mask = maskOf(b, a, a.segmented ? ins[3] : undefined, d);
    const { s } = scores(b, groupQ(b, ins[0], d), ins[1], a, mask, d);
    // One exp serves both outputs: p = e / Σe and lse = m + log Σe, with e = exp(s − m), m the row max.
    const m = b.reduce("Max", s, [-1], true);
    const e = b.op1("Exp", [b.sub(s, m)]);
    const z = b.reduce("Sum", e, [-1], true);
    const lse = b.reshape(b.add(m, b.op1("Log", [z])), [B, Hkv, G, L]);
    const p = b.reshape(b.div(e, z), [B, Hkv, G * L, L]);
    const v = b.transpose(ins[2], [0, 2, 1, 3]); // [B, Hkv, L, D]
    const o = b.op1("MatMul", [p, v]); // [B, Hkv, G·L, D]
    return [ungroupQ(b, o, d), b.reshape(lse, [B, Hq, L])];
  },
  // q, k, v, o, lse, dO, segments?, dlse? -> dq, dk, dv
  attention_bwd: ({ b, ins, inInfos, attrs }) => {
    const a = attrs as AttentionBwdAttrs;
    const d = dimsOf(inInfos[0].shape, inInfos[1].shape);
    const { B, L, Hkv, G } = d;
    const [q, k, v, o, lse, dO] = ins;
    const seg = a.segmented ? ins[6] : undefined;
    const dlse = a.dlse ? ins[a.segmented ? 7 : 6] : undefined;
    const mask = maskOf(b, a, seg, d);
    const qg = groupQ(b, q, d);
    const { s, t } = scores(b, qg, k, a, mask, d);
    const lse5 = b.reshape(lse, [B, Hkv, G, L, 1]);
    const p = b.reshape(b.op1("Exp", [b.sub(s, lse5)]), [B, Hkv, G * L, L]); // masked entries: exp(-inf) = 0
    const dOg = groupQ(b, dO, d), og = groupQ(b, o, d);
    const vT = b.transpose(v, [0, 2, 3, 1]); // [B, Hkv, D, L]
    const kk = b.transpose(k, [0, 2, 1, 3]); // [B, Hkv, L, D]
    const dv = b.op1("MatMul", [b.transpose(p, [0, 1, 3, 2]), dOg]); // [B, Hkv, L, D]
    const dp = b.op1("MatMul", [dOg, vT]); // [B, Hkv, G·L, L]
    let delta = b.reduce("Sum", b.mul(dOg, og), [-1], true); // [B, Hkv, G·L, 1]
    if (dlse) delta = b.sub(delta, b.reshape(dlse, [B, Hkv, G * L, 1]));
    let da = b.mul(b.mul(p, b.sub(dp, delta)), b.f32(a.scale));
    if (t) da = b.mul(da, b.sub(b.f32(1), b.mul(t, t)));
    const dq = b.op1("MatMul", [da, kk]); // [B, Hkv, G·L, D]
    const dk = b.op1("MatMul", [b.transpose(da, [0, 1, 3, 2]), qg]); // [B, Hkv, L, D]
    const back = (x: string) => b.transpose(x, [0, 2, 1, 3]); // [B, L, Hkv, D]
    return [ungroupQ(b, dq, d), back(dk), back(dv)];
  },
};
