/**
 * ONNX lowerings of the network ops: RMSNorm and LayerNorm (and their backward ops), embedding
 * gather and scatter-add, rotary embedding in f64 angles, and hash dropout with the engine's u32 hash.
 * @module
 */
import { dropoutThreshold, mix32 } from "../../graph/ops/dropout.ts";
import type { DropoutAttrs } from "../../graph/ops/dropout.ts";
import type { LayerNormAttrs, LayerNormBwdAttrs, RmsNormAttrs, RmsNormBwdAttrs } from "../../graph/ops/norm.ts";
import type { RopeAttrs } from "../../graph/ops/rope.ts";
import { numel, type TensorInfo } from "../../graph/types.ts";
import type { OnnxBuilder } from "./builder.ts";
import type { OnnxLowering } from "./lower_types.ts";
import { ONNX_TYPE } from "./proto.ts";

/** Sum over every axis but the last, of x [..., D] → [D]. */
function sumRows(b: OnnxBuilder, x: string, rank: number): string {
  if (rank === 1) return x;
  return b.reduce("Sum", x, Array.from({ length: rank - 1 }, (_, i) => i), false);
}

/** (x · c) mod 2^32 for 0 <= x < 2^32 in INT64 without overflow (c split in 16-bit halves). */
function mulMod32(b: OnnxBuilder, x: string, c: number): string {
  const lo = c & 0xffff, hi = Math.floor(c / 65536);
  const a = b.mul(x, b.i64s(lo));
  const h = b.op1("Mod", [b.mul(x, b.i64s(hi)), b.i64s(65536)], { fmod: { i: 0 } });
  return b.op1("Mod", [b.add(a, b.mul(h, b.i64s(65536))), b.i64s(2 ** 32)], { fmod: { i: 0 } });
}

/** The engine's mix32 (dropout.ts) on INT64 values in [0, 2^32). */
function mix32Onnx(b: OnnxBuilder, x: string): string {
  const shr = (v: string, n: number) => b.div(v, b.i64s(2 ** n));
  const xor = (u: string, v: string) => b.op1("BitwiseXor", [u, v]);
  x = xor(x, shr(x, 16));
  x = mulMod32(b, x, 0x7feb352d);
  x = xor(x, shr(x, 15));
  x = mulMod32(b, x, 0x846ca68b);
  return xor(x, shr(x, 16));
}

/** The lowerings of this file. */
/**
 * `base` [V, D] + embedding_bwd(ids, dOut): dOut's rows added into `base` at their ids in token order (ScatterND,
 * reduction add; out-of-range ids add nothing). With `base` a tied weight's other gradient, the sum needs no zeroed
 * [V, D] buffer and no separate add (lower.ts folds `add(x, embedding_bwd(...))` into this).
 */
export function embeddingScatterAdd(
  b: OnnxBuilder,
  base: string,
  [idsIn, dOut]: readonly string[],
  [idsInfo, dOutInfo]: readonly TensorInfo[],
  V: number,
): string {
  const T = numel(idsInfo.shape), D = dOutInfo.shape.at(-1)!;
  const ids = b.reshape(idsIn, [T]);
  const valid = b.op1("And", [b.op1("GreaterOrEqual", [ids, b.i32(0)]), b.op1("Less", [ids, b.i32(V)])]);
  const idx = b.reshape(b.cast(b.op1("Where", [valid, ids, b.i32(0)]), ONNX_TYPE.INT64), [T, 1]);
  const upd = b.mul(b.reshape(dOut, [T, D]), b.reshape(b.cast(valid, ONNX_TYPE.FLOAT), [T, 1]));
  return b.op1("ScatterND", [base, idx, upd], { reduction: { s: "add" } });
}

