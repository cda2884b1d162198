/**
 * RoPE of the ONNX decoder graph (onnx_graph.ts), as engine/nn/decoder.ts applies it: per layer its own base and
 * scaling (`layerRope`; none on a NoPE layer), cos/sin in f32 from `position_ids` times the scaling's attention
 * factor (yarn, longrope), over the first `rotaryDim` dims, pairing (i, i + r/2) or, interleaved (GLM-4,
 * Cohere 2), (2i, 2i + 1). Longrope uses the long factors when max(position_ids) + 1 exceeds
 * original_max_position_embeddings, as transformers' longrope update does per forward.
 * @module
 */
import type { OnnxBuilder } from "../exec/onnx/builder.ts";
import { ONNX_TYPE } from "../exec/onnx/proto.ts";
import { ropeAttentionScaling, ropeInvFreq, type RopeScaling } from "../graph/ops/rope.ts";
import type { DecoderConfig } from "./config.ts";

/**
 * The rope of each layer over `pos` (position_ids [B, S] i64): a function of (x [B, S, heads, D], layer) →
 * rotated x (x itself on a layer without position embedding).
 */
export function onnxRope(b: OnnxBuilder, c: DecoderConfig, pos: string): (x: string, layer: number) => string {
  const rd = c.rotaryDim, half = rd / 2, D = c.headDim;
  const posF = b.op1("Unsqueeze", [b.cast(pos, ONNX_TYPE.FLOAT), b.i64([2])]); // [B, S, 1]
  const slice = (x: string, axis: number, from: number, to: number) =>
    b.op1("Slice", [x, b.i64([from]), b.i64([to]), b.i64([axis])]);
  const tables = new Map<string, [string, string]>();
  const cosSin = (theta: number, scaling: RopeScaling): [string, string] => {
    const key = JSON.stringify([theta, scaling]);
    const hit = tables.get(key);
    if (hit) return hit;
    let inv = b.f32s([half], Float32Array.from(ropeInvFreq(rd, theta, scaling)));
    if (scaling.type === "longrope") {
      const long = b.f32s([half], Float32Array.from(ropeInvFreq(rd, theta, scaling, Infinity)));
      const seq = b.add(b.reduce("Max", pos, [0, 1], false), b.i64s(1));
      inv = b.op1("Where", [b.op1("Greater", [seq, b.i64s(scaling.originalMaxPositionEmbeddings)]), long, inv]);
    }
    const freqs = b.mul(posF, inv); // [B, S, rd/2]
    const scale = ropeAttentionScaling(scaling);
    const trig = (op: string) => {
      const t = b.op1("Unsqueeze", [b.op1(op, [freqs]), b.i64([2])]); // [B, S, 1, rd/2]
      return scale === 1 ? t : b.mul(t, b.f32(scale));
    };
    const out: [string, string] = [trig("Cos"), trig("Sin")];
    tables.set(key, out);
    return out;
  };
  // x [B, S, heads, rd] in rotate_half pairing.
  const rotate = (x: string, cos: string, sin: string): string => {
    const x1 = slice(x, 3, 0, half), x2 = slice(x, 3, half, rd);
    const parts = [b.sub(b.mul(x1, cos), b.mul(x2, sin)), b.add(b.mul(x2, cos), b.mul(x1, sin))];
    return b.op1("Concat", parts, { axis: { i: 3 } });
  };
  return (x, layer) => {
    const r = c.layerRope[layer];
    if (!r) return x;
    const [cos, sin] = cosSin(r.theta, r.scaling);
    let rot = rd < D ? slice(x, 3, 0, rd) : x;
    if (c.ropeInterleaved) {
      // (2j, 2j + 1) → (j, j + r/2): gather the even then the odd dims, rotate, scatter back.
      const split = b.reshape(b.transpose(b.reshape(rot, [0, 0, 0, half, 2]), [0, 1, 2, 4, 3]), [0, 0, 0, rd]);
      const y = rotate(split, cos, sin);
      rot = b.reshape(b.transpose(b.reshape(y, [0, 0, 0, 2, half]), [0, 1, 2, 4, 3]), [0, 0, 0, rd]);
    } else rot = rotate(rot, cos, sin);
    return rd < D ? b.op1("Concat", [rot, slice(x, 3, rd, D)], { axis: { i: 3 } }) : rot;
  };
}
