/**
 * What the ONNX exporter ({@link buildDecoderOnnx} in onnx_graph.ts) implements: every {@link DecoderConfig} feature
 * it does not compute exactly as engine/nn/decoder.ts does is named here, so an export refuses instead of writing a
 * model that silently computes something else.
 * @module
 */
import type { DecoderConfig } from "./config.ts";

/** The features of `c` the exporter does not implement (empty: it exports `c` exactly). */
export function onnxUnsupported(c: DecoderConfig): string[] {
  const out = new Set<string>();
  for (const r of c.layerRope) {
    // "dynamic" frequencies depend on the traced length (see engine/nn/decoder.ts), which one graph cannot mirror.
    if (r?.scaling.type === "dynamic") out.add(`rope scaling "dynamic"`);
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
