/**
 * ONNX lowerings of sparse expert dispatch (engine/graph/ops/grouped.ts). ONNX has no grouped matmul, so each one is
 * unrolled over the E experts: expert e's rows are a Slice of x between its offsets (dynamic starts and ends), times
 * its weight, and the E products (plus zero rows outside every expert's range) are concatenated back to [R, M]. That
 * costs the sparse R·K·M multiply-adds and one copy of x and y, never a [R, K, M] gather of weights; the price is E
 * nodes per grouped matmul in the model. The weight gradient is E products of sliced rows, stacked.
 *
 * The sort is a TopK (ascending, so stable on distinct keys) of key = class·R + index, class = the expert, or E for
 * an out-of-range id; offsets count the keys of lower classes.
 * @module
 */
import { groupedDims, groupedDwDims, type GroupedMatmulAttrs } from "../../graph/ops/grouped.ts";
import { numel } from "../../graph/types.ts";
import type { OnnxBuilder } from "./builder.ts";
import type { OnnxLowering } from "./lower_types.ts";
import { ONNX_TYPE } from "./proto.ts";

/** Offsets as int64 [E + 1], clipped to [0, R] and made non-decreasing from the left edge. */
function offsets64(b: OnnxBuilder, off: string, R: number): string {
  return b.op1("Clip", [b.cast(off, ONNX_TYPE.INT64), b.i64s(0), b.i64s(R)]);
}

/** Element i of an int64 vector as a [1] tensor (a Slice start or end). */
function at(b: OnnxBuilder, v: string, i: number): string {
  return b.op1("Slice", [v, b.i64([i]), b.i64([i + 1]), b.i64([0])]);
}

/** Rows [s, t) of a 2-D value. */
function rows(b: OnnxBuilder, x: string, s: string, t: string): string {
  return b.op1("Slice", [x, s, t, b.i64([0])]);
}

/** Zero rows [n, cols] for a dynamic n ([1] int64). */
function zeroRows(b: OnnxBuilder, n: string, cols: number): string {
  const zero = { name: "zero", dims: [1], dataType: ONNX_TYPE.FLOAT, raw: new Uint8Array(4) };
  return b.op1("ConstantOfShape", [b.op1("Concat", [n, b.i64([cols])], { axis: { i: 0 } })], { value: { t: zero } });
}

/** The lowerings of this file. */
export const groupedLowerings: Record<string, OnnxLowering> = {
  // ids [..., k] -> rows [R], pos [..., k], offsets [E + 1]
  expert_sort: ({ b, ins, inInfos, attrs }) => {
    const E = attrs.experts as number, shape = inInfos[0].shape, R = numel(shape), k = shape[shape.length - 1];
    const ids = b.cast(b.reshape(ins[0], [R]), ONNX_TYPE.INT64);
    const valid = b.op1("And", [b.op1("GreaterOrEqual", [ids, b.i64s(0)]), b.op1("Less", [ids, b.i64s(E)])]);
    const cls = b.op1("Where", [valid, ids, b.i64s(E)]);
    const index = b.op1("Range", [b.i64s(0), b.i64s(R), b.i64s(1)]);
    const key = b.add(b.mul(cls, b.i64s(R)), index);
    const [, order] = b.op("TopK", [key, b.i64([R])], { largest: { i: 0 }, sorted: { i: 1 } }, 2);
    const rowsOut = b.cast(b.div(order, b.i64s(k)), ONNX_TYPE.INT32);
    const zeros = b.op1("ConstantOfShape", [b.i64([R])], {
      value: { t: { name: "zero", dims: [1], dataType: ONNX_TYPE.INT64, raw: new Uint8Array(8) } },
    });
    const pos = b.op1("ScatterElements", [zeros, order, index], { axis: { i: 0 } });
    const classes = b.op1("Range", [b.i64s(0), b.i64s(E + 1), b.i64s(1)]);
    const below = b.cast(b.op1("Less", [b.reshape(cls, [R, 1]), b.reshape(classes, [1, E + 1])]), ONNX_TYPE.INT32);
    const offsets = b.reshape(b.reduce("Sum", below, [0], false), [E + 1]);
    return [rowsOut, b.reshape(b.cast(pos, ONNX_TYPE.INT32), shape), offsets];
  },

  // x [R, K], w [E, M, K] (transB) or [E, K, M], offsets [E + 1] -> y [R, M]
  grouped_matmul: ({ b, ins, inInfos, attrs }) => {
    const { transB } = attrs as GroupedMatmulAttrs;
    const { R, M, E } = groupedDims(inInfos[0], inInfos[1], inInfos[2], attrs as GroupedMatmulAttrs);
    const off = offsets64(b, ins[2], R);
    const parts = [zeroRows(b, at(b, off, 0), M)];
    for (let e = 0; e < E; e++) {
      const xs = rows(b, ins[0], at(b, off, e), at(b, off, e + 1));
      const we = b.op1("Gather", [ins[1], b.i64s(e)], { axis: { i: 0 } });
      parts.push(transB ? b.op1("Gemm", [xs, we], { transB: { i: 1 } }) : b.op1("MatMul", [xs, we]));
    }
    parts.push(zeroRows(b, b.sub(b.i64([R]), at(b, off, E)), M));
    return [b.op1("Concat", parts, { axis: { i: 0 } })];
  },

  // a [R, P], b [R, Q], offsets [E + 1] -> [E, P, Q]
  grouped_matmul_dw: ({ b, ins, inInfos }) => {
    const { R, P, Q, E } = groupedDwDims(inInfos[0], inInfos[1], inInfos[2]);
    const off = offsets64(b, ins[2], R);
    const parts: string[] = [];
    for (let e = 0; e < E; e++) {
      const s = at(b, off, e), t = at(b, off, e + 1);
      const prod = b.op1("MatMul", [b.transpose(rows(b, ins[0], s, t), [1, 0]), rows(b, ins[1], s, t)]);
      parts.push(b.reshape(prod, [1, P, Q]));
    }
    return [E === 1 ? parts[0] : b.op1("Concat", parts, { axis: { i: 0 } })];
  },
};
