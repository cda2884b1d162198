/**
 * Merging an adapter into the base weights and exporting a Hugging Face model folder, as LLaMA-Factory's
 * `llamafactory-cli export` does (PEFT's `merge_and_unload` then `save_pretrained`).
 *
 * For each targeted linear W [out, in] with A [r, in], B [out, r], s = loraScale:
 * - LoRA: W' = W + s·B·A;
 * - DoRA: W' = (m / ‖W + s·B·A‖_row)[:, None] · (W + s·B·A).
 * A PiSSA adapter's base is already the residual in the executor, so the same sum gives the original-space weight.
 *
 * @example
 * ```ts
 * import { exportModel } from "./export.ts";
 * import { attachAdapter } from "./lora.ts";
 * import { loadModel } from "./model.ts";
 * const model = await loadModel("fixtures/models/llama", { executor: "reference", dtype: "f32" });
 * await attachAdapter(model, "fixtures/models/llama/lora");
 * const out = await Deno.makeTempDir(); // e.g. "out/merged"
 * await exportModel(model, out, { source: "fixtures/models/llama", dtype: "bf16" });
 * await Deno.stat(`${out}/model.safetensors`);
 * await Deno.remove(out, { recursive: true });
 * ```
 * @module
 */
import {
  SAFETENSORS_DTYPE_BYTES,
  type SafetensorsDType,
  type TensorData,
  writeSafetensors,
} from "../io/safetensors.ts";
import { WEIGHTS_FILE, WEIGHTS_INDEX_FILE } from "../io/hf_folder.ts";
import { LoraAdapter, loraKeys, loraScale } from "./lora.ts";
import { mergeOft, OftAdapter } from "./oft_merge.ts";
import { expertRank, type ExpertTarget, mergeExpertDeltas } from "./lora_experts.ts";
import type { Model } from "./model.ts";
import { exists } from "../util/fs.ts";
import { decoderConfig } from "./config.ts";
import { onnxUnsupported } from "./onnx_support.ts";
import { writeTemplateFiles } from "../data/template_export.ts";
import { TEMPLATES } from "../data/template.ts";

/**
 * The base weights with the attached adapter merged in (name → values, every base param, in the model's order);
 * without an adapter, the base weights as they are.
 */
export async function mergeAdapter(model: Model): Promise<Map<string, Float32Array>> {
  const ad = model.adapter;
  if (ad instanceof OftAdapter) return await mergeOft(model, ad);
  if (ad !== undefined && !(ad instanceof LoraAdapter)) {
    throw new Error("mergeAdapter: only LoRA and OFT adapters merge");
  }
  const ex = model.executor, pre = model.prefix;
  const out = new Map<string, Float32Array>();
  const targets = new Set(ad?.targets ?? []);
  for (const name of model.params.keys()) {
    const W = Float32Array.from(await ex.getParam(pre + name));
    const mod = name.endsWith(".weight") ? name.slice(0, -".weight".length) : "";
    if (ad && targets.has(mod)) {
      const k = loraKeys(mod);
      const A = await ex.getParam(pre + k.A), B = await ex.getParam(pre + k.B);
      const [o, i] = model.params.get(name)!.shape;
      const r = ad.config.r, s = loraScale(ad.config);
      const m = ad.config.useDora ? await ex.getParam(pre + k.m) : undefined;
      const row = new Float64Array(i);
      for (let a = 0; a < o; a++) {
        for (let c = 0; c < i; c++) {
          let d = 0;
          for (let j = 0; j < r; j++) d += B[a * r + j] * A[j * i + c];
          row[c] = W[a * i + c] + s * d;
        }
        let g = 1;
        if (m) {
          let n2 = 0;
          for (let c = 0; c < i; c++) n2 += row[c] * row[c];
          g = m[a] / Math.sqrt(n2);
        }
        for (let c = 0; c < i; c++) W[a * i + c] = g * row[c];
      }
    }
    out.set(name, W);
  }
  if (ad?.expertTargets.length) {
    const A = new Map<ExpertTarget, Float32Array>(), B = new Map<ExpertTarget, Float32Array>();
    for (const t of ad.expertTargets) {
      const k = loraKeys(t.module);
      A.set(t, Float32Array.from(await ex.getParam(pre + k.A)));
      B.set(t, Float32Array.from(await ex.getParam(pre + k.B)));
    }
    const rank = (t: ExpertTarget) => expertRank(t, ad.config);
    mergeExpertDeltas(model.config.moe!, ad.expertTargets, { A: (t) => A.get(t)!, B: (t) => B.get(t)! }, rank, (n) => {
      const w = out.get(n);
      if (!w) throw new Error(`mergeAdapter: the model has no expert weight "${n}"`);
      return w;
    });
  }
  return out;
}

