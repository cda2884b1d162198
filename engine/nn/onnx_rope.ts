/**
 * RoPE of the ONNX decoder graph (onnx_graph.ts), as engine/nn/decoder.ts applies it: per layer its own base and
 * scaling (`layerRope`; none on a NoPE layer), cos/sin in f32 from `position_ids` times the scaling's attention
 * factor (yarn, longrope), over the first `rotaryDim` dims, pairing (i, i + r/2) or, interleaved (GLM-4,
 * Cohere 2), (2i, 2i + 1). Longrope uses the long factors when max(position_ids) + 1 exceeds
 * original_max_position_embeddings, and dynamic NTK computes its base from s = max(max(position_ids) + 1,
 * max_position_embeddings) in f64, as transformers' rope update does per forward (engine/nn/rope_feed.ts feeds the
 * engine's graphs the same).
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
    let inv = scaling.type === "dynamic" ? "" : b.f32s([half], Float32Array.from(ropeInvFreq(rd, theta, scaling)));
    if (scaling.type === "longrope") {
      const long = b.f32s([half], Float32Array.from(ropeInvFreq(rd, theta, scaling, Infinity)));
      const seq = b.add(b.reduce("Max", pos, [0, 1], false), b.i64s(1));
      inv = b.op1("Where", [b.op1("Greater", [seq, b.i64s(scaling.originalMaxPositionEmbeddings)]), long, inv]);
    }
    if (scaling.type === "dynamic") {
      // inv[i] = base^(−2i/r), base = theta·(factor·s/max − (factor − 1))^(r/(r − 2)) (ropeInvFreq's "dynamic")
      const { factor, maxPositionEmbeddings: max } = scaling;
      const seq = b.cast(b.add(b.reduce("Max", pos, [0, 1], false), b.i64s(1)), ONNX_TYPE.DOUBLE);
      const s = b.op1("Max", [seq, b.f64(max)]);
      const grown = b.op1("Log", [b.sub(b.mul(s, b.f64(factor / max)), b.f64(factor - 1))]);
      const logBase = b.add(b.f64(Math.log(theta)), b.mul(grown, b.f64(rd / (rd - 2))));
      const exps = b.f64s([half], Array.from({ length: half }, (_, i) => (-2 * i) / rd));
      inv = b.cast(b.op1("Exp", [b.mul(exps, logBase)]), ONNX_TYPE.FLOAT);
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
