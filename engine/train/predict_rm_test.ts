/**
 * Stage rm prediction on the built-in tiny model: a short examples/demo_rm.yaml run with `do_predict` (the trained
 * model scores the pairs), then a prediction-only run from the saved adapter and value head, which must give the
 * same scores; the files and metrics as LLaMA-Factory's PairwiseTrainer writes them.
 */
import assert from "node:assert/strict";
import { parseTrainArgs } from "../config/args.ts";
import { trainFromConfig } from "./from_config.ts";
import { predict, predictProblems } from "./predict.ts";
import { rmPredictionLine } from "./predict_rm.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

Deno.test("predict_rm: {chosen, rejected} lines and predict_loss / predict_accuracy, trained and reloaded alike", async () => {
  const root = await Deno.makeTempDir({ prefix: "whetstone-predict-rm-" });
  try {
    const yaml = `${root}/rm.yaml`;
    await Deno.writeTextFile(
      yaml,
      (await Deno.readTextFile(`${ROOT}examples/demo_rm.yaml`))
        .replace("model_name_or_path: fixtures/tiny/model", `model_name_or_path: ${ROOT}fixtures/tiny/model`)
        .replace("dataset_dir: fixtures/demo", `dataset_dir: ${ROOT}fixtures/demo`),
    );
    const trained = `${root}/trained`;
    const quiet = console.error;
    console.error = () => {};
    try {
      await trainFromConfig(yaml, [
        `output_dir=${trained}`,
        "max_samples=8",
        "max_steps=2",
        "cutoff_len=64",
        "val_size=0",
        "eval_strategy=no",
        "plot_loss=false",
        "do_predict=true",
        "eval_dataset=whetstone_pref",
        "per_device_eval_batch_size=3",
      ]);
    } finally {
      console.error = quiet;
    }
    const text = await Deno.readTextFile(`${trained}/generated_predictions.jsonl`);
    assert.ok(!text.endsWith("\n"), "LF joins the lines with \\n and writes no final newline");
    const lines = text.split("\n");
    assert.equal(lines.length, 8);
    for (const l of lines) assert.match(l, /^\{"chosen": -?\d+\.\d{1,2}, "rejected": -?\d+\.\d{1,2}\}$/);
    const results = JSON.parse(await Deno.readTextFile(`${trained}/predict_results.json`));
    assert.deepEqual(Object.keys(results).sort(), [
      "predict_accuracy",
      "predict_loss",
      "predict_runtime",
      "predict_samples_per_second",
      "predict_steps_per_second",
    ]);

    // Prediction only, from the saved adapter and value head: the same scores, and metrics consistent with them.
    const a = parseTrainArgs({
      model_name_or_path: `${ROOT}fixtures/tiny/model`,
      adapter_name_or_path: trained,
      stage: "rm",
      do_predict: true,
      finetuning_type: "lora",
      eval_dataset: "whetstone_pref",
      dataset_dir: `${ROOT}fixtures/demo`,
      template: "qwen",
      default_system: "You are a helpful assistant.",
      cutoff_len: 64,
      max_samples: 8,
      per_device_eval_batch_size: 4,
      output_dir: `${root}/predict`,
    });
    assert.deepEqual(predictProblems(a), []);
    const logs: string[] = [];
    const res = await predict(a, { log: (s) => logs.push(s), progress: false });
    assert.ok(logs.some((l) => /value head: loaded from .*value_head\.safetensors/.test(l)), logs.join("\n"));
    const scores = res.scores!;
    assert.equal(scores.length, 8);
    const again = (await Deno.readTextFile(`${a.output_dir}/generated_predictions.jsonl`)).split("\n");
    assert.deepEqual(again, scores.map(rmPredictionLine));
    again.forEach((l, i) => {
      const [x, y] = [JSON.parse(l), JSON.parse(lines[i])];
      assert.ok(
        Math.abs(x.chosen - y.chosen) <= 0.011 && Math.abs(x.rejected - y.rejected) <= 0.011,
        `${l} vs ${lines[i]}`,
      );
    });
    const acc = scores.filter((s) => s.chosen > s.rejected).length / 8;
    const loss = scores.reduce((t, s) => t + Math.log1p(Math.exp(-(s.chosen - s.rejected))), 0) / 8;
    assert.equal(res.metrics.predict_accuracy, acc);
    assert.ok(Math.abs(res.metrics.predict_loss - loss) < 1e-9);
    assert.ok(Math.abs(results.predict_accuracy - acc) < 1e-9, "trained and reloaded models agree");
    assert.ok(Math.abs(results.predict_loss - loss) < 1e-4, `${results.predict_loss} vs ${loss}`);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("predict_rm: score lines print as Python's json.dumps(round(x, 2))", () => {
  assert.equal(rmPredictionLine({ chosen: 1.005, rejected: -0.1234 }), '{"chosen": 1.0, "rejected": -0.12}');
  assert.equal(rmPredictionLine({ chosen: 3, rejected: 2.675 }), '{"chosen": 3.0, "rejected": 2.67}');
});
