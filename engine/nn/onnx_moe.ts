/**
 * The mixture-of-experts block of the ONNX decoder graph (onnx_graph.ts), as engine/nn/moe.ts traces it: router
 * softmax in f32, the top-k as a 0/1 mask from comparisons (ties to the lower index), the selected probabilities
 * (renormalised when `normTopK`), every expert run densely from stacked weights and weighted per token, plus
 * qwen2_moe's sigmoid-gated shared expert.
 * @module
 */
import type { OnnxBuilder } from "../exec/onnx/builder.ts";
import { ONNX_TYPE } from "../exec/onnx/proto.ts";
import type { MoeConfig } from "./moe.ts";

const { FLOAT } = ONNX_TYPE;

/** A linear of the graph: x · Wᵀ (+ bias) for module `mod` of weight [out, inp]. */
export type OnnxLinear = (x: string, mod: string, out: number, inp: number) => string;

/** Adds an f32 initializer; returns its name. */
export type OnnxInit = (name: string, dims: number[], data: Float32Array) => string;

/** x · sigmoid(x) · up. */
const swiglu = (b: OnnxBuilder, gate: string, up: string) => b.mul(b.mul(gate, b.op1("Sigmoid", [gate])), up);

/** Layer `i`'s sparse block on x [B, S, H] → [B, S, H]. */
export function onnxMoe(
  b: OnnxBuilder,
  m: MoeConfig,
  i: number,
  x: string,
  H: number,
  linear: OnnxLinear,
  weight: (name: string) => Float32Array,
  init: OnnxInit,
): string {
  const blk = `model.layers.${i}.${m.block}`, [gate, up, down] = m.names, E = m.experts, I = m.intermediate;
  const probs = b.op1("Softmax", [linear(x, `${blk}.gate`, E, H)], { axis: { i: -1 } }); // [B, S, E]
  // rank_i = #{j : p_j > p_i} + #{j < i : p_j = p_i}; selected iff rank < k.
  const pi = b.op1("Unsqueeze", [probs, b.i64([3])]), pj = b.op1("Unsqueeze", [probs, b.i64([2])]);
  const before = new Float32Array(E * E);
  for (let r = 0; r < E; r++) for (let c = 0; c < r; c++) before[r * E + c] = 1;
  const gtf = b.cast(b.op1("Greater", [pj, pi]), FLOAT);
  const eqf = b.mul(b.cast(b.op1("Equal", [pj, pi]), FLOAT), b.f32s([E, E], before));
  const rank = b.reduce("Sum", b.add(gtf, eqf), [-1], false); // [B, S, E]
  let w = b.mul(probs, b.cast(b.op1("Less", [rank, b.f32(m.topK - 0.5)]), FLOAT));
  if (m.normTopK) w = b.div(w, b.reduce("Sum", w, [-1], true));
  // Stacked experts, transposed for MatMul: gate/up [H, E·I], down [E·I, H].
  const stacked = (name: string, rows: number, cols: number, inputSide: boolean): string => {
    const t = new Float32Array(E * rows * cols);
    for (let e = 0; e < E; e++) {
      const src = weight(`${blk}.experts.${e}.${name}.weight`); // [rows, cols]
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < cols; c++) {
          // gate/up: [I, H] → columns e·I + r of [H, E·I]; down: [H, I] → rows e·I + c of [E·I, H].
          if (inputSide) t[c * E * rows + e * rows + r] = src[r * cols + c];
          else t[(e * cols + c) * rows + r] = src[r * cols + c];
        }
      }
    }
    const dims = inputSide ? [cols, E * rows] : [E * cols, rows];
    return init(`${blk}.experts.${name}.stacked`, dims, t);
  };
  const a = swiglu(
    b,
    b.op1("MatMul", [x, stacked(gate, I, H, true)]),
    b.op1("MatMul", [x, stacked(up, I, H, true)]),
  ); // [B, S, E·I]
  const aw = b.reshape(b.mul(b.reshape(a, [0, 0, E, I]), b.op1("Unsqueeze", [w, b.i64([3])])), [0, 0, E * I]);
  let out = b.op1("MatMul", [aw, stacked(down, H, I, false)]);
  if (m.sharedIntermediate) {
    const s = `${blk}.shared_expert`, n = m.sharedIntermediate;
    const y = linear(
      swiglu(b, linear(x, `${s}.gate_proj`, n, H), linear(x, `${s}.up_proj`, n, H)),
      `${s}.down_proj`,
      H,
      n,
    );
    out = b.add(out, b.mul(y, b.op1("Sigmoid", [linear(x, `${blk}.shared_expert_gate`, 1, H)])));
  }
  return out;
}
