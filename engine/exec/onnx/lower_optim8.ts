/**
 * ONNX lowering of `adamw_8bit` (bitsandbytes' 8-bit blockwise AdamW; the math and its sources are in
 * engine/quant/optim8.ts) with standard ops: the codes are shifted and masked out of the INT32 words, dequantized by
 * Gather from the code books, updated over [blocks, 256] (the last block padded as the CUDA kernel pads it: g = 0,
 * code1 = 128, code2 = 0), the new absmax is a ReduceMax per block, the new codes come from the kernel's 7-step binary
 * search (Gather / Greater / Where per step) and its midpoint rule, and are packed back four to a word.
 * @module
 */
import type { Adamw8bitAttrs } from "../../graph/ops/optim8.ts";
import { optimTail } from "../../graph/ops/optim.ts";
import { numel } from "../../graph/types.ts";
import { OPT8_BLOCK, optim8Maps } from "../../quant/optim8.ts";
import type { OnnxBuilder } from "./builder.ts";
import type { OnnxLowering } from "./lower_types.ts";
import { ONNX_TYPE } from "./proto.ts";

/** UINT32 vector constant. */
function u32s(b: OnnxBuilder, values: readonly number[]): string {
  return b.tensor(ONNX_TYPE.UINT32, [values.length], new Uint8Array(Uint32Array.from(values).buffer));
}

/** Flat x [n] padded with `pad` (a scalar of x's type) or cut to m elements. */
function fit(b: OnnxBuilder, x: string, n: number, m: number, pad: string): string {
  if (n === m) return x;
  if (n > m) return b.op1("Slice", [x, b.i64([0]), b.i64([m]), b.i64([0])]);
  return b.op1("Pad", [x, b.i64([0, m - n]), pad]);
}

/** The n codes of INT32 words [w] as INT32 [n]. */
function codesOf(b: OnnxBuilder, words: string, w: number, n: number): string {
  const u = b.reshape(b.cast(words, ONNX_TYPE.UINT32), [w, 1]);
  const sh = b.op1("BitShift", [u, u32s(b, [0, 8, 16, 24])], { direction: { s: "RIGHT" } });
  const bytes = b.reshape(b.op1("BitwiseAnd", [sh, u32s(b, [255])]), [4 * w]);
  return fit(b, b.cast(bytes, ONNX_TYPE.INT32), 4 * w, n, b.i32(0));
}

/** INT32 codes [n] packed four to an INT32 word (little-endian; the last word padded with 0). */
function packOf(b: OnnxBuilder, codes: string, n: number, w: number): string {
  const c = b.reshape(b.cast(fit(b, codes, n, 4 * w, b.i32(0)), ONNX_TYPE.INT64), [w, 4]);
  const sum = b.reduce("Sum", b.mul(c, b.i64sTensor([4], [1, 256, 65536, 16777216])), [1], false);
  // [0, 2^32) → the INT32 with the same bits
  const wrapped = b.sub(
    sum,
    b.op1("Where", [b.op1("GreaterOrEqual", [sum, b.i64s(2 ** 31)]), b.i64s(2 ** 32), b.i64s(0)]),
  );
  return b.cast(wrapped, ONNX_TYPE.INT32);
}

/** The kernel's quantize_2D over x (FLOAT, any shape): INT32 code indices. */
function search(b: OnnxBuilder, code: string, signed: boolean, x: string): string {
  let pivot = b.i32(127), lowerP = b.i32(0), upperP = b.i32(255);
  let lower = b.f32(signed ? -1 : 0), upper = b.f32(1);
  let val = b.op1("Gather", [code, pivot], { axis: { i: 0 } });
  for (let i = 64; i > 0; i >>= 1) {
    const gt = b.op1("Greater", [x, val]);
    lowerP = b.op1("Where", [gt, pivot, lowerP]);
    lower = b.op1("Where", [gt, val, lower]);
    upperP = b.op1("Where", [gt, upperP, pivot]);
    upper = b.op1("Where", [gt, upper, val]);
    pivot = b.add(pivot, b.op1("Where", [gt, b.i32(i), b.i32(-i)]));
    val = b.op1("Gather", [code, pivot], { axis: { i: 0 } });
  }
  const half = b.f32(0.5);
  const hi = b.op1("Where", [b.op1("Greater", [x, b.mul(b.add(upper, val), half)]), upperP, pivot]);
  const lo = b.op1("Where", [b.op1("Less", [x, b.mul(b.add(lower, val), half)]), lowerP, pivot]);
  return b.op1("Where", [b.op1("Greater", [x, val]), hi, lo]);
}

