/**
 * Prediction end to end on the built-in tiny model with a LoRA adapter over rows of the demo data: the files LF
 * writes, predictions equal to model.generate on the same prompts, metrics equal to computeSimilarity over the
 * written JSONL; the YAML keys and LF's argument checks; the CLI; the loss-only path of stage pt.
 */
import assert from "node:assert/strict";
import { parseTrainArgs } from "../config/args.ts";
import { getTemplate } from "../data/template.ts";
import { loadTokenizer } from "../data/tokenizer.ts";
import { computeSimilarity } from "../eval/metrics.ts";
import { attachAdapter, saveAdapter } from "../nn/lora.ts";
import { loadModel } from "../nn/model.ts";
import { trainFromConfig } from "./from_config.ts";
import { decodeIds } from "../data/decode_ids.ts";
import { predict, type PredictArgs, predictProblems, pyJsonLine } from "./predict.ts";
import { writePaddedVocabModel } from "../nn/vocab_testing.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const TINY = `${ROOT}fixtures/tiny/model`, DEMO = `${ROOT}fixtures/demo`;
const SYSTEM = "You are a helpful assistant.";
const root = await Deno.makeTempDir({ prefix: "whetstone-predict-" });
// The temporary folder goes when the test module unloads.
globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));

// A LoRA adapter with non-zero B (PEFT's init_lora_weights=False), so that it changes the answers.
const adapter = `${root}/adapter`;
{
  const m = await loadModel(TINY, { executor: "reference" });
  await attachAdapter(m, { r: 4, init: false }, { seed: 3, baseModel: TINY });
  await saveAdapter(m, adapter);
}

function args(extra: Record<string, unknown> = {}): PredictArgs {
  return parseTrainArgs({
    model_name_or_path: TINY,
    adapter_name_or_path: adapter,
    stage: "sft",
    do_predict: true,
    finetuning_type: "lora",
    eval_dataset: "whetstone_demo",
    dataset_dir: DEMO,
    template: "qwen",
    default_system: SYSTEM,
    cutoff_len: 128,
    max_samples: 3,
    output_dir: `${root}/predict`,
    per_device_eval_batch_size: 2,
    predict_with_generate: true,
    do_sample: false,
    max_new_tokens: 12,
    ...extra,
  });
}

Deno.test("predict: greedy predictions equal model.generate; files and metrics as LLaMA-Factory writes them", async () => {
  const a = args();
  const res = await predict(a, { log: () => {}, progress: false });
  const out = a.output_dir;

  // generated_predictions.jsonl: one {"prompt", "predict", "label"} per row, Python json.dumps spacing.
  const text = await Deno.readTextFile(`${out}/generated_predictions.jsonl`);
  const lines = text.trimEnd().split("\n");
  assert.equal(lines.length, 3);
  const rows = lines.map((l) => JSON.parse(l));
  for (const [i, l] of lines.entries()) {
    assert.deepEqual(Object.keys(rows[i]), ["prompt", "predict", "label"]);
    assert.equal(l, pyJsonLine(rows[i]));
  }
  assert.deepEqual(rows, res.predictions);

  // The same prompts, built independently from the demo file, answered by model.generate one at a time.
  const demo = JSON.parse(await Deno.readTextFile(`${DEMO}/whetstone_demo.json`)).slice(0, 3);
  const tpl = getTemplate(await loadTokenizer(TINY), { template: "qwen", defaultSystem: SYSTEM });
  const model = await loadModel(TINY, { adapter });
  for (const [i, row] of demo.entries()) {
    const [prompt] = tpl.encodeOneturn([{ role: "user", content: row.instruction }, {
      role: "assistant",
      content: "",
    }]);
    const ids = await model.generate(prompt, { maxNewTokens: 12, stop: tpl.stopTokenIds() });
    assert.deepEqual(res.generated[i], ids, `row ${i}`);
    assert.equal(rows[i].predict, decodeIds(tpl, ids, true));
    assert.equal(rows[i].prompt, tpl.tokenizer.decode(prompt));
    assert.ok(rows[i].prompt.includes("<|im_start|>assistant\n"), rows[i].prompt); // special tokens kept
    assert.equal(rows[i].label.trimEnd(), row.output); // the response; <|im_end|> skipped
  }
  assert.ok(res.generated.some((g) => g.length === 12), "expected some answer cut at max_new_tokens");

  // predict_results.json: HF's key names; the scores are ComputeSimilarity over the written JSONL.
  const results = JSON.parse(await Deno.readTextFile(`${out}/predict_results.json`));
  assert.deepEqual(Object.keys(results), [
    "predict_bleu-4",
    "predict_rouge-1",
    "predict_rouge-2",
    "predict_rouge-l",
    "predict_runtime",
    "predict_samples_per_second",
    "predict_steps_per_second",
  ]);
  const want = await computeSimilarity(rows.map((r) => r.predict), rows.map((r) => r.label));
  for (const [k, v] of Object.entries(want)) assert.equal(results[`predict_${k}`], v, k);
  assert.ok(results.predict_runtime > 0 && results.predict_samples_per_second > 0);
  assert.ok(Math.abs(results.predict_steps_per_second - 2 / results.predict_runtime) < 1e-2);
  assert.deepEqual(JSON.parse(await Deno.readTextFile(`${out}/all_results.json`)), results);
});

