/**
 * `compute_accuracy`: the sft evaluation's `eval_accuracy` equals LLaMA-Factory's ComputeAccuracy computed here
 * independently from the trained model's logits (`Model.forward`): numpy's argmax per position, `pred[:-1]` against
 * `label[1:]` on the labelled positions, the mean per sequence, then over sequences; and the key's checks.
 */
import assert from "node:assert/strict";
import { parseTrainArgs } from "../../config/args.ts";
import type { SftRecord } from "../../data/process.ts";
import { makeTinyModel } from "../testing.ts";
import { prepareData, train } from "../trainer.ts";

const ROOT = new URL("../../../", import.meta.url).pathname;

Deno.test("compute_accuracy: eval_accuracy is LF's ComputeAccuracy over the trained model's logits", async () => {
  const root = await Deno.makeTempDir({ prefix: "whetstone-acc-" });
  try {
    const a = parseTrainArgs({
      model_name_or_path: await makeTinyModel(`${root}/model`),
      stage: "sft",
      do_train: true,
      do_eval: true,
      dataset: "whetstone_demo",
      dataset_dir: `${ROOT}fixtures/demo`,
      template: "qwen",
      cutoff_len: 64,
      max_samples: 24,
      val_size: 6,
      per_device_eval_batch_size: 4,
      output_dir: `${root}/out`,
      logging_steps: 1,
      per_device_train_batch_size: 4,
      finetuning_type: "full",
      learning_rate: 1e-2,
      max_steps: 30,
      save_strategy: "no",
      compute_accuracy: true,
    });
    const res = await train(a, { progress: false, log: () => {} });
    const all = JSON.parse(await Deno.readTextFile(`${root}/out/all_results.json`));
    assert.ok(typeof all.eval_accuracy === "number" && all.eval_accuracy > 0, JSON.stringify(all));

    const records = (await prepareData(a)).eval!.records as SftRecord[];
    assert.equal(records.length, 6);
    const accs: number[] = [];
    for (const r of records) {
      const { logits, shape } = await res.model!.forward([r.input_ids]);
      const [, L, V] = shape;
      let hit = 0, n = 0;
      for (let t = 0; t + 1 < L; t++) {
        const label = r.labels[t + 1];
        if (label === -100) continue;
        let best = 0; // numpy's argmax: the first index of the largest value
        for (let v = 1; v < V; v++) if (logits[t * V + v] > logits[t * V + best]) best = v;
        n++;
        hit += best === label ? 1 : 0;
      }
      accs.push(hit / n);
    }
    const want = accs.reduce((x, y) => x + y, 0) / accs.length;
    assert.ok(Math.abs(all.eval_accuracy - want) < 1e-9, `eval_accuracy ${all.eval_accuracy} vs ${want} (${accs})`);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("compute_accuracy: LF refuses it with predict_with_generate", () => {
  assert.throws(
    () =>
      parseTrainArgs({
        model_name_or_path: "m",
        output_dir: "o",
        compute_accuracy: true,
        predict_with_generate: true,
      }),
    /compute_accuracy: Cannot use `predict_with_generate` and `compute_accuracy` together\./,
  );
});
