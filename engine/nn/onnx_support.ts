/**
 * What the ONNX exporter ({@link buildDecoderOnnx} in onnx_graph.ts) implements: every {@link DecoderConfig} feature
 * it does not compute exactly as engine/nn/decoder.ts does is named here, so an export refuses instead of writing a
 * model that silently computes something else.
 * @module
 */
import type { DecoderConfig } from "./config.ts";

/**
 * Every {@link DecoderConfig} field, as the graph handles it. A field added to DecoderConfig fails type-checking here
 * until the exporter handles it (or {@link onnxUnsupported} refuses it): the whitelist that keeps exports exact.
 */
export const ONNX_HANDLED: Record<keyof DecoderConfig, string> = {
  family: "model name only",
  vocab: "embedding and logits",
  hidden: "hidden size",
  layers: "layers and past/present pairs",
  heads: "query heads",
  kvHeads: "kv heads (grouped-query scores)",
  headDim: "head dim",
  intermediate: "MLP width",
  eps: "norm epsilon",
  ropeTheta: "via layerRope",
  ropeScaling: "via layerRope",
  rotaryDim: "partial rotary (onnx_rope.ts)",
  layerRope: "per-layer base/scaling/NoPE (onnx_rope.ts); dynamic and longrope from each run's position_ids",
  ropeInterleaved: "onnx_rope.ts",
  tieEmbeddings: "logits from the embedding",
  qkvBias: "biases present in the weights",
  oBias: "biases present in the weights",
  mlpBias: "biases present in the weights",
  act: "silu, gelu, gelu_tanh",
  normOffset: "RMSNorm weight + offset",
  embedScale: "embedding multiplier",
  qkNorm: "per-head q/k RMSNorm",
  qkNormAll: "all-head q/k RMSNorm",
  sandwichNorm: "post-attention, pre/post-feedforward norms",
  postNorm: "output norms only",
  glmNorms: "post_self_attn/post_mlp norms",
  residualScale: "block outputs scaled",
  logitScale: "final hidden state divided",
  layerWindow: "sliding-window masks",
  attnSoftcap: "score soft-capping",
  finalSoftcap: "logit soft-capping",
  attnScale: "score multiplier",
  fused: "qkv_proj",
  fusedGateUp: "gate_up_proj",
  layerNorm: "LayerNorm",
  normBias: "LayerNorm bias",
  parallelBlock: "attention and MLP from one norm",
  plainMlp: "c_fc/c_proj",
  attnSinks: "a sink column in the softmax (onnx_moe_gpt_oss.ts)",
  moe:
    "routed experts, dense dispatch (onnx_moe.ts; gpt_oss: onnx_moe_gpt_oss.ts); the noaux_tc router (deepseek_v3, glm4_moe) refused",
  mla: "refused: multi-head latent attention (deepseek_v3) is not in the exporter",
  raw: "not read",
};

/** The features of `c` the exporter does not implement (empty: it exports `c` exactly). */
export function onnxUnsupported(c: DecoderConfig): string[] {
  const out = new Set<string>();
  if (c.mla) out.add("multi-head latent attention (q/kv low-rank projections, decoupled RoPE)");
  if (c.moe?.noaux) {
    out.add("noaux_tc routing (sigmoid scores, e_score_correction_bias, grouped top-k, shared experts)");
  }
  return [...out];
}

/** Throws, naming the model_type and the features, when the exporter cannot export `c` exactly. */
export function assertOnnxSupported(c: DecoderConfig): void {
  const missing = onnxUnsupported(c);
  if (missing.length) {
    throw new Error(
      `ONNX export: model_type "${c.family}" uses features the exporter does not implement: ${missing.join(", ")}`,
    );
  }
}
