/**
 * What the ONNX exporter ({@link buildDecoderOnnx} in onnx_graph.ts) implements: every {@link DecoderConfig} feature
 * it does not compute exactly as engine/nn/decoder.ts does is named here, so an export refuses instead of writing a
 * model that silently computes something else.
 * @module
 */
import type { DecoderConfig } from "./config.ts";

/** The features of `c` the exporter does not implement (empty: it exports `c` exactly). */
export function onnxUnsupported(c: DecoderConfig): string[] {
  const out: string[] = [];
  const s = c.ropeScaling;
  if (s.type !== "default" && s.type !== "linear" && s.type !== "llama3") out.push(`rope scaling "${s.type}"`);
  const same = c.layerRope.every((r) =>
    r !== null && r.theta === c.ropeTheta && JSON.stringify(r.scaling) === JSON.stringify(s)
  );
  if (!same) out.push("per-layer RoPE (a layer with its own base/scaling or without position embedding)");
  if (c.ropeInterleaved) out.push("interleaved RoPE");
  if (c.qkNormAll) out.push("q/k norm over all heads");
  if (c.postNorm) out.push("post-norms (no input norms)");
  if (c.glmNorms) out.push("GLM-4 post_self_attn/post_mlp norms");
  if (c.layerNorm || c.normBias) out.push("LayerNorm");
  if (c.parallelBlock) out.push("parallel attention + MLP block");
  if (c.plainMlp) out.push("ungated MLP (c_fc/c_proj)");
  if (c.fusedGateUp !== c.fused) out.push("fused gate_up_proj without fused qkv_proj");
  if (c.residualScale !== 1) out.push("residual multiplier");
  if (c.logitScale !== 1) out.push("logit scaling");
  return out;
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
