/**
 * gpt_oss's pieces of the ONNX decoder graph (onnx_graph.ts), as engine/nn/moe_gpt_oss.ts traces them: the attention
 * sinks as one more score column joining each row's softmax and dropped after it, and the mixture-of-experts block —
 * router logits x·Wᵀ + b, softmax, the top-k as a 0/1 mask from comparisons (ties to the lower index), the selected
 * probabilities renormalised (= the softmax over the k selected logits), every expert run densely from its stacked
 * fused weights with interleaved gate/up columns, the clamped SwiGLU, and the down biases weighted per token.
 * @module
 */
import type { OnnxBuilder } from "../exec/onnx/builder.ts";
import { ONNX_TYPE } from "../exec/onnx/proto.ts";
import type { MoeConfig } from "./moe.ts";
import { GPT_OSS_ALPHA, GPT_OSS_LIMIT, sinksName } from "./moe_gpt_oss.ts";
import type { OnnxInit } from "./onnx_moe.ts";

const { FLOAT } = ONNX_TYPE;

/**
 * Softmax over masked scores s [B, Hkv, G, S, T] with layer `i`'s sinks as an extra last column, the column dropped:
 * p [B, Hkv, G, S, T].
 */
export function onnxSinkSoftmax(
  b: OnnxBuilder,
  s: string,
  i: number,
  Hkv: number,
  G: number,
  weight: (name: string) => Float32Array,
  init: OnnxInit,
): string {
  const sinks = init(sinksName(i), [1, Hkv, G, 1, 1], weight(sinksName(i)));
  const col = b.op1("Slice", [s, b.i64([0]), b.i64([1]), b.i64([4])]); // [B, Hkv, G, S, 1]: only its shape is used
  const sink = b.op1("Expand", [sinks, b.op1("Shape", [col])]);
  const p = b.op1("Softmax", [b.op1("Concat", [s, sink], { axis: { i: 4 } })], { axis: { i: -1 } });
  const T = b.op1("Shape", [s], { start: { i: 4 }, end: { i: 5 } });
  return b.op1("Slice", [p, b.i64([0]), T, b.i64([4])]);
}

/** Layer `i`'s block on x [B, S, H] → [B, S, H]. */
export function onnxGptOssMoe(
  b: OnnxBuilder,
  m: MoeConfig,
  i: number,
  x: string,
  H: number,
  weight: (name: string) => Float32Array,
  init: OnnxInit,
): string {
  const blk = `model.layers.${i}.mlp`, E = m.experts, I = m.intermediate;
  const rw = weight(`${blk}.router.weight`), rt = new Float32Array(E * H); // [E, H] → [H, E]
  for (let e = 0; e < E; e++) for (let h = 0; h < H; h++) rt[h * E + e] = rw[e * H + h];
  const logits = b.add(
    b.op1("MatMul", [x, init(`${blk}.router.weight`, [H, E], rt)]),
    init(`${blk}.router.bias`, [E], weight(`${blk}.router.bias`)),
  );
  const probs = b.op1("Softmax", [logits], { axis: { i: -1 } }); // [B, S, E]
  // rank_i = #{j : p_j > p_i} + #{j < i : p_j = p_i}; selected iff rank < k.
  const pi = b.op1("Unsqueeze", [probs, b.i64([3])]), pj = b.op1("Unsqueeze", [probs, b.i64([2])]);
  const before = new Float32Array(E * E);
  for (let r = 0; r < E; r++) for (let c = 0; c < r; c++) before[r * E + c] = 1;
  const gtf = b.cast(b.op1("Greater", [pj, pi]), FLOAT);
  const eqf = b.mul(b.cast(b.op1("Equal", [pj, pi]), FLOAT), b.f32s([E, E], before));
  const rank = b.reduce("Sum", b.add(gtf, eqf), [-1], false);
  const sel = b.mul(probs, b.cast(b.op1("Less", [rank, b.f32(m.topK - 0.5)]), FLOAT));
  const w = b.div(sel, b.reduce("Sum", sel, [-1], true)); // [B, S, E]
  // gate_up [E, H, 2I] → [H, E·2I] (row h: expert e's 2I columns at e·2I); down [E, I, H] is [E·I, H] as it is.
  const gu = weight(`${blk}.experts.gate_up_proj`), guT = new Float32Array(gu.length);
  for (let e = 0; e < E; e++) {
    for (let h = 0; h < H; h++) {
      for (let c = 0; c < 2 * I; c++) guT[(h * E + e) * 2 * I + c] = gu[(e * H + h) * 2 * I + c];
    }
  }
  let y = b.add(
    b.op1("MatMul", [x, init(`${blk}.experts.gate_up_proj`, [H, E * 2 * I], guT)]),
    init(`${blk}.experts.gate_up_proj_bias`, [E * 2 * I], weight(`${blk}.experts.gate_up_proj_bias`)),
  );
  y = b.reshape(y, [0, 0, E, I, 2]); // (gate, up) pairs
  const half = (k: number) =>
    b.op1("Squeeze", [b.op1("Slice", [y, b.i64([k]), b.i64([k + 1]), b.i64([4])]), b.i64([4])]);
  const gate = b.op1("Min", [half(0), b.f32(GPT_OSS_LIMIT)]);
  const up = b.op1("Max", [b.op1("Min", [half(1), b.f32(GPT_OSS_LIMIT)]), b.f32(-GPT_OSS_LIMIT)]);
  const glu = b.mul(gate, b.op1("Sigmoid", [b.mul(gate, b.f32(GPT_OSS_ALPHA))]));
  const a = b.mul(b.add(up, b.f32(1)), glu); // [B, S, E, I]
  const aw = b.reshape(b.mul(a, b.op1("Unsqueeze", [w, b.i64([3])])), [0, 0, E * I]);
  const down = init(`${blk}.experts.down_proj`, [E * I, H], weight(`${blk}.experts.down_proj`));
  const downBias = init(`${blk}.experts.down_proj_bias`, [E, H], weight(`${blk}.experts.down_proj_bias`));
  return b.add(b.op1("MatMul", [aw, down]), b.op1("MatMul", [w, downBias]));
}
