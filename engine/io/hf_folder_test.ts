import assert from "node:assert/strict";
import { openModelFolder } from "./hf_folder.ts";
import { writeSafetensors } from "./safetensors.ts";

async function withTempDir(f: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "whetstone_hf_" });
  try {
    await f(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const config = { model_type: "llama", hidden_size: 4, num_hidden_layers: 2 };

async function rejects(dir: string, pattern: RegExp) {
  await assert.rejects(openModelFolder(dir), (e: Error) => {
    assert.match(e.message, pattern);
    assert.ok(e.message.includes(dir), `error should name the folder: ${e.message}`);
    return true;
  });
}

Deno.test("hf_folder: single model.safetensors with configs", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config));
    await Deno.writeTextFile(`${dir}/generation_config.json`, JSON.stringify({ eos_token_id: 2 }));
    await writeSafetensors(`${dir}/model.safetensors`, {
      "embed.weight": { dtype: "BF16", shape: [3, 4], data: Array.from({ length: 12 }, (_, i) => i / 4) },
      "norm.weight": { dtype: "F32", shape: [4], data: [1, 2, 3, 4] },
    }, { format: "pt" });
    using m = await openModelFolder(`${dir}/`);
    assert.equal(m.dir, dir);
    assert.deepEqual(m.config, config);
    assert.deepEqual(m.generationConfig, { eos_token_id: 2 });
    assert.deepEqual(m.metadata, { format: "pt" });
    assert.deepEqual(m.tensors.get("embed.weight"), {
      file: "model.safetensors",
      dtype: "BF16",
      shape: [3, 4],
      byteLength: 24,
    });
    assert.deepEqual([...await m.readF32("embed.weight")], Array.from({ length: 12 }, (_, i) => i / 4));
    assert.deepEqual([...new Float32Array((await m.read("norm.weight")).buffer)], [1, 2, 3, 4]);
    await assert.rejects(m.read("lm_head.weight"), /no weight named "lm_head.weight"/);
  });
});

async function sharded(dir: string, weightMap: Record<string, string>, rawIndex?: string) {
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config));
  await writeSafetensors(`${dir}/model-00001-of-00002.safetensors`, {
    "a.weight": { dtype: "F32", shape: [2], data: [1, 2] },
    "b.weight": { dtype: "F16", shape: [2], data: [3, 4] },
  });
  await writeSafetensors(`${dir}/model-00002-of-00002.safetensors`, {
    "c.weight": { dtype: "I64", shape: [3], data: [5, 6, 7] },
  });
  await Deno.writeTextFile(
    `${dir}/model.safetensors.index.json`,
    rawIndex ?? JSON.stringify({ metadata: { total_size: 36 }, weight_map: weightMap }),
  );
}

const goodMap = {
  "a.weight": "model-00001-of-00002.safetensors",
  "b.weight": "model-00001-of-00002.safetensors",
  "c.weight": "model-00002-of-00002.safetensors",
};

Deno.test("hf_folder: sharded weights through the index", async () => {
  await withTempDir(async (dir) => {
    await sharded(dir, goodMap);
    using m = await openModelFolder(dir);
    assert.equal(m.generationConfig, undefined);
    assert.deepEqual([...m.tensors.keys()], ["a.weight", "b.weight", "c.weight"]);
    assert.equal(m.tensors.get("c.weight")!.file, "model-00002-of-00002.safetensors");
    assert.deepEqual([...await m.readF32("a.weight")], [1, 2]);
    assert.deepEqual([...await m.readF32("b.weight")], [3, 4]);
    assert.deepEqual([...await m.readF32("c.weight")], [5, 6, 7]);
  });
});

Deno.test("hf_folder: errors name the folder and what is wrong", async () => {
  await withTempDir(async (root) => {
    const d = async (name: string) => {
      await Deno.mkdir(`${root}/${name}`);
      return `${root}/${name}`;
    };
    await rejects(`${root}/absent`, /does not exist/);

    const noConfig = await d("noconfig");
    await rejects(noConfig, /no config\.json/);

    const noWeights = await d("noweights");
    await Deno.writeTextFile(`${noWeights}/config.json`, "{}");
    await rejects(noWeights, /no weights \(model\.safetensors or model\.safetensors\.index\.json\)/);

    const bin = await d("bin");
    await Deno.writeTextFile(`${bin}/config.json`, "{}");
    await Deno.writeFile(`${bin}/pytorch_model.bin`, new Uint8Array(4));
    await rejects(bin, /only safetensors weights are supported.*pytorch_model\.bin/);

    const badConfig = await d("badconfig");
    await Deno.writeTextFile(`${badConfig}/config.json`, "{oops");
    await rejects(badConfig, /config\.json is not valid JSON/);

    const missingShard = await d("missingshard");
    await sharded(missingShard, { ...goodMap, "d.weight": "model-00003-of-00003.safetensors" });
    await rejects(missingShard, /names shard model-00003-of-00003\.safetensors, which is not in the folder/);

    const lacking = await d("lacking");
    await sharded(lacking, { ...goodMap, "c.weight": "model-00001-of-00002.safetensors" });
    await rejects(lacking, /puts "c\.weight" in model-00001-of-00002\.safetensors, which lacks it/);

    const twice = await d("twice");
    const s1 = "model-00001-of-00002.safetensors", s2 = "model-00002-of-00002.safetensors";
    await sharded(
      twice,
      {},
      `{"weight_map": {"a.weight": "${s1}", "b.weight": "${s1}", "c.weight": "${s2}", "a.weight": "${s2}"}}`,
    );
    await rejects(twice, /weight "a\.weight" is listed twice/);

    const escape = await d("escape");
    await sharded(escape, { ...goodMap, "a.weight": "../x.safetensors" });
    await rejects(escape, /maps "a\.weight" to "\.\.\/x\.safetensors"/);

    const corrupt = await d("corrupt");
    await Deno.writeTextFile(`${corrupt}/config.json`, "{}");
    await Deno.writeFile(`${corrupt}/model.safetensors`, new Uint8Array(3));
    await rejects(corrupt, /model\.safetensors: not a safetensors file/);
  });
});
