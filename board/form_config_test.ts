/**
 * The Board's training form → YAML config: LlamaBoard's defaults give the keys that differ from LF's defaults plus
 * the required ones; a YAML loaded into the form and written back is the same training for `deno task train`
 * (parseTrainArgs reads both alike); the loss smoothing is LF's.
 */
import assert from "node:assert/strict";
import { parseYaml } from "../deps.ts";
import { parseTrainArgs } from "../engine/mod.ts";
import { boardKeys } from "../routes/board.ts";
import { defaultValues, fromConfig, toConfig } from "./form_config.js";
import { smooth } from "./smooth.js";

const keys = boardKeys();

Deno.test("board form: LlamaBoard's defaults make only the keys LF's defaults lack, plus the required ones", () => {
  const v = {
    ...defaultValues(),
    model_name_or_path: "fixtures/tiny/model",
    template: "qwen",
    dataset: ["whetstone_demo"],
    output_dir: "out/x",
  };
  assert.deepEqual(toConfig(v, {}, keys), {
    model_name_or_path: "fixtures/tiny/model",
    finetuning_type: "lora",
    template: "qwen",
    stage: "sft",
    do_train: true,
    dataset: "whetstone_demo",
    max_samples: 100000,
    output_dir: "out/x",
    per_device_train_batch_size: 2,
    gradient_accumulation_steps: 8,
    lr_scheduler_type: "cosine",
    logging_steps: 5,
    save_steps: 100,
    plot_loss: true,
  });
});

Deno.test("board form: val_size turns on evaluation as LlamaBoard does; groups count only when they apply", () => {
  const v = {
    ...defaultValues(),
    val_size: "0.1",
    stage: "sft",
    lora_rank: "16",
    pref_beta: "0.2",
    use_galore: false,
    galore_rank: "32",
  };
  const c = toConfig(v, {}, keys);
  assert.equal(c.eval_strategy, "steps");
  assert.equal(c.eval_steps, 100);
  assert.equal(c.per_device_eval_batch_size, 2);
  assert.equal(c.lora_rank, 16);
  assert.ok(!("pref_beta" in c) && !("galore_rank" in c), JSON.stringify(c));
  const dpo = toConfig({ ...v, stage: "dpo", finetuning_type: "freeze" }, {}, keys);
  assert.equal(dpo.pref_beta, 0.2);
  assert.ok(!("lora_rank" in dpo));
  assert.equal(toConfig({ ...v, learning_rate: "abc" }, {}, keys).learning_rate, "abc", "the server names bad keys");
  assert.ok(!("packing" in toConfig({ ...v, stage: "pt", packing: true }, {}, keys)), "pt packs by default");
});

for (const example of ["demo_lora_sft", "demo_dpo", "demo_kto", "demo_rm", "demo_ppo"]) {
  Deno.test(`board form: examples/${example}.yaml loaded into the form and written back trains the same`, async () => {
    const text = await Deno.readTextFile(new URL(`../examples/${example}.yaml`, import.meta.url));
    const original = parseYaml(text) as Record<string, unknown>;
    const { values, extra } = fromConfig(original);
    const written = toConfig(values, extra, keys);
    const a = parseTrainArgs(original, [], "original"), b = parseTrainArgs(written, [], "written");
    assert.deepEqual({ ...b, warnings: [] }, { ...a, warnings: [] });
    // And once more: the form's own output is a fixed point.
    const again = fromConfig(written);
    assert.deepEqual(toConfig(again.values, again.extra, keys), written);
  });
}

Deno.test("board chart: smooth is LF's EMA with weight 1.8 * (sigmoid(0.05 n) - 0.5)", () => {
  assert.deepEqual(smooth([]), []);
  const xs = [4, 2, 3, 1];
  const w = 1.8 * (1 / (1 + Math.exp(-0.05 * 4)) - 0.5);
  const want: number[] = [];
  let last = 4;
  for (const x of xs) want.push(last = last * w + (1 - w) * x);
  assert.deepEqual(smooth(xs), want);
  assert.equal(smooth([5])[0], 5);
});
