/**
 * Export: merged LoRA / DoRA folders loaded back compute base+adapter's logits (reference executor, 1e-5);
 * sharding and its index round-trip; dtypes; the `export` verb's YAML keys; and, when the project's Python venv
 * exists, transformers loads the exported folder and computes the same logits (1e-4).
 */
import assert from "node:assert/strict";
import { openModelFolder, WEIGHTS_FILE, WEIGHTS_INDEX_FILE } from "../io/hf_folder.ts";
import { exportModel, mergeAdapter, parseExportArgs, planShards } from "./export.ts";
import { base, IDS, maxDiff, repo, tmpDir, withAdapter } from "./export_testing.ts";
import { loadModel } from "./model.ts";

const python = `${repo}.venv/bin/python`;
const hasPython = await Deno.stat(python).then(() => true, () => false);
if (!hasPython) console.warn(`export_test: ${python} is absent, so the transformers interop test is skipped`);

for (const sub of ["lora", "dora"]) {
  Deno.test(`export: merged llama/${sub} loads back with base+adapter's logits`, async () => {
    const dir = await tmpDir();
    try {
      const model = await withAdapter(sub);
      const want = (await model.forward(IDS)).logits;
      await exportModel(model, `${dir}/out`, { source: base });
      const files = [...Deno.readDirSync(`${dir}/out`)].map((e) => e.name).sort();
      assert.deepEqual(files, ["config.json", "generation_config.json", WEIGHTS_FILE]);
      const cfg = JSON.parse(await Deno.readTextFile(`${dir}/out/config.json`));
      assert.equal(cfg.torch_dtype, "float32");
      const back = await loadModel(`${dir}/out`, { executor: "reference" });
      assert.equal(back.adapter, undefined);
      const worst = maxDiff((await back.forward(IDS)).logits, want);
      assert.ok(worst <= 1e-5, `max |Δlogit| ${worst}`);
      // The adapter changes the model, so the check has teeth.
      const plain = (await (await withAdapter()).forward(IDS)).logits;
      assert.ok(maxDiff(plain, want) > 1e-3, "the adapter should change the logits");
      if (hasPython) {
        const res = await new Deno.Command(python, {
          args: [`${repo}engine/nn/export_check.py`, `${dir}/out`, JSON.stringify(IDS)],
          stdout: "piped",
          stderr: "piped",
        }).output();
        assert.equal(res.code, 0, new TextDecoder().decode(res.stderr).slice(-3000));
        const hf = JSON.parse(new TextDecoder().decode(res.stdout).trim().split("\n").at(-1)!);
        assert.deepEqual(hf.shape, [IDS.length, IDS[0].length, model.config.vocab]);
        const d = maxDiff(hf.logits, want);
        assert.ok(d <= 1e-4, `transformers vs Whetstone: max |Δlogit| ${d}`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("export: a small shardBytes writes several shards and an index that loads back identically", async () => {
  const dir = await tmpDir();
  try {
    const model = await withAdapter("lora");
    const merged = await mergeAdapter(model);
    await exportModel(model, `${dir}/one`, { source: base });
    await exportModel(model, `${dir}/many`, { source: base, shardBytes: 40_000 });
    const files = [...Deno.readDirSync(`${dir}/many`)].map((e) => e.name).filter((f) => f.startsWith("model-")).sort();
    assert.ok(files.length > 2, `expected several shards, got ${files.join(", ")}`);
    files.forEach((f, i) =>
      assert.equal(f, `model-${String(i + 1).padStart(5, "0")}-of-0000${files.length}.safetensors`)
    );
    const index = JSON.parse(await Deno.readTextFile(`${dir}/many/${WEIGHTS_INDEX_FILE}`));
    const total = [...merged.values()].reduce((a, w) => a + 4 * w.length, 0);
    assert.equal(index.metadata.total_size, total);
    assert.deepEqual(Object.keys(index.weight_map).sort(), [...merged.keys()].sort());
    assert.deepEqual([...new Set(Object.values(index.weight_map))].sort(), files);
    using folder = await openModelFolder(`${dir}/many`);
    for (const [name, w] of merged) assert.deepEqual(await folder.readF32(name), w, name);
    const a = (await (await loadModel(`${dir}/one`, { executor: "reference" })).forward(IDS)).logits;
    const b = (await (await loadModel(`${dir}/many`, { executor: "reference" })).forward(IDS)).logits;
    assert.deepEqual(b, a);
    // Exporting again over an existing folder replaces it (no stale shards left).
    await exportModel(model, `${dir}/many`, { source: base });
    assert.deepEqual([...Deno.readDirSync(`${dir}/many`)].map((e) => e.name).sort(), [
      "config.json",
      "generation_config.json",
      WEIGHTS_FILE,
    ]);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["many", "one"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("export: bf16 / f16 weights and config dtype", async () => {
  const dir = await tmpDir();
  try {
    const model = await withAdapter("dora");
    const merged = await mergeAdapter(model);
    for (const [dtype, st, torch] of [["bf16", "BF16", "bfloat16"], ["f16", "F16", "float16"]] as const) {
      await exportModel(model, `${dir}/${dtype}`, { source: base, dtype });
      const cfg = JSON.parse(await Deno.readTextFile(`${dir}/${dtype}/config.json`));
      assert.equal(cfg.torch_dtype, torch);
      assert.equal(cfg.dtype, torch);
      using folder = await openModelFolder(`${dir}/${dtype}`);
      const t = folder.tensors.get("model.layers.0.self_attn.q_proj.weight")!;
      assert.equal(t.dtype, st);
      const got = await folder.readF32("model.layers.0.self_attn.q_proj.weight");
      const want = merged.get("model.layers.0.self_attn.q_proj.weight")!;
      const rel = dtype === "bf16" ? 2 ** -8 : 2 ** -11;
      for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i] - want[i]) <= rel * Math.abs(want[i]) + 1e-7);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("export: planShards groups in order and gives an oversized tensor its own shard", () => {
  assert.deepEqual(planShards([["a", 4], ["b", 4], ["c", 10], ["d", 1]], 8), [["a", "b"], ["c"], ["d"]]);
  assert.deepEqual(planShards([["a", 4]], 1e9), [["a"]]);
  assert.throws(() => planShards([["a", 4]], 0), /shardBytes/);
});

Deno.test("export: YAML keys", () => {
  const ok = { model_name_or_path: "m", adapter_name_or_path: "a", export_dir: "out", template: "llama3" };
  assert.deepEqual(parseExportArgs(ok, { torch_dtype: "bfloat16" }), {
    modelNameOrPath: "m",
    adapterNameOrPath: "a",
    exportDir: "out",
    exportSize: 5,
    dtype: "bf16",
    onnx: false,
    template: "llama3",
  });
  assert.equal(parseExportArgs({ ...ok, export_onnx: true }).onnx, true);
  const llama = JSON.parse(Deno.readTextFileSync(new URL("../../fixtures/models/llama/config.json", import.meta.url)));
  assert.equal(parseExportArgs({ ...ok, export_onnx: true }, llama).onnx, true);
  const mla = JSON.parse(
    Deno.readTextFileSync(new URL("../../fixtures/models/deepseek_v3/config.json", import.meta.url)),
  );
  assert.equal(parseExportArgs(ok, mla).onnx, false); // no ONNX asked: nothing to refuse
  assert.throws(
    () => parseExportArgs({ ...ok, export_onnx: true }, mla),
    /export_onnx: model_type "deepseek_v3" uses features the ONNX exporter does not implement: multi-head latent/,
  );
  assert.throws(() => parseExportArgs({ ...ok, template: "llama9" }), /template: Template llama9 does not exist/);
  assert.throws(() => parseExportArgs({ ...ok, export_onnx_cache_length: 64 }), /export_onnx_cache_length: no longer/);
  assert.equal(parseExportArgs({ ...ok, export_size: 1, infer_dtype: "float32" }, {}).dtype, "f32");
  assert.equal(parseExportArgs({ ...ok, export_size: 2 }).exportSize, 2);
  assert.throws(() => parseExportArgs({ ...ok, export_legacy_format: true }), /export_legacy_format/);
  assert.throws(() => parseExportArgs({ ...ok, export_dir: undefined }), /export_dir/);
  assert.throws(() => parseExportArgs({ ...ok, export_size: 0 }), /export_size/);
  assert.throws(() => parseExportArgs({ ...ok, export_quantization_bit: 4 }), /export_quantization_bit/);
  assert.throws(() => parseExportArgs({ ...ok, quantization_bit: 4 }), /quantization_bit: Cannot merge adapters/);
  assert.throws(() => parseExportArgs({ ...ok, adapter_name_or_path: "a,b" }), /one adapter/);
  assert.throws(() => parseExportArgs({ ...ok, infer_dtype: "int8" }), /infer_dtype/);
});
