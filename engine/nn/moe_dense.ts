/**
 * The dense dispatch of routed experts, kept as the reference the sparse one (moe.ts `routedExperts`) is tested and
 * benchmarked against: every expert runs on every token and its output is weighted by the token's routing weight,
 * zero outside its top-k. Three matmuls over the stacked weights, costing E / k times the sparse dispatch's FLOPs.
 * @module
 */
import { cast, eq, matmul, mul, reshape, sum, swiglu, type Tensor, transpose } from "../graph/mod.ts";

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
  const [N, H] = x.shape, k = topkIdx.shape[1], [E, I] = gate.shape;
  const e = x.graph.constant(Array.from({ length: E }, (_, i) => i), [1, 1, E]);
  const onehot = eq(reshape(cast(topkIdx, "f32"), [N, k, 1]), e); // [N, k, E]
  const dense = sum(mul(onehot, reshape(topkWeight, [N, k, 1])), 1); // [N, E]
  const a = swiglu(
    matmul(x, reshape(gate, [E * I, H]), { transB: true }),
    matmul(x, reshape(up, [E * I, H]), { transB: true }),
  );
  const aw = reshape(mul(reshape(a, [N, E, I]), reshape(dense, [N, E, 1])), [N, E * I]);
  return matmul(aw, reshape(transpose(down, 0, 1), [H, E * I]), { transB: true });
}