/** Options of {@link exportModel}. */
export interface ExportOptions {
  /** The model's source folder: config.json, generation_config.json and tokenizer files are taken from it. */
  source: string;
  /** Largest shard in bytes (tensor data); one `model.safetensors` when everything fits. Default 5 GB (5e9). */
  shardBytes?: number;
  /** Stored dtype of the weights; default "f32". */
  dtype?: "f32" | "bf16" | "f16";
  /**
   * The chat template the model was tuned with (a template name): written as Jinja into tokenizer_config.json and
   * as an Ollama `Modelfile` (data/template_export.ts); unset keeps the tokenizer's own template (Modelfile from it).
   */
  template?: string;
}

const DTYPES = {
  f32: { st: "F32", torch: "float32" },
  bf16: { st: "BF16", torch: "bfloat16" },
  f16: { st: "F16", torch: "float16" },
} as const satisfies Record<string, { st: SafetensorsDType; torch: string }>;

/** Files copied as they are from the source folder when present. */
export const COPIED_FILES = [
  "generation_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "tokenizer.model",
  "vocab.json",
  "merges.txt",
  "added_tokens.json",
  "chat_template.jinja",
  "chat_template.json",
] as const;

/** Groups tensors (in order) into shards of at most `max` bytes each (a bigger tensor gets a shard of its own). */
export function planShards(sizes: [string, number][], max: number): string[][] {
  if (!(max > 0)) throw new Error(`shardBytes must be positive, got ${max}`);
  const shards: string[][] = [];
  let cur: string[] = [], used = 0;
  for (const [name, bytes] of sizes) {
    if (cur.length && used + bytes > max) {
      shards.push(cur);
      cur = [];
      used = 0;
    }
    cur.push(name);
    used += bytes;
  }
  if (cur.length) shards.push(cur);
  return shards;
}

const pad5 = (n: number) => String(n).padStart(5, "0");

/**
 * Writes the model (adapter merged, see {@link mergeAdapter}) as a Hugging Face folder `dir`: config.json with
 * its dtype updated, `model.safetensors` or `model-0000k-of-0000n.safetensors` shards with
 * `model.safetensors.index.json`, the source's generation config and tokenizer files, the chat template of
 * `opts.template` in tokenizer_config.json and an Ollama `Modelfile` (when there is a tokenizer). The folder is built
 * beside `dir` and renamed into place (an existing `dir` is replaced).
 */