/** The lowerings of this file. */
export const optim8Lowerings: Record<string, OnnxLowering> = {
  // p, g, state1, state2, absmax1, absmax2, lr, step, gradScale?, ok? -> p', state1', state2', absmax1', absmax2'
  adamw_8bit: ({ b, ins, inInfos, attrs }) => {
    const { beta1, beta2, eps, weightDecay, gated } = attrs as Adamw8bitAttrs;
    const [p, g0, w1, w2, a1, a2, lr0, step0] = ins;
    const tail = optimTail(ins.length, 8, gated);
    const n = numel(inInfos[0].shape), nw = inInfos[2].shape[0], nb = inInfos[4].shape[0], N = nb * OPT8_BLOCK;
    const { qmap1, qmap2 } = optim8Maps();
    const q1 = b.f32s([256], qmap1), q2 = b.f32s([256], qmap2);
    const lr = b.reshape(lr0, []), step = b.reshape(step0, []);
    // correction1 = 1 − β1^t, correction2 = √(1 − β2^t), step_size = −lr·c2 / c1 (f32, as the kernel)
    const c1 = b.sub(b.f32(1), b.op1("Pow", [b.f32(beta1), step]));
    const c2 = b.op1("Sqrt", [b.sub(b.f32(1), b.op1("Pow", [b.f32(beta2), step]))]);
    const stepSize = b.div(b.mul(b.op1("Neg", [lr]), c2), c1);
    let g = b.reshape(g0, [n]);
    if (tail.scale !== undefined) g = b.mul(g, b.reshape(ins[tail.scale], []));
    const gp = b.reshape(fit(b, g, n, N, b.f32(0)), [nb, OPT8_BLOCK]);
    const codes = (w: string, pad: number) => fit(b, codesOf(b, w, nw, n), n, N, b.i32(pad));
    const deq = (q: string, w: string, pad: number, a: string) =>
      b.mul(
        b.reshape(b.op1("Gather", [q, codes(w, pad)], { axis: { i: 0 } }), [nb, OPT8_BLOCK]),
        b.reshape(a, [nb, 1]),
      );
    // (1 − β) in f32 from the f32 β, as the kernel computes it
    const r1 = Math.fround(1 - Math.fround(beta1)), r2 = Math.fround(1 - Math.fround(beta2));
    const s2 = b.add(b.mul(deq(q2, w2, 0, a2), b.f32(beta2)), b.mul(b.mul(b.f32(r2), gp), gp));
    const s1 = b.add(b.mul(deq(q1, w1, 128, a1), b.f32(beta1)), b.mul(b.f32(r1), gp));
    const max1 = b.reduce("Max", b.op1("Abs", [s1]), [1], true), max2 = b.reduce("Max", b.op1("Abs", [s2]), [1], true);
    // the param
    const flat = (s: string) => fit(b, b.reshape(s, [N]), N, n, b.f32(0));
    const denom = b.add(b.op1("Sqrt", [flat(s2)]), b.mul(c2, b.f32(eps)));
    let p2 = b.add(b.reshape(p, [n]), b.mul(stepSize, b.div(flat(s1), denom)));
    if (weightDecay > 0) p2 = b.mul(p2, b.sub(b.f32(1), b.mul(lr, b.f32(weightDecay))));
    p2 = b.reshape(p2, [...inInfos[0].shape]);
    // the codes: x = s / absmax (x = 0 where the block's absmax is 0)
    const safe = (m: string) => b.op1("Where", [b.op1("Equal", [m, b.f32(0)]), b.f32(1), m]);
    let k1 = search(b, q1, true, b.div(s1, safe(max1)));
    const neg = (x: string) => b.op1("Less", [x, b.f32(0)]);
    const flip = b.op1("Xor", [neg(b.op1("Gather", [q1, k1], { axis: { i: 0 } })), neg(s1)]);
    const toward = b.op1("Where", [b.op1("Greater", [s1, b.f32(0)]), b.i32(1), b.i32(-1)]);
    k1 = b.op1("Where", [flip, b.add(k1, toward), k1]);
    k1 = b.op1("Mod", [b.add(k1, b.i32(256)), b.i32(256)]);
    const k2 = search(b, q2, false, b.div(s2, safe(max2)));
    const pack = (k: string) => packOf(b, fit(b, b.reshape(k, [N]), N, n, b.i32(0)), n, nw);
    const next: [string, string][] = [
      [p2, p],
      [pack(k1), w1],
      [pack(k2), w2],
      [b.reshape(max1, [nb]), a1],
      [b.reshape(max2, [nb]), a2],
    ];
    if (tail.gate === undefined) return next.map(([x]) => x);
    const on = b.op1("Not", [b.op1("Equal", [b.reshape(ins[tail.gate], []), b.f32(0)])]);
    return next.map(([x, old]) => b.op1("Where", [on, x, old]));
  },
};
