/**
 * ONNX export (Optimum layout): onnxruntime alone runs `onnx/model.onnx` for a batch of the two golden prompts of
 * different lengths (left padding, attention_mask, position_ids, the present fed back as the past) and gets
 * transformers' greedy tokens (fixtures/models/<family>/generate.json) for each, with every step's logits within
 * 1e-4 of the engine's unbatched forward (every family: dense, new dense with their RoPE scalings, mixture of
 * experts); the same with each fixture's unmerged LoRA adapter and with external data; longrope's long factors;
 * and the refusal of a config the exporter does not compute exactly.
 */
import assert from "node:assert/strict";
import { loadModel, type Model } from "./model.ts";
import { exportOnnxBeside } from "./onnx_export.ts";
import { OnnxDecoder } from "./onnx_decoder.ts";
import { attachAdapter } from "./lora.ts";
import { decoderConfig } from "./config.ts";
import { buildDecoderOnnx } from "./onnx_graph.ts";

import { DENSE, DENSE_LORA } from "./families_testing.ts";
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

/** Exports `model` beside a copy of `family`'s config.json; the batched greedy run against the engine. */
async function checkBatch(
  model: Model,
  family: string,
  dir: string,
  gold?: GenGolden,
  external = false,
  promptsNoGold = [[1, 5, 9, 3, 7, 2, 8], [4, 6, 10]],
) {
  await Deno.mkdir(dir, { recursive: true });
  await Deno.copyFile(`${root}${family}/config.json`, `${dir}/config.json`);
  const info = await exportOnnxBeside(model, dir, external ? { externalDataBytes: 0 } : {});
  assert.deepEqual(info.files, external ? ["model.onnx", "model.onnx_data"] : ["model.onnx"]);
  const L = model.config.layers;
  assert.deepEqual(info.inputs.slice(0, 3), ["input_ids", "attention_mask", "position_ids"]);
  assert.equal(info.inputs.length, 3 + 2 * L);
  assert.deepEqual(info.outputs.filter((o) => o.startsWith("present.")).length, 2 * L);
  assert.deepEqual(info.outputs.slice(0, 3), ["logits", "present.0.key", "present.0.value"]);
  assert.equal(info.inputs.at(-1), `past_key_values.${L - 1}.value`);
  const cfg = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
  assert.deepEqual(cfg["transformers.js_config"], {
    dtype: "fp32",
    ...(external && { use_external_data_format: true }),
  });

  const dec = await OnnxDecoder.load(dir, { threads: 1 });
  const prompts = gold?.runs.map((r) => r.prompt) ?? promptsNoGold;
  const max = gold?.max_new_tokens ?? 6, V = model.config.vocab;
  const steps: Float32Array[][] = prompts.map(() => []);
  const got = await dec.generate(prompts, {
    maxNewTokens: max,
    stop: gold?.eos ?? [],
    onLogits: (l, b) => steps[b].push(l.slice()),
  });
  assert.notEqual(prompts[0].length, prompts[1].length);
  for (const [b, p] of prompts.entries()) {
    if (gold) assert.deepEqual(got[b], gold.runs[b].new_tokens, `${family} prompt ${b} [${p}]`);
    const { logits } = await model.forward([[...p, ...got[b]]]);
    steps[b].forEach((l, k) => {
      const at = p.length - 1 + k;
      const d = maxDiff(l, logits.subarray(at * V, (at + 1) * V));
      assert.ok(d <= 1e-4, `${family} prompt ${b} step ${k}: logits differ by ${d}`);
    });
  }
}

const MOE = ["mixtral", "qwen2_moe", "qwen3_moe"];
for (const family of ["llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", ...DENSE, ...MOE]) {
  Deno.test(`onnx export ${family}: a left-padded batch of two gives transformers' greedy tokens and the engine's logits`, async () => {
    const gold: GenGolden = JSON.parse(await Deno.readTextFile(`${root}${family}/generate.json`));
    const model = await loadModel(`${root}${family}`, { executor: "reference", dtype: "f32" });
    try {
      await checkBatch(model, family, `${tmp}/${family}`, gold);
    } finally {
      model.executor.dispose();
    }
  });
}

for (const family of [...DENSE_LORA, ...MOE]) {
  Deno.test(`onnx export ${family} with its unmerged LoRA adapter: the engine's base + adapter`, async () => {
    const model = await loadModel(`${root}${family}`, { executor: "reference", dtype: "f32" });
    await attachAdapter(model, `${root}${family}/lora`);
    try {
      await checkBatch(model, family, `${tmp}/${family}-lora`);
    } finally {
      model.executor.dispose();
    }
  });
}

Deno.test("onnx export with an unmerged LoRA adapter and external data: the engine's base + adapter", async () => {
  const model = await loadModel(`${root}llama`, { executor: "reference", dtype: "f32" });
  await attachAdapter(model, `${root}llama/lora`);
  try {
    await checkBatch(model, "llama", `${tmp}/llama-lora`, undefined, true);
  } finally {
    model.executor.dispose();
  }
});

Deno.test("onnx export phi3_longrope_long: prompts past original_max_position_embeddings use the long factors", async () => {
  // Every forward sees max(position_ids) + 1 > 8, so transformers, the engine and the graph all use the long factors.
  const model = await loadModel(`${root}phi3_longrope_long`, { executor: "reference", dtype: "f32" });
  try {
    const prompts = [[1, 5, 9, 3, 7, 2, 8, 11, 4, 6, 10, 12], [4, 6, 10, 3, 9, 1, 2, 7, 5, 8]];
    await checkBatch(model, "phi3_longrope_long", `${tmp}/phi3_longrope_long`, undefined, false, prompts);
  } finally {
    model.executor.dispose();
  }
});

Deno.test("onnx export refuses, naming model_type and feature, what it cannot compute exactly", async () => {
  const c = decoderConfig(JSON.parse(await Deno.readTextFile(`${root}deepseek_v3/config.json`)));
  assert.throws(
    () => buildDecoderOnnx(c, new Map()),
    /ONNX export: model_type "deepseek_v3" uses features the exporter does not implement: multi-head latent/,
  );
});

// gpt_oss (attention sinks, router bias, clamped SwiGLU experts; onnx_moe_gpt_oss.ts): its greedy tokens, also with its
// LoRA adapter and from the dequantized MXFP4 fixture.
for (const [family, lora] of [["gpt_oss", false], ["gpt_oss", true], ["gpt_oss_mxfp4", false]] as const) {
  Deno.test(`onnx export ${family}${lora ? " with its unmerged LoRA adapter" : ""}: batched greedy tokens, the engine's logits`, async () => {
    const gold: GenGolden = JSON.parse(await Deno.readTextFile(`${root}${family}/generate.json`));
    const model = await loadModel(`${root}${family}`, { executor: "reference", dtype: "f32" });
    if (lora) await attachAdapter(model, `${root}${family}/lora`);
    try {
      await checkBatch(model, family, `${tmp}/${family}${lora ? "-lora" : ""}`, lora ? undefined : gold);
    } finally {
      model.executor.dispose();
    }
  });
}