export const nnLowerings: Record<string, OnnxLowering> = {
  // x [..., D], w [D]? -> y [..., D], rstd [...]
  rms_norm: ({ b, ins, outInfos, attrs }) => {
    const { eps, offset } = attrs as RmsNormAttrs;
    const x = ins[0];
    const rstd = b.op1("Reciprocal", [b.op1("Sqrt", [b.add(b.reduce("Mean", b.mul(x, x), [-1], true), b.f32(eps))])]);
    let y = b.mul(x, rstd);
    if (ins[1]) y = b.mul(y, offset ? b.add(ins[1], b.f32(offset)) : ins[1]);
    return [y, b.reshape(rstd, outInfos[1].shape)];
  },
  // dy, x, rstd, w? -> dx?, dw?
  rms_norm_bwd: ({ b, ins, inInfos, attrs }) => {
    const { offset, dx, dw } = attrs as RmsNormBwdAttrs;
    const [dy, x, rstd0, w] = ins;
    const rank = inInfos[1].shape.length;
    const rstd = b.op1("Unsqueeze", [rstd0, b.i64([-1])]);
    const n = b.mul(x, rstd);
    const gy = w ? b.mul(dy, offset ? b.add(w, b.f32(offset)) : w) : dy;
    const outs: string[] = [];
    if (dx) outs.push(b.mul(rstd, b.sub(gy, b.mul(n, b.reduce("Mean", b.mul(gy, n), [-1], true)))));
    if (dw) outs.push(sumRows(b, b.mul(dy, n), rank));
    return outs;
  },
  // x [..., D], w?, b? -> y, mean [...], rstd [...]
  layer_norm: ({ b, ins, outInfos, attrs }) => {
    const { eps, hasW, hasB } = attrs as LayerNormAttrs;
    const x = ins[0];
    const mean = b.reduce("Mean", x, [-1], true);
    const xc = b.sub(x, mean);
    const rstd = b.op1("Reciprocal", [b.op1("Sqrt", [b.add(b.reduce("Mean", b.mul(xc, xc), [-1], true), b.f32(eps))])]);
    let y = b.mul(xc, rstd);
    if (hasW) y = b.mul(y, ins[1]);
    if (hasB) y = b.add(y, ins[hasW ? 2 : 1]);
    return [y, b.reshape(mean, outInfos[1].shape), b.reshape(rstd, outInfos[2].shape)];
  },
  // dy, x, mean, rstd, w? -> dx?, dw?, db?
  layer_norm_bwd: ({ b, ins, inInfos, attrs }) => {
    const { hasW, dx, dw, db } = attrs as LayerNormBwdAttrs;
    const [dy, x, mean0, rstd0] = ins;
    const rank = inInfos[1].shape.length;
    const mean = b.op1("Unsqueeze", [mean0, b.i64([-1])]), rstd = b.op1("Unsqueeze", [rstd0, b.i64([-1])]);
    const xhat = b.mul(b.sub(x, mean), rstd);
    const gy = hasW ? b.mul(dy, ins[4]) : dy;
    const outs: string[] = [];
    if (dx) {
      const m1 = b.reduce("Mean", gy, [-1], true), m2 = b.reduce("Mean", b.mul(gy, xhat), [-1], true);
      outs.push(b.mul(rstd, b.sub(b.sub(gy, m1), b.mul(xhat, m2))));
    }
    if (dw) outs.push(sumRows(b, b.mul(dy, xhat), rank));
    if (db) outs.push(sumRows(b, dy, rank));
    return outs;
  },

  // weight [V, D], ids [...] -> out [..., D] (rows of out-of-range ids are 0)
  embedding: ({ b, ins, inInfos }) => {
    const V = inInfos[0].shape[0];
    const ids = ins[1];
    const valid = b.op1("And", [b.op1("GreaterOrEqual", [ids, b.i32(0)]), b.op1("Less", [ids, b.i32(V)])]);
    const safe = b.op1("Where", [valid, ids, b.i32(0)]);
    const rows = b.op1("Gather", [ins[0], safe], { axis: { i: 0 } });
    return [b.mul(rows, b.op1("Unsqueeze", [b.cast(valid, ONNX_TYPE.FLOAT), b.i64([-1])]))];
  },
  // ids [...], dOut [..., D] -> dWeight [V, D]: rows added in token order (ScatterND, reduction add)
  embedding_bwd: ({ b, ins, inInfos, attrs }) => {
    const V = attrs.vocab as number, D = inInfos[1].shape.at(-1)!;
    const zeros = b.op1("ConstantOfShape", [b.i64([V, D])], { value: { t: zeroF32() } });
    return [embeddingScatterAdd(b, zeros, ins, inInfos, V)];
  },

  // x [B, L, H, D], positions [B, L], freq [r/2, 2] (or [B, r/2, 2]) words -> y: angles in f64 turns, as the reference.
  rope: ({ b, ins, inInfos, attrs }) => {
    const { scale, inverse } = attrs as RopeAttrs;
    const [B, L, , D] = inInfos[0].shape, half = inInfos[2].shape.at(-2)!;
    const fb = inInfos[2].shape.length === 3 ? B : 1;
    const words = b.reshape(b.cast(ins[2], ONNX_TYPE.DOUBLE), [fb, half, 2]);
    const hi = b.reshape(b.op1("Slice", [words, b.i64([0]), b.i64([1]), b.i64([2])]), [fb, 1, half]);
    const lo = b.reshape(b.op1("Slice", [words, b.i64([1]), b.i64([2]), b.i64([2])]), [fb, 1, half]);
    const f = b.add(b.mul(hi, b.f64(2 ** -32)), b.mul(lo, b.f64(2 ** -64)));
    let t = b.mul(b.reshape(b.cast(ins[1], ONNX_TYPE.DOUBLE), [B, L, 1]), f); // [B, L, half]
    t = b.sub(t, b.op1("Round", [t]));
    const ang = b.mul(t, b.f64(2 * Math.PI));
    const c = b.reshape(b.cast(b.mul(b.op1("Cos", [ang]), b.f64(scale)), ONNX_TYPE.FLOAT), [B, L, 1, half]);
    const s = b.reshape(
      b.cast(b.mul(b.op1("Sin", [ang]), b.f64(scale * (inverse ? -1 : 1))), ONNX_TYPE.FLOAT),
      [B, L, 1, half],
    );
    const part = (a: number, e: number) => b.op1("Slice", [ins[0], b.i64([a]), b.i64([e]), b.i64([3])]);
    const x1 = part(0, half), x2 = part(half, 2 * half);
    const y1 = b.sub(b.mul(x1, c), b.mul(x2, s)), y2 = b.add(b.mul(x2, c), b.mul(x1, s));
    const parts = 2 * half < D ? [y1, y2, part(2 * half, D)] : [y1, y2];
    return [b.op1("Concat", parts, { axis: { i: 3 } })];
  },

  // x [...], seed [] -> y: the engine's u32 hash mask (bit-identical to the reference and WGSL)
  dropout: ({ b, ins, inInfos, attrs }) => {
    const { p, offset } = attrs as DropoutAttrs;
    const shape = inInfos[0].shape, n = numel(shape);
    const k0 = mix32((offset ^ 0x9e3779b9) >>> 0);
    const key = mix32Onnx(b, b.op1("BitwiseXor", [b.reshape(ins[1], []), b.i64s(k0)]));
    const idx = b.op1("Range", [b.i64s(0), b.i64s(n), b.i64s(1)]);
    const inner = mix32Onnx(b, b.op1("BitwiseXor", [idx, key]));
    const h = mix32Onnx(b, b.op1("Mod", [b.add(inner, key), b.i64s(2 ** 32)], { fmod: { i: 0 } }));
    const drop = b.reshape(b.op1("Less", [h, b.i64s(dropoutThreshold(p))]), shape);
    return [b.op1("Where", [drop, b.f32(0), b.div(ins[0], b.f32(1 - p))])];
  },
};

function zeroF32() {
  return { name: "zero", dims: [1], dataType: ONNX_TYPE.FLOAT, raw: new Uint8Array(4) };
}
