/**
 * The ONNX export opens in transformers.js (@huggingface/transformers) as an Optimum export does, local files only:
 * - `AutoModelForCausalLM.from_pretrained` on the exported folders of fixtures/models/<family> gives torch
 *   transformers' greedy tokens (fixtures/models/<family>/generate.json, made by fixtures/make_models.py), with no
 *   dtype passed (config.json's `transformers.js_config` picks onnx/model.onnx);
 * - on the merged export of the tiny pretrained model, `AutoTokenizer` + `AutoModelForCausalLM` greedy-generate a
 *   left-padded batch of two prompts of different lengths, and each row's tokens are Whetstone's own greedy tokens
 *   for that prompt alone (the engine's generation is checked against transformers' goldens in generate_test.ts).
 */
import assert from "node:assert/strict";
import { loadTransformersJs } from "../../deps.ts";
import { loadTokenizer } from "../data/tokenizer.ts";
import { exportModel } from "./export.ts";
import { loadModel } from "./model.ts";
import { exportOnnxBeside } from "./onnx_export.ts";
import { DENSE } from "./families_testing.ts";

const fixtures = new URL("../../fixtures/", import.meta.url).pathname;
const tmp = await Deno.makeTempDir({ prefix: "whetstone-transformers-js-" });
// The temporary folder goes when the test module unloads.
globalThis.addEventListener("unload", () => Deno.removeSync(tmp, { recursive: true }));

/** transformers.js reading models from `tmp` only (never the Hub). */
async function transformersJs() {
  const t = await loadTransformersJs();
  t.env.allowRemoteModels = false;
  t.env.allowLocalModels = true;
  t.env.localModelPath = `${tmp}/`;
  t.env.useBrowserCache = false;
  t.env.useFSCache = false;
  return t;
}

/** Exports `source` (merged HF folder + onnx/) to `tmp/name`. */
async function exportFolder(source: string, name: string, template?: string): Promise<void> {
  const model = await loadModel(source, { executor: "reference", dtype: "f32" });
  try {
    await exportModel(model, `${tmp}/${name}`, { source, template });
  } finally {
    model.executor.dispose();
  }
  const merged = await loadModel(`${tmp}/${name}`, { executor: "reference" });
  try {
    await exportOnnxBeside(merged, `${tmp}/${name}`);
  } finally {
    merged.executor.dispose();
  }
}

interface GenGolden {
  eos: number[];
  max_new_tokens: number;
  runs: { prompt: number[]; new_tokens: number[] }[];
}

// Every exported family transformers.js has a model type for (it has none for glm4 and mixtral).
const JS_FAMILIES = [
  "llama",
  "gemma2",
  "phi3",
  "qwen3",
  ...DENSE.filter((f) => f !== "glm4"),
  "qwen2_moe",
  "qwen3_moe",
  "gpt_oss",
];
for (const family of JS_FAMILIES) {
  Deno.test(`transformers.js opens the ${family} export and gives torch transformers' greedy tokens`, async () => {
    const gold: GenGolden = JSON.parse(await Deno.readTextFile(`${fixtures}models/${family}/generate.json`));
    await exportFolder(`${fixtures}models/${family}`, family);
    const t = await transformersJs();
    const model = await t.AutoModelForCausalLM.from_pretrained(family, { local_files_only: true });
    try {
      for (const run of gold.runs) {
        const ids = new t.Tensor("int64", BigInt64Array.from(run.prompt, BigInt), [1, run.prompt.length]);
        const out = await model.generate({
          input_ids: ids,
          attention_mask: t.ones_like(ids),
          max_new_tokens: gold.max_new_tokens,
          do_sample: false,
          eos_token_id: gold.eos,
        }) as InstanceType<typeof t.Tensor>;
        const got = Array.from(out.data as BigInt64Array, Number).slice(run.prompt.length);
        assert.deepEqual(got, run.new_tokens, `${family} [${run.prompt}]`);
      }
    } finally {
      await model.dispose();
    }
  });
}

Deno.test("transformers.js: AutoTokenizer + AutoModelForCausalLM on a left-padded batch give Whetstone's greedy tokens", async () => {
  const source = `${fixtures}tiny/model`;
  await exportFolder(source, "tiny", "qwen");
  const t = await transformersJs();
  const tokenizer = await t.AutoTokenizer.from_pretrained("tiny", { local_files_only: true });
  const model = await t.AutoModelForCausalLM.from_pretrained("tiny", { local_files_only: true, dtype: "fp32" });
  const texts = ["The quick brown fox jumps over the lazy dog and", "Once upon"];
  const max = 8;
  try {
    tokenizer.padding_side = "left";
    const inputs = tokenizer(texts, { padding: true });
    const out = await model.generate({
      ...inputs,
      max_new_tokens: max,
      min_new_tokens: max,
      do_sample: false,
      repetition_penalty: 1,
    }) as InstanceType<typeof t.Tensor>;
    const [B, L] = out.dims;
    const P = inputs.input_ids.dims[1];
    const ours = await loadModel(`${tmp}/tiny`, { executor: "reference" });
    const tok = await loadTokenizer(`${tmp}/tiny`);
    try {
      assert.equal(B, 2);
      for (let b = 0; b < B; b++) {
        const prompt = tok.encode(texts[b], { addSpecialTokens: false });
        const row = Array.from((out.data as BigInt64Array).subarray(b * L, (b + 1) * L), Number);
        assert.deepEqual(row.slice(P - prompt.length, P), prompt, "transformers.js tokenizes as Whetstone does");
        const want = await ours.generate(prompt, { maxNewTokens: max });
        assert.deepEqual(row.slice(P), want, `row ${b}: "${texts[b]}"`);
      }
    } finally {
      ours.executor.dispose();
    }
  } finally {
    await model.dispose();
  }
});
