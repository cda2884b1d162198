/**
 * ONNX lowerings of top-k along the last axis and its gather / scatter (engine/graph/ops/topk.ts).
 *
 * - `topk` is ONNX TopK (axis -1, largest 1, sorted 1; k a constant int64 [1], the same at every size, so symbolic
 *   sessions keep it as is), its int64 indices cast to i32. ONNX specifies the lower index first among equal
 *   values, the engine's rule; the conformance cases check onnxruntime keeps it on rows full of ties.
 * - `gather_last` is GatherElements and `scatter_last` ScatterElements (reduction add) into zeros, both on axis -1;
 *   indices outside [0, E), which ONNX rejects, are replaced by 0 and their values masked to 0 first.
 * @module
 */
import { lastAxisDims, type ScatterLastAttrs, topkDims } from "../../graph/ops/topk.ts";
import type { OnnxBuilder } from "./builder.ts";
import type { OnnxLowering } from "./lower_types.ts";
import { ONNX_TYPE } from "./proto.ts";

/** idx (i32) with entries outside [0, E) replaced by 0, and the mask of the valid ones. */
function safeIndex(b: OnnxBuilder, idx: string, E: number): { safe: string; valid: string } {
  const valid = b.op1("And", [b.op1("GreaterOrEqual", [idx, b.i32(0)]), b.op1("Less", [idx, b.i32(E)])]);
  return { safe: b.op1("Where", [valid, idx, b.i32(0)]), valid };
}

/** The lowerings of this file. */
export const topkLowerings: Record<string, OnnxLowering> = {
  // x [..., E] -> values [..., k], indices [..., k]
  topk: ({ b, ins, inInfos, attrs }) => {
    const k = attrs.k as number;
    topkDims(inInfos[0], k);
    const [values, indices] = b.op("TopK", [ins[0], b.i64([k])], {
      axis: { i: -1 },
      largest: { i: 1 },
      sorted: { i: 1 },
    }, 2);
    return [values, b.cast(indices, ONNX_TYPE.INT32)];
  },

  // x [..., E], idx [..., k] -> [..., k]
  gather_last: ({ b, ins, inInfos }) => {
    const { E } = lastAxisDims(inInfos[0].shape, inInfos[1], "x");
    const { safe, valid } = safeIndex(b, ins[1], E);
    const got = b.op1("GatherElements", [ins[0], safe], { axis: { i: -1 } });
    return [b.op1("Where", [valid, got, b.f32(0)])];
  },

  // v [..., k], idx [..., k] -> [..., E]
  scatter_last: ({ b, ins, outInfos, attrs }) => {
    const E = (attrs as ScatterLastAttrs).size;
    const { safe, valid } = safeIndex(b, ins[1], E);
    const zero = { name: "zero", dims: [1], dataType: ONNX_TYPE.FLOAT, raw: new Uint8Array(4) };
    const zeros = b.op1("ConstantOfShape", [b.i64(outInfos[0].shape)], { value: { t: zero } });
    const v = b.op1("Where", [valid, ins[0], b.f32(0)]);
    return [b.op1("ScatterElements", [zeros, safe, v], { axis: { i: -1 }, reduction: { s: "add" } })];
  },
};
