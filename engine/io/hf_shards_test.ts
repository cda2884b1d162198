import assert from "node:assert/strict";
import { openModelFolder, WEIGHTS_INDEX_FILE } from "./hf_folder.ts";
import { planShards, writeShardedWeights } from "./hf_shards.ts";
import {
  encodeTensor,
  type TensorData,
  type TensorSpec,
  writeSafetensors,
  writeSafetensorsStream,
} from "./safetensors.ts";
import { exists } from "../util/fs.ts";

async function withTempDir(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "whetstone_shards_" });
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const TENSORS: [string, TensorData][] = [
  ["model.embed_tokens.weight", { dtype: "BF16", shape: [6, 4], data: Array.from({ length: 24 }, (_, i) => i - 7) }],
  ["model.layers.0.self_attn.q_proj.weight", { dtype: "BF16", shape: [4, 4], data: Array(16).fill(0.5) }],
  ["model.layers.0.self_attn.q_proj.bias", { dtype: "BF16", shape: [3], data: [1, -2, 3] }],
  ["model.norm.weight", { dtype: "F32", shape: [4], data: [1, 2, 3, 4] }],
];
const specs = new Map<string, TensorSpec>(TENSORS.map(([n, t]) => [n, { dtype: t.dtype, shape: t.shape }]));
const bytesOf = new Map(TENSORS.map(([n, t]) => [n, encodeTensor(n, t)]));

Deno.test("hf_shards: splits as huggingface_hub does (in order; a new shard when the next tensor would not fit)", () => {
  // 48, 32, 6 and 16 bytes.
  assert.deepEqual(planShards(specs, 64), [
    ["model.embed_tokens.weight"],
    ["model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.q_proj.bias", "model.norm.weight"],
  ]);
  assert.deepEqual(planShards(specs, 40).map((s) => s.length), [1, 2, 1]); // 48 > 40 alone; 32 + 6; 16
  assert.deepEqual(planShards(specs, 1e9).map((s) => s.length), [4]);
  assert.throws(() => planShards(specs, 0), /maxShardBytes must be positive, got 0/);
});

Deno.test("hf_shards: sharded weights read back through the index, each tensor made once", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/config.json`, "{}");
    const made: string[] = [];
    const w = await writeShardedWeights(dir, specs, (n) => {
      made.push(n);
      return bytesOf.get(n)!;
    }, { maxShardBytes: 40 });
    assert.deepEqual(w.files, [
      "model-00001-of-00003.safetensors",
      "model-00002-of-00003.safetensors",
      "model-00003-of-00003.safetensors",
    ]);
    assert.equal(w.totalSize, 48 + 32 + 6 + 16);
    assert.deepEqual([...made].sort(), [...specs.keys()].sort());
    const index = JSON.parse(await Deno.readTextFile(`${dir}/${WEIGHTS_INDEX_FILE}`));
    assert.deepEqual(index.metadata, { total_size: 102 });
    assert.deepEqual(Object.keys(index.weight_map), [...specs.keys()].sort());
    assert.equal(index.weight_map["model.norm.weight"], "model-00003-of-00003.safetensors");
    using m = await openModelFolder(dir);
    assert.deepEqual(m.metadata, { format: "pt" });
    for (const [name, t] of TENSORS) {
      assert.deepEqual(m.tensors.get(name)?.shape, t.shape);
      assert.deepEqual(await m.read(name), bytesOf.get(name));
    }
    assert.deepEqual([...await m.readF32("model.layers.0.self_attn.q_proj.bias")], [1, -2, 3]);
  });
});

Deno.test("hf_shards: one shard is model.safetensors without an index, byte-identical to writeSafetensors", async () => {
  await withTempDir(async (dir) => {
    const w = await writeShardedWeights(`${dir}/a`, specs, (n) => bytesOf.get(n)!, { maxShardBytes: 1 << 20 });
    assert.deepEqual(w.files, ["model.safetensors"]);
    assert.equal(await exists(`${dir}/a/${WEIGHTS_INDEX_FILE}`), false);
    await writeSafetensors(`${dir}/b.safetensors`, Object.fromEntries(TENSORS), { format: "pt" });
    assert.deepEqual(await Deno.readFile(`${dir}/a/model.safetensors`), await Deno.readFile(`${dir}/b.safetensors`));
  });
});

Deno.test("safetensors: a streamed tensor of the wrong size is an error naming it, and no file is left", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/x.safetensors`;
    await assert.rejects(
      writeSafetensorsStream(path, { w: { dtype: "BF16", shape: [2, 3] } }, () => new Uint8Array(10)),
      /tensor "w" came with 10 bytes, BF16\[2, 3\] needs 12/,
    );
    assert.equal(await exists(path), false);
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  });
});