Deno.test("predict: YAML keys with LF's defaults, and LF's argument checks", () => {
  const a = parseTrainArgs({ model_name_or_path: "m", eval_dataset: "d" });
  assert.deepEqual(
    [a.do_predict, a.predict_with_generate, a.do_sample, a.temperature, a.top_p, a.top_k, a.max_new_tokens],
    [false, false, true, 0.95, 0.7, 50, 1024],
  );
  assert.deepEqual([a.max_length, a.repetition_penalty, a.skip_special_tokens], [1024, 1, true]);
  assert.deepEqual(predictProblems(args()), []);
  assert.deepEqual(predictProblems(args({ predict_with_generate: false })), [
    "do_predict: Please enable `predict_with_generate` to save model predictions.",
  ]);
  assert.match(predictProblems(args({ stage: "pt" })).join("\n"), /cannot be set as True except SFT/);
  assert.match(predictProblems(args({ eval_dataset: null })).join("\n"), /Please specify dataset for evaluation/);
  assert.throws(() => args({ num_beams: 2 }), /num_beams is not supported by Whetstone yet \(beam search\)/);
  assert.throws(() => args({ top_p: 1.5 }), /top_p/);
  assert.equal(pyJsonLine({ a: 'x"\n\u0001é\\' }), '{"a": "x\\"\\n\\u0001é\\\\"}');
});

Deno.test("predict: the train CLI runs a prediction-only config (sampling) and the loss-only path of stage pt", async () => {
  const out = `${root}/cli`;
  const yaml = `${root}/predict.yaml`;
  await Deno.writeTextFile(
    yaml,
    (await Deno.readTextFile(`${ROOT}examples/demo_predict.yaml`))
      .replace("model_name_or_path: fixtures/tiny/model", `model_name_or_path: ${TINY}`)
      .replace("adapter_name_or_path: out/demo-lora", `adapter_name_or_path: ${adapter}`)
      .replace("dataset_dir: fixtures/demo", `dataset_dir: ${DEMO}`),
  );
  const quiet = console.error;
  console.error = () => {};
  try {
    await trainFromConfig(yaml, [`output_dir=${out}`, "max_samples=2", "max_new_tokens=4", "do_sample=true"]);
  } finally {
    console.error = quiet;
  }
  assert.equal((await Deno.readTextFile(`${out}/generated_predictions.jsonl`)).trimEnd().split("\n").length, 2);
  assert.ok("predict_bleu-4" in JSON.parse(await Deno.readTextFile(`${out}/predict_results.json`)));

  const pt = args({
    stage: "pt",
    predict_with_generate: false,
    eval_dataset: "whetstone_text",
    max_samples: 4,
    cutoff_len: 32,
    output_dir: `${root}/pt`,
  });
  const res = await predict(pt, { log: () => {}, progress: false });
  assert.ok(res.metrics.predict_loss > 0 && res.metrics.predict_loss < 20, String(res.metrics.predict_loss));
  assert.equal(res.metrics.predict_perplexity, Math.exp(res.metrics.predict_loss));
});

Deno.test("predict: a model padded past its tokenizer generates only ids the tokenizer decodes", async () => {
  // fixtures/tiny/model with 2048 padded rows (row 2048 + i = 10 × row i): unmasked, a padded id wins every step.
  const { dir, vocab } = await writePaddedVocabModel(TINY, `${root}/padded`, 2048);
  for (const do_sample of [false, true]) {
    const a = args({
      model_name_or_path: dir,
      adapter_name_or_path: null,
      do_sample,
      output_dir: `${root}/padded-out`,
    });
    const res = await predict(a, { log: () => {}, progress: false });
    assert.equal(res.generated.length, 3);
    for (const ids of res.generated) assert.ok(ids.length > 0 && ids.every((t) => t < vocab), `${do_sample}: ${ids}`);
  }
});
