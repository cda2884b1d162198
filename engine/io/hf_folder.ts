/**
 * A Hugging Face model folder: `config.json`, optional `generation_config.json`, and weights in
 * `model.safetensors` or sharded through `model.safetensors.index.json`, seen as one set of named tensors.
 * @module
 */
import { openSafetensors, type SafetensorsDType, type SafetensorsFile } from "./safetensors.ts";
import { exists } from "../util/fs.ts";

/** One weight of a model folder: the shard that holds it and its header entry. */
export interface FolderTensor {
  /** File name of the shard, relative to the folder. */
  readonly file: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  readonly byteLength: number;
}

/** An open model folder. Reads go to the shard holding the tensor; `close()` closes every shard. */
export interface ModelFolder {
  readonly dir: string;
  /** `config.json`, parsed. */
  readonly config: Record<string, unknown>;
  /** `generation_config.json`, parsed, if the folder has one. */
  readonly generationConfig?: Record<string, unknown>;
  /** Every weight by name (shards in index order, tensors in header order). */
  readonly tensors: ReadonlyMap<string, FolderTensor>;
  /** `__metadata__` of the first shard (e.g. `{format: "pt"}`). */
  readonly metadata: Readonly<Record<string, string>>;
  /** Raw little-endian bytes of one weight. */
  read(name: string): Promise<Uint8Array>;
  /** One weight widened to f32. */
  readF32(name: string): Promise<Float32Array>;
  close(): void;
  [Symbol.dispose](): void;
}

/** Weight file of an unsharded folder. */
export const WEIGHTS_FILE = "model.safetensors";
/** Index of a sharded folder (`weight_map`: tensor name → shard file). */
export const WEIGHTS_INDEX_FILE = "model.safetensors.index.json";

async function readJson(dir: string, file: string): Promise<Record<string, unknown>> {
  const text = await Deno.readTextFile(`${dir}/${file}`);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(`${dir}: ${file} is not valid JSON (${(e as Error).message})`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error(`${dir}: ${file} must be a JSON object`);
  return v as Record<string, unknown>;
}

/**
 * Shard files named by an index's `weight_map`, in first-seen order, and the map itself. The raw text is scanned
 * for duplicate keys in `weight_map`, which `JSON.parse` would silently merge.
 */
function parseIndex(dir: string, index: Record<string, unknown>, text: string): Map<string, string> {
  const wm = index.weight_map;
  if (typeof wm !== "object" || wm === null || Array.isArray(wm)) {
    throw new Error(`${dir}: ${WEIGHTS_INDEX_FILE} has no "weight_map" object`);
  }
  const map = new Map<string, string>();
  for (const [name, file] of Object.entries(wm)) {
    if (typeof file !== "string" || file.includes("/") || file.includes("\\") || file.startsWith(".")) {
      throw new Error(`${dir}: ${WEIGHTS_INDEX_FILE} maps ${JSON.stringify(name)} to ${JSON.stringify(file)}`);
    }
    map.set(name, file);
  }
  const dup = duplicateWeightMapKey(text);
  if (dup !== undefined) {
    throw new Error(`${dir}: weight ${JSON.stringify(dup)} is listed twice in ${WEIGHTS_INDEX_FILE}`);
  }
  return map;
}

/** The first key that occurs twice inside the top-level `"weight_map"` object of `text`, if any. */
function duplicateWeightMapKey(text: string): string | undefined {
  const start = text.search(/"weight_map"\s*:\s*\{/);
  if (start < 0) return undefined;
  let i = text.indexOf("{", start) + 1;
  const seen = new Set<string>();
  let depth = 0, expectKey = true;
  while (i < text.length) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      if (depth === 0 && expectKey) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        if (seen.has(key)) return key;
        seen.add(key);
        expectKey = false;
      }
      i = j + 1;
      continue;
    }
    if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") {
      if (depth === 0) return undefined;
      depth--;
    } else if (c === "," && depth === 0) expectKey = true;
    i++;
  }
  return undefined;
}

