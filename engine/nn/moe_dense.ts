/**
 * The dense dispatch of routed experts, kept as the reference the sparse one (moe.ts `routedExperts`; gpt_oss's
 * moe_gpt_oss.ts `gptOssExperts`) is tested and benchmarked against: every expert runs on every token and its output
 * is weighted by the token's routing weight, zero outside its top-k. Three matmuls over the stacked weights, costing
 * E / k times the sparse dispatch's FLOPs.
 * @module
 */
import { add, cast, eq, matmul, mul, permute, reshape, sum, swiglu, type Tensor, transpose } from "../graph/mod.ts";
import { gptOssAct, type GptOssExperts } from "./moe_gpt_oss.ts";

/**
 * Σ_j topkWeight[n, j] · expert_{topkIdx[n, j]}(x[n]) for x [N, H], topkIdx [N, k] i32, topkWeight [N, k], computed
 * densely from the stacked weights gate, up [E, I, H] and down [E, H, I] → [N, H] (SwiGLU experts).
 */
export function denseExperts(
  x: Tensor,
  topkIdx: Tensor,
  topkWeight: Tensor,
  gate: Tensor,
  up: Tensor,
  down: Tensor,
): Tensor {
  const [N, H] = x.shape, [E, I] = gate.shape;
  const dense = denseWeights(topkIdx, topkWeight, E);
  const a = swiglu(
    matmul(x, reshape(gate, [E * I, H]), { transB: true }),
    matmul(x, reshape(up, [E * I, H]), { transB: true }),
  );
  const aw = reshape(mul(reshape(a, [N, E, I]), reshape(dense, [N, E, 1])), [N, E * I]);
  return matmul(aw, reshape(transpose(down, 0, 1), [H, E * I]), { transB: true });
}

/**
 * gpt_oss's experts (moe_gpt_oss.ts `gptOssExperts`) computed densely, every expert on every token: x · W over every
 * expert's fused gate_up [E, H, 2I] (+ bias), the clamped SwiGLU, each expert's activation weighted by the token's
 * routing weight, times down [E, I, H], plus the down biases as w · B_down [N, E]·[E, H]. x [..., H] → [..., H].
 */
export const denseGptOssExperts: GptOssExperts = (x, topkIdx, topkWeight, w) => {
  const H = x.shape[x.rank - 1], lead = x.shape.slice(0, -1), N = lead.reduce((a, b) => a * b, 1);
  const [E, , I2] = w.gateUp.shape, I = I2 / 2, k = topkIdx.shape[topkIdx.rank - 1];
  const f32 = (t: Tensor) => (t.dtype === "f32" ? t : cast(t, "f32"));
  const dense = denseWeights(reshape(topkIdx, [N, k]), reshape(topkWeight, [N, k]), E); // [N, E]
  const gu = reshape(permute(f32(w.gateUp), [1, 0, 2]), [H, E * 2 * I]);
  const y = add(matmul(reshape(x, [N, H]), gu), reshape(f32(w.gateUpBias), [E * 2 * I])); // [N, E·2I]
  const a = gptOssAct(reshape(y, [N, E, 2 * I])); // [N, E, I]
  const aw = reshape(mul(a, reshape(dense, [N, E, 1])), [N, E * I]);
  const out = add(matmul(aw, reshape(f32(w.down), [E * I, H])), matmul(dense, f32(w.downBias)));
  return reshape(out, [...lead, H]);
};

/** The routing weights [N, k] at ids [N, k] as a dense [N, E] matrix (0 outside each token's picks). */
function denseWeights(topkIdx: Tensor, topkWeight: Tensor, E: number): Tensor {
  const [N, k] = topkIdx.shape;
  const e = topkIdx.graph.constant(Array.from({ length: E }, (_, i) => i), [1, 1, E]);
  const onehot = eq(reshape(cast(topkIdx, "f32"), [N, k, 1]), e); // [N, k, E]
  return sum(mul(onehot, reshape(cast(topkWeight, "f32"), [N, k, 1])), 1); // [N, E]
}
