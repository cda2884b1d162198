/**
 * Writing a model's weights as Hugging Face shards: `model-00001-of-0000N.safetensors` files and
 * `model.safetensors.index.json` (`metadata.total_size`, `weight_map` sorted by name), split as huggingface_hub's
 * `split_torch_state_dict_into_shards` splits (tensors in the given order; a new shard when the next tensor would take
 * the current one past the limit; a tensor larger than the limit alone in its shard). One shard is written as
 * `model.safetensors` without an index, as `save_pretrained` does.
 *
 * Tensors are made one at a time by a callback and written as they come (engine/io/safetensors.ts
 * `writeSafetensorsStream`), so a model larger than memory can be written.
 *
 * @example
 * ```ts
 * const specs = new Map([["w", { dtype: "BF16", shape: [4, 4] }]] as const);
 * await writeShardedWeights("out/model", specs, () => new Uint8Array(32), { maxShardBytes: 1 << 30 });
 * ```
 * @module
 */
import { numel, SAFETENSORS_DTYPE_BYTES, type TensorSpec, writeSafetensorsStream } from "./safetensors.ts";
import { WEIGHTS_FILE, WEIGHTS_INDEX_FILE } from "./hf_folder.ts";
import { writeFileAtomic } from "../util/fs.ts";

/** Options of {@link writeShardedWeights}. */
export interface ShardOptions {
  /** The most bytes of tensor data a shard holds (save_pretrained's `max_shard_size`). */
  maxShardBytes: number;
  /** `__metadata__` of every shard (default `{ format: "pt" }`, as transformers writes). */
  metadata?: Record<string, string>;
}

/** What {@link writeShardedWeights} wrote. */
export interface WrittenShards {
  /** Shard file names, in order. */
  files: string[];
  /** Bytes of tensor data in all shards (the index's `total_size`). */
  totalSize: number;
}

/** Splits tensors (in order) into shards of at most `max` bytes each, as huggingface_hub does. */
export function planShards(specs: ReadonlyMap<string, TensorSpec>, max: number): string[][] {
  if (!(max > 0)) throw new Error(`maxShardBytes must be positive, got ${max}`);
  const shards: string[][] = [];
  let current: string[] = [], size = 0;
  for (const [name, s] of specs) {
    const bytes = numel(s.shape) * SAFETENSORS_DTYPE_BYTES[s.dtype];
    if (current.length && size + bytes > max) {
      shards.push(current);
      current = [];
      size = 0;
    }
    current.push(name);
    size += bytes;
  }
  if (current.length) shards.push(current);
  return shards;
}

/**
 * Writes `specs` (tensor name → dtype and shape, in state-dict order) into `dir` as shards of at most
 * `opts.maxShardBytes`, with `model.safetensors.index.json` when there is more than one. `bytes(name)` makes one
 * tensor's raw little-endian bytes; it is called once per tensor, shard by shard, and its result dropped after the
 * write.
 */
export async function writeShardedWeights(
  dir: string,
  specs: ReadonlyMap<string, TensorSpec>,
  bytes: (name: string) => Uint8Array | Promise<Uint8Array>,
  opts: ShardOptions,
): Promise<WrittenShards> {
  const shards = planShards(specs, opts.maxShardBytes);
  const n = shards.length;
  const pad = (i: number) => String(i).padStart(5, "0");
  const files = n === 1 ? [WEIGHTS_FILE] : shards.map((_, i) => `model-${pad(i + 1)}-of-${pad(n)}.safetensors`);
  const weightMap: Record<string, string> = {};
  let totalSize = 0;
  await Deno.mkdir(dir, { recursive: true });
  for (let i = 0; i < n; i++) {
    const part: Record<string, TensorSpec> = {};
    for (const name of shards[i]) {
      const s = specs.get(name)!;
      part[name] = s;
      weightMap[name] = files[i];
      totalSize += numel(s.shape) * SAFETENSORS_DTYPE_BYTES[s.dtype];
    }
    await writeSafetensorsStream(`${dir}/${files[i]}`, part, bytes, opts.metadata ?? { format: "pt" });
  }
  if (n > 1) {
    const sorted = Object.fromEntries(Object.keys(weightMap).sort().map((k) => [k, weightMap[k]]));
    const index = { metadata: { total_size: totalSize }, weight_map: sorted };
    await writeFileAtomic(`${dir}/${WEIGHTS_INDEX_FILE}`, JSON.stringify(index, null, 2) + "\n");
  }
  return { files, totalSize };
}