/**
 * Opens a Hugging Face model folder. Throws, naming the folder, when `config.json` or the weights are missing,
 * when the index names a shard that is not there or a weight its shard lacks, when a weight is listed twice, or
 * when the folder has only PyTorch `.bin` weights.
 */
export async function openModelFolder(dir: string): Promise<ModelFolder> {
  dir = dir.replace(/(.)\/+$/, "$1");
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(dir);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new Error(`model folder ${dir} does not exist`);
    throw e;
  }
  if (!st.isDirectory) throw new Error(`model folder ${dir} is not a directory`);
  if (!await exists(`${dir}/config.json`)) throw new Error(`${dir}: no config.json in the model folder`);
  const config = await readJson(dir, "config.json");
  const generationConfig = await exists(`${dir}/generation_config.json`)
    ? await readJson(dir, "generation_config.json")
    : undefined;

  // Which tensors each shard is expected to hold (undefined: all of them).
  let shards: Map<string, Set<string> | undefined>;
  if (await exists(`${dir}/${WEIGHTS_INDEX_FILE}`)) {
    const text = await Deno.readTextFile(`${dir}/${WEIGHTS_INDEX_FILE}`);
    const weightMap = parseIndex(dir, await readJson(dir, WEIGHTS_INDEX_FILE), text);
    shards = new Map();
    for (const [name, file] of weightMap) {
      if (!shards.has(file)) shards.set(file, new Set());
      shards.get(file)!.add(name);
    }
    for (const file of shards.keys()) {
      if (!await exists(`${dir}/${file}`)) {
        throw new Error(`${dir}: ${WEIGHTS_INDEX_FILE} names shard ${file}, which is not in the folder`);
      }
    }
  } else if (await exists(`${dir}/${WEIGHTS_FILE}`)) {
    shards = new Map([[WEIGHTS_FILE, undefined]]);
  } else {
    const bins = ["pytorch_model.bin", "pytorch_model.bin.index.json"];
    for (const b of bins) {
      if (await exists(`${dir}/${b}`)) {
        throw new Error(
          `${dir}: only safetensors weights are supported, but the folder has ${b} (PyTorch pickle); convert it, ` +
            `e.g. with transformers: AutoModel.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)`,
        );
      }
    }
    throw new Error(`${dir}: no weights (${WEIGHTS_FILE} or ${WEIGHTS_INDEX_FILE}) in the model folder`);
  }

  const files = new Map<string, SafetensorsFile>();
  const tensors = new Map<string, FolderTensor>();
  try {
    for (const [file, names] of shards) {
      const f = await openSafetensors(`${dir}/${file}`);
      files.set(file, f);
      for (const [name, t] of f.tensors) {
        if (names && !names.has(name)) continue; // in the shard but mapped elsewhere (or not at all) by the index
        const prev = tensors.get(name);
        if (prev) throw new Error(`${dir}: weight ${JSON.stringify(name)} is listed twice (${prev.file} and ${file})`);
        tensors.set(name, { file, dtype: t.dtype, shape: t.shape, byteLength: t.byteLength });
      }
      for (const name of names ?? []) {
        if (!f.tensors.has(name)) {
          throw new Error(`${dir}: ${WEIGHTS_INDEX_FILE} puts ${JSON.stringify(name)} in ${file}, which lacks it`);
        }
      }
    }
  } catch (e) {
    for (const f of files.values()) f.close();
    throw e;
  }

  const shardOf = (name: string): SafetensorsFile => {
    const t = tensors.get(name);
    if (!t) throw new Error(`${dir}: the model has no weight named ${JSON.stringify(name)}`);
    return files.get(t.file)!;
  };
  const close = () => {
    for (const f of files.values()) f.close();
  };
  return {
    dir,
    config,
    generationConfig,
    tensors,
    metadata: files.values().next().value?.metadata ?? {},
    read: (name) => {
      try {
        return shardOf(name).read(name);
      } catch (e) {
        return Promise.reject(e);
      }
    },
    readF32: (name) => {
      try {
        return shardOf(name).readF32(name);
      } catch (e) {
        return Promise.reject(e);
      }
    },
    close,
    [Symbol.dispose]: close,
  };
}