export async function exportModel(model: Model, dir: string, opts: ExportOptions): Promise<void> {
  const dt = DTYPES[opts.dtype ?? "f32"];
  if (!dt) throw new Error(`exportModel: dtype must be "f32", "bf16" or "f16", got ${JSON.stringify(opts.dtype)}`);
  const shardBytes = opts.shardBytes ?? 5e9;
  const config = JSON.parse(await Deno.readTextFile(`${opts.source}/config.json`)) as Record<string, unknown>;
  const weights = await mergeAdapter(model);
  const target = dir.replace(/\/+$/, "");
  const tmp = `${target}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  await Deno.mkdir(tmp, { recursive: true });
  try {
    config.torch_dtype = dt.torch;
    delete config.quantization_config; // the weights written are dequantized (gpt_oss's MXFP4 experts, mxfp4.ts)
    if ("dtype" in config) config.dtype = dt.torch;
    await Deno.writeTextFile(`${tmp}/config.json`, JSON.stringify(config, null, 2) + "\n");
    for (const f of COPIED_FILES) {
      if (await exists(`${opts.source}/${f}`)) await Deno.copyFile(`${opts.source}/${f}`, `${tmp}/${f}`);
    }
    await writeTemplateFiles(tmp, opts.template);
    const bytes = (n: string) => weights.get(n)!.length * SAFETENSORS_DTYPE_BYTES[dt.st];
    const names = [...weights.keys()];
    const shards = planShards(names.map((n) => [n, bytes(n)]), shardBytes);
    const weightMap: Record<string, string> = {};
    for (const [k, shard] of shards.entries()) {
      const file = shards.length === 1 ? WEIGHTS_FILE : `model-${pad5(k + 1)}-of-${pad5(shards.length)}.safetensors`;
      const tensors: Record<string, TensorData> = {};
      for (const n of shard) {
        tensors[n] = { dtype: dt.st, shape: model.params.get(n)!.shape, data: weights.get(n)! };
        weightMap[n] = file;
      }
      await writeSafetensors(`${tmp}/${file}`, tensors, { format: "pt" });
    }
    if (shards.length > 1) {
      const total = names.reduce((a, n) => a + bytes(n), 0);
      const index = { metadata: { total_size: total }, weight_map: weightMap };
      await Deno.writeTextFile(`${tmp}/${WEIGHTS_INDEX_FILE}`, JSON.stringify(index, null, 2) + "\n");
    }
    if (await exists(target)) {
      const old = `${target}.${crypto.randomUUID().slice(0, 8)}.old`;
      await Deno.rename(target, old);
      await Deno.rename(tmp, target);
      await Deno.remove(old, { recursive: true });
    } else await Deno.rename(tmp, target);
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
}

/** The export settings of a YAML config (LLaMA-Factory's keys). */
export interface ExportArgs {
  modelNameOrPath: string;
  adapterNameOrPath?: string;
  exportDir: string;
  /** export_size, in GB (1e9 bytes) per shard. */
  exportSize: number;
  dtype: "f32" | "bf16" | "f16";
  /** Also write the merged model as ONNX (Optimum's layout) to `<export_dir>/onnx/model.onnx` (onnx_export.ts). */
  onnx: boolean;
  /** The chat template (template.ts name) written into the export's tokenizer_config.json and Modelfile. */
  template?: string;
}

const TORCH: Record<string, "f32" | "bf16" | "f16"> = { float32: "f32", bfloat16: "bf16", float16: "f16" };

/**
 * Reads the export keys of a parsed YAML config: model_name_or_path, adapter_name_or_path (one), export_dir,
 * export_size (GB, default 5), export_legacy_format (must be false), export_quantization_bit and
 * export_hub_model_id (must be unset); template, export_device and other keys are ignored. The weights are
 * stored in `infer_dtype` when given (float32 / bfloat16 / float16), else in the source config's dtype.
 * Whetstone's `export_onnx: true` also writes the merged model as ONNX in Optimum's layout (`<export_dir>/onnx`).
 * `template` (a chat template name) is written as Jinja into tokenizer_config.json and as an Ollama Modelfile.
 */
export function parseExportArgs(cfg: Record<string, unknown>, sourceConfig: Record<string, unknown> = {}): ExportArgs {
  const str = (key: string): string | undefined => {
    const v = cfg[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "string") throw new Error(`${key}: expected a string, got ${JSON.stringify(v)}`);
    return v;
  };
  const model = str("model_name_or_path");
  if (!model) throw new Error("model_name_or_path: required");
  const exportDir = str("export_dir");
  if (!exportDir) throw new Error("export_dir: required (the folder to write the merged model to)");
  const adapters = (str("adapter_name_or_path") ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  if (adapters.length > 1) throw new Error(`adapter_name_or_path: one adapter is supported, got ${adapters.length}`);
  const size = cfg.export_size ?? 5;
  if (typeof size !== "number" || !(size > 0)) {
    throw new Error(`export_size: expected a positive number of GB, got ${size}`);
  }
  if ((cfg.export_legacy_format ?? false) !== false) {
    throw new Error(`export_legacy_format: only false (safetensors) is supported, got ${cfg.export_legacy_format}`);
  }
  if (cfg.quantization_bit !== undefined && cfg.quantization_bit !== null) {
    throw new Error("quantization_bit: Cannot merge adapters to a quantized model.");
  }
  for (const k of ["export_quantization_bit", "export_hub_model_id"]) {
    if (cfg[k] !== undefined && cfg[k] !== null) throw new Error(`${k}: not supported, got ${JSON.stringify(cfg[k])}`);
  }
  const want = str("infer_dtype");
  const stored = String(sourceConfig.torch_dtype ?? sourceConfig.dtype ?? "float32");
  const dtype = want && want !== "auto" ? TORCH[want] : TORCH[stored] ?? "f32";
  if (!dtype) throw new Error(`infer_dtype: expected auto, float32, bfloat16 or float16, got ${want}`);
  if (![undefined, null, true, false].includes(cfg.export_onnx as boolean)) {
    throw new Error(`export_onnx: expected true or false, got ${JSON.stringify(cfg.export_onnx)}`);
  }
  if (cfg.export_onnx === true && sourceConfig.model_type !== undefined) {
    // Refuse before writing anything: a family the ONNX graph does not compute exactly (onnx_support.ts).
    let missing: string[] = [];
    try {
      missing = onnxUnsupported(decoderConfig(sourceConfig));
    } catch { /* an unreadable config.json fails loading the model, with its own error */ }
    if (missing.length) {
      throw new Error(
        `export_onnx: model_type "${sourceConfig.model_type}" uses features the ONNX exporter does not implement: ${
          missing.join(", ")
        }`,
      );
    }
  }
  for (const k of ["export_onnx_cache_length", "export_onnx_prefill_length", "export_onnx_batch"]) {
    if (cfg[k] !== undefined && cfg[k] !== null) {
      throw new Error(`${k}: no longer used; the ONNX export has dynamic batch and sequence axes`);
    }
  }
  const template = str("template");
  if (template !== undefined && !TEMPLATES.has(template)) {
    throw new Error(`template: Template ${template} does not exist (known: ${[...TEMPLATES.keys()].join(", ")})`);
  }
  return {
    modelNameOrPath: model,
    adapterNameOrPath: adapters[0],
    exportDir,
    exportSize: size,
    dtype,
    onnx: cfg.export_onnx === true,
    ...(template && { template }),
  };
}
