/**
 * ONNX export: the exported prefill/decode files, run by onnxruntime alone (OnnxDecoder), give transformers'
 * greedy tokens (fixtures/models/<family>/generate.json) and the engine's logits within 1e-4, for plain models
 * and with an unmerged LoRA adapter.
 */
import assert from "node:assert/strict";
import { loadModel } from "./model.ts";
import { exportOnnx } from "./onnx_export.ts";
import { OnnxDecoder } from "./onnx_decoder.ts";
import { attachAdapter } from "./lora.ts";

import { DENSE } from "./families_testing.ts";
const root = new URL("../../fixtures/models/", import.meta.url).pathname;
const tmp = await Deno.makeTempDir({ prefix: "whetstone-onnx-export-" });
// The temporary folder goes when the test module unloads.
globalThis.addEventListener("unload", () => Deno.removeSync(tmp, { recursive: true }));

interface GenGolden {
  eos: number[];
  max_new_tokens: number;
  runs: { prompt: number[]; new_tokens: number[] }[];
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return a.length === b.length ? worst : Infinity;
}

for (const family of ["llama", "gemma2", "phi3", ...DENSE]) {
  Deno.test(`onnx export ${family}: onnxruntime alone gives transformers' greedy tokens and the engine's logits`, async () => {
    const gold: GenGolden = JSON.parse(await Deno.readTextFile(`${root}${family}/generate.json`));
    const model = await loadModel(`${root}${family}`, { executor: "reference" });
    const dir = `${tmp}/${family}`;
    const cfg = await exportOnnx(model, dir, { cacheLength: 64, prefillLength: 16 });
    assert.deepEqual(cfg.decode.outputs.filter((o) => o.startsWith("present.")).length, 2 * model.config.layers);
    const dec = await OnnxDecoder.load(dir);
    const V = model.config.vocab;
    for (const run of gold.runs) {
      const steps: Float32Array[] = [];
      const got = await dec.generate(run.prompt, {
        maxNewTokens: gold.max_new_tokens,
        stop: gold.eos,
        onLogits: (l) => steps.push(l.slice()),
      });
      assert.deepEqual(got, run.new_tokens, `prompt [${run.prompt}]`);
      const all = [...run.prompt, ...got];
      const { logits } = await model.forward([all]);
      steps.forEach((l, k) => {
        const at = run.prompt.length - 1 + k;
        const d = maxDiff(l, logits.subarray(at * V, (at + 1) * V));
        assert.ok(d <= 1e-4, `step ${k}: logits differ by ${d}`);
      });
    }
  });
}

Deno.test("onnx export with an unmerged LoRA adapter: logits equal the engine's base + adapter", async () => {
  const model = await loadModel(`${root}llama`, { executor: "reference", dtype: "f32" });
  await attachAdapter(model, `${root}llama/lora`);
  const dir = `${tmp}/llama-lora`;
  await exportOnnx(model, dir, { cacheLength: 64, prefillLength: 8, batch: 2 });
  const dec = await OnnxDecoder.load(dir);
  const prompts = [[1, 5, 9, 3], [2, 7]];
  const V = model.config.vocab;
  const { logits, cache } = await dec.prefillRun(prompts);
  const next = await dec.decodeRun([11, 12], [4, 2], cache);
  for (let b = 0; b < 2; b++) {
    const ref = (await model.forward([[...prompts[b], 11 + b]])).logits;
    const n = prompts[b].length;
    const d0 = maxDiff(logits.subarray(b * V, (b + 1) * V), ref.subarray((n - 1) * V, n * V));
    const d1 = maxDiff(next.logits.subarray(b * V, (b + 1) * V), ref.subarray(n * V, (n + 1) * V));
    assert.ok(d0 <= 1e-4 && d1 <= 1e-4, `row ${b}: prefill ${d0}, decode ${d1}`);
  }
});

Deno.test("onnx export: bad sizes are errors naming the option", async () => {
  const model = await loadModel(`${root}llama`, { executor: "reference" });
  await assert.rejects(
    exportOnnx(model, `${tmp}/bad`, { cacheLength: 8, prefillLength: 16 }),
    /prefillLength 16 exceeds/,
  );
  await assert.rejects(exportOnnx(model, `${tmp}/bad`, { batch: 0 }), /batch must be a positive integer/);
});
