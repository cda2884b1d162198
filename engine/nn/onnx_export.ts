/**
 * Exports a decoder to ONNX as Optimum exports `text-generation-with-past` (`optimum-cli export onnx`), the layout
 * transformers.js loads: `<dir>/model.onnx` with dynamic batch and sequence axes (graph: onnx_graph.ts), the
 * weights (adapter merged) inline, or in `<dir>/model.onnx_data` beside it when they are large (ONNX's protobuf
 * limit is 2 GB). Called with `<export_dir>/onnx`, beside the merged Hugging Face folder's config.json,
 * generation_config.json and tokenizer files, the folder is what `AutoModelForCausalLM.from_pretrained` of
 * transformers.js opens; {@link markConfigForTransformersJs} adds the `transformers.js_config` keys it reads.
 * Every family of config.ts exports; a config the graph would not compute exactly as the engine does ("dynamic"
 * RoPE scaling, see onnx_support.ts) is refused with an error naming its model_type and the feature.
 *
 * @example
 * ```ts
 * import { loadModel } from "./model.ts";
 * import { exportOnnx } from "./onnx_export.ts";
 * const model = await loadModel("fixtures/models/llama", { executor: "reference", dtype: "f32" });
 * const out = await Deno.makeTempDir(); // e.g. "out/merged/onnx"
 * const info = await exportOnnx(model, out);
 * console.log(info.files); // ["model.onnx"]
 * await Deno.remove(out, { recursive: true });
 * ```
 * @module
 */
import { encodeModelChunks } from "../exec/onnx/proto.ts";
import { writeAll, writeAtomic } from "../util/fs.ts";
import { mergeAdapter } from "./export.ts";
import type { Model } from "./model.ts";
import { buildDecoderOnnx, placeWeights } from "./onnx_graph.ts";
import { assertOnnxSupported } from "./onnx_support.ts";

/** Options of {@link exportOnnx}. */
export interface OnnxExportOptions {
  /**
   * Weights go to `model.onnx_data` when they take at least this many bytes (default 1 GiB, well under protobuf's
   * 2 GB); 0 always writes external data.
   */
  externalDataBytes?: number;
}

/** What {@link exportOnnx} wrote. */
export interface OnnxExportInfo {
  /** Files written in the folder: `model.onnx` and, with external data, `model.onnx_data`. */
  files: string[];
  /** Graph inputs and outputs, in order. */
  inputs: string[];
  outputs: string[];
  /** Whether the weights are in `model.onnx_data`. */
  externalData: boolean;
}

/** Writes `chunks` to `path` atomically (no half-written model). */
function writeChunks(path: string, chunks: Iterable<Uint8Array>): Promise<void> {
  return writeAtomic(path, async (f) => {
    for (const c of chunks) await writeAll(f, c);
  });
}

/** Exports `model` (its adapter merged, if any) to `dir/model.onnx` (+ `model.onnx_data`). */
export async function exportOnnx(model: Model, dir: string, opts: OnnxExportOptions = {}): Promise<OnnxExportInfo> {
  const threshold = opts.externalDataBytes ?? 2 ** 30;
  if (!(threshold >= 0)) throw new Error(`exportOnnx: externalDataBytes must be >= 0, got ${threshold}`);
  assertOnnxSupported(model.config); // before the (costly) merge
  const weights = await mergeAdapter(model);
  const { model: onnx, weights: ws } = buildDecoderOnnx(model.config, weights);
  const total = ws.reduce((a, w) => a + w.data.byteLength, 0);
  const external = total >= threshold;
  const placed = placeWeights(ws, external ? "model.onnx_data" : undefined);
  onnx.graph.initializers.push(...placed.initializers);
  await Deno.mkdir(dir, { recursive: true });
  const files = ["model.onnx"];
  if (external) {
    await writeChunks(`${dir}/model.onnx_data`, placed.data);
    files.push("model.onnx_data");
  } else await Deno.remove(`${dir}/model.onnx_data`).catch(() => {});
  await writeChunks(`${dir}/model.onnx`, encodeModelChunks(onnx));
  return {
    files,
    inputs: onnx.graph.inputs.map((v) => v.name),
    outputs: onnx.graph.outputs.map((v) => v.name),
    externalData: external,
  };
}

/**
 * Adds to the config.json at `configPath` the `transformers.js_config` keys transformers.js reads for an export
 * from {@link exportOnnx}: `dtype: "fp32"` (so `onnx/model.onnx` is picked even where its default would be the
 * quantized `model_quantized.onnx`) and, with external data, `use_external_data_format: true` (browsers fetch
 * `model.onnx_data` only when told; Node reads it beside the model file).
 */
export async function markConfigForTransformersJs(configPath: string, info: OnnxExportInfo): Promise<void> {
  const cfg = JSON.parse(await Deno.readTextFile(configPath)) as Record<string, unknown>;
  const prev = (cfg["transformers.js_config"] ?? {}) as Record<string, unknown>;
  const next: Record<string, unknown> = { ...prev, dtype: "fp32" };
  if (info.externalData) next.use_external_data_format = true;
  else delete next.use_external_data_format;
  cfg["transformers.js_config"] = next;
  await Deno.writeTextFile(configPath, JSON.stringify(cfg, null, 2) + "\n");
}

/** Exports the merged model folder `exportDir` loaded as `model`: `exportDir/onnx/model.onnx` and the config keys. */
export async function exportOnnxBeside(
  model: Model,
  exportDir: string,
  opts: OnnxExportOptions = {},
): Promise<OnnxExportInfo> {
  const info = await exportOnnx(model, `${exportDir}/onnx`, opts);
  await markConfigForTransformersJs(`${exportDir}/config.json`, info);
  return info;
}
