/**
 * Exports a decoder to ONNX with past key/values: the same prefill and decode-step graphs generation runs
 * (kv_decoder.ts), lowered by the ONNX executor's lowering, with the weights (LoRA branches included when an
 * adapter is attached; merge first for a plain model) as initializers in one shared external data file.
 *
 * Written to `dir`:
 * - `prefill.onnx`: ids, positions, segments [B, P] i32 (segments 1 on real tokens, 0 on right padding),
 *   last [B] i32 (flat index b·P + n_b − 1 of each row's last real token), `past_key_values.<i>.key|value`
 *   [B·Hkv, C, D] f32 → logits [B, V] (each row's last token) and `present.<i>.key|value`.
 * - `decode.onnx`: ids, positions [B, 1] i32, `mask<W>` [B, 1, 1, C + 1] f32 per distinct sliding window W
 *   (0 = none; see {@link decodeMask}), past key/values → logits [B, V] and present key/values.
 * - `weights.onnx_data`: every weight once, little-endian f32 (i32 for integer params).
 * - `onnx_config.json`: sizes, input and output names, the mask rule, and the model's config.
 *
 * A "static cache": C slots per sequence, row b·Hkv + h holding kv head h of sequence b, slot j the key at
 * position j. Shapes are fixed at export (B, P, C); {@link OnnxDecoder} runs the files with onnxruntime.
 *
 * @example
 * ```ts
 * import { loadModel } from "./model.ts";
 * import { exportOnnx } from "./onnx_export.ts";
 * const model = await loadModel("fixtures/models/llama", { executor: "reference", dtype: "f32" });
 * const out = await Deno.makeTempDir(); // e.g. "out/llama-onnx"
 * await exportOnnx(model, out, { cacheLength: 256, prefillLength: 64 });
 * await Deno.remove(out, { recursive: true });
 * ```
 * @module
 */
import { Graph } from "../graph/mod.ts";
import { lowerGraph } from "../exec/onnx/lower.ts";
import { encodeModelChunks, type ModelDef } from "../exec/onnx/proto.ts";
import { cacheName, cacheShape, layerWindows, traceCached } from "./kv_decoder.ts";
import type { Model } from "./model.ts";
import { writeAll, writeAtomic } from "../util/fs.ts";

/** Options of {@link exportOnnx}. */
export interface OnnxExportOptions {
  /** Cache slots per sequence C (default 256): prompt + generated tokens must fit. */
  cacheLength?: number;
  /** Prompt length P of the prefill graph (default min(128, C)); shorter prompts are right-padded. */
  prefillLength?: number;
  /** Sequences per batch B (default 1). */
  batch?: number;
}

/** What `onnx_config.json` holds. */
export interface OnnxDecoderConfig {
  format: "whetstone-onnx-decoder";
  version: 1;
  batch: number;
  cacheLength: number;
  prefillLength: number;
  layers: number;
  kvHeads: number;
  headDim: number;
  vocab: number;
  /** Distinct sliding windows of the layers (0 = global): one decode input `mask<W>` each. */
  windows: number[];
  cacheShape: number[];
  prefill: { file: string; inputs: string[]; outputs: string[] };
  decode: { file: string; inputs: string[]; outputs: string[] };
  /** The HF config.json of the model. */
  config: Record<string, unknown>;
}

const ALIGN = 64;

/** Renames graph inputs/outputs (and every node use of them) in place. */
function renameIO(model: ModelDef, rename: (name: string) => string): void {
  const g = model.graph;
  for (const v of [...g.inputs, ...g.outputs]) v.name = rename(v.name);
  for (const n of g.nodes) {
    n.inputs = n.inputs.map(rename);
    n.outputs = n.outputs.map(rename);
  }
}

/** Writes `chunks` to `path` atomically (no half-written model). */
function writeChunks(path: string, chunks: Iterable<Uint8Array>): Promise<void> {
  return writeAtomic(path, async (f) => {
    for (const c of chunks) await writeAll(f, c);
  });
}

/** Exports `model` (with its adapter, if any) to ONNX files in `dir`; returns the written config. */
export async function exportOnnx(model: Model, dir: string, opts: OnnxExportOptions = {}): Promise<OnnxDecoderConfig> {
  const c = model.config;
  const C = opts.cacheLength ?? 256, B = opts.batch ?? 1;
  const P = opts.prefillLength ?? Math.min(128, C);
  for (const [k, v] of [["cacheLength", C], ["prefillLength", P], ["batch", B]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`exportOnnx: ${k} must be a positive integer, got ${v}`);
  }
  if (P > C) throw new Error(`exportOnnx: prefillLength ${P} exceeds cacheLength ${C}`);
  await Deno.mkdir(dir, { recursive: true });

  const caches = new Map<string, string>(); // graph param name → ONNX io stem
  const trace = (decode: boolean) => {
    const g = new Graph();
    const shape = cacheShape(c, B, C);
    traceCached(g, c, model.weights(g), (layer, kind) => {
      const name = model.prefix + cacheName(B, C, layer, kind);
      caches.set(name, `${layer}.${kind === "k" ? "key" : "value"}`);
      return g.param(name, shape, "f32");
    }, { B, C, L: decode ? 1 : P, decode });
    return g;
  };
  const graphs = { prefill: trace(false), decode: trace(true) };

  // Every weight once in weights.onnx_data, in the order the graphs first use them.
  const offsets = new Map<string, { offset: number; length: number }>();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (const g of Object.values(graphs)) {
    for (const [name, id] of g.params) {
      if (caches.has(name) || offsets.has(name)) continue;
      const v = g.values[id];
      if (v.dtype === "u32") throw new Error(`exportOnnx: param "${name}" is u32; weights must be float or i32`);
      const data = await model.executor.getParam(name);
      const bytes = v.dtype === "i32"
        ? new Uint8Array(Int32Array.from(data).buffer)
        : new Uint8Array(Float32Array.from(data).buffer);
      const pad = (ALIGN - (size % ALIGN)) % ALIGN;
      if (pad) chunks.push(new Uint8Array(pad));
      size += pad;
      offsets.set(name, { offset: size, length: bytes.length });
      chunks.push(bytes);
      size += bytes.length;
    }
  }
  await writeChunks(`${dir}/weights.onnx_data`, chunks);

  const io: Record<string, { file: string; inputs: string[]; outputs: string[] }> = {};
  for (const [kind, g] of Object.entries(graphs)) {
    const lowered = lowerGraph(g, {
      name: `whetstone-${c.family}-${kind}`,
      external: (name) => {
        const o = offsets.get(name);
        return o && { location: "weights.onnx_data", ...o };
      },
    });
    renameIO(lowered.model, (n) => {
      if (n.startsWith("param/") && caches.has(n.slice(6))) return `past_key_values.${caches.get(n.slice(6))}`;
      if (n.startsWith("state/") && caches.has(n.slice(6))) return `present.${caches.get(n.slice(6))}`;
      return n;
    });
    const file = `${kind}.onnx`;
    await writeChunks(`${dir}/${file}`, encodeModelChunks(lowered.model));
    io[kind] = {
      file,
      inputs: lowered.model.graph.inputs.map((v) => v.name),
      outputs: lowered.model.graph.outputs.map((v) => v.name),
    };
  }
  const config: OnnxDecoderConfig = {
    format: "whetstone-onnx-decoder",
    version: 1,
    batch: B,
    cacheLength: C,
    prefillLength: P,
    layers: c.layers,
    kvHeads: c.kvHeads,
    headDim: c.headDim,
    vocab: c.vocab,
    windows: layerWindows(c),
    cacheShape: cacheShape(c, B, C),
    prefill: io.prefill,
    decode: io.decode,
    config: c.raw,
  };
  await writeChunks(`${dir}/onnx_config.json`, [new TextEncoder().encode(JSON.stringify(config, null, 2) + "\n")]);
  return config;
}
