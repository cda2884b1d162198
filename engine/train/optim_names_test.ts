/**
 * transformers' `optim` names that LLaMA-Factory users pick: the fused and paged AdamW spellings run as AdamW (the
 * same math; a paged one warns that paging is a CUDA memory matter) and train step for step like `adamw_torch`; the
 * names Whetstone lacks are refused naming the value and listing every accepted spelling.
 */
import assert from "node:assert/strict";
import { parseTrainArgs } from "../config/args.ts";
import { ConfigError } from "../config/train_args.ts";
import { train } from "./trainer.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const M = "model_name_or_path: some/model\n";

const ALIASES: [string, string, boolean][] = [
  ["adamw_torch", "adamw", false],
  ["adamw_torch_fused", "adamw", false],
  ["adamw_torch_npu_fused", "adamw", false],
  ["adamw_apex_fused", "adamw", false],
  ["adamw_torch_xla", "adamw", false],
  ["adamw_hf", "adamw", false],
  ["paged_adamw_32bit", "adamw", true],
  ["adamw_bnb_8bit", "adamw_8bit", false],
  ["paged_adamw_8bit", "adamw_8bit", true],
  ["paged_lion_32bit", "lion_32bit", true],
];

Deno.test("optim: fused and paged AdamW spellings are AdamW; paging warns that it is a CUDA matter", () => {
  for (const [name, runs, paged] of ALIASES) {
    const a = parseTrainArgs(`${M}optim: ${name}`);
    assert.equal(a.optim, runs, name);
    const w = a.warnings.filter((l) => l.startsWith("optim:"));
    assert.deepEqual(
      w,
      paged ? [`optim: ${name} runs as ${runs}: paging is a CUDA memory matter, the update is the same`] : [],
      name,
    );
  }
});

// transformers' OptimizerNames that do other math than any Whetstone optimizer (8-bit Lion's blockwise states,
// torchao's 4-bit states, RMSprop, Adagrad, AnyPrecisionAdamW's Kahan-summed bf16 states, AdEMAMix, ...).
const REFUSED = [
  "lion_8bit",
  "paged_lion_8bit",
  "adamw_torch_4bit",
  "adamw_torch_8bit",
  "rmsprop",
  "rmsprop_bnb_8bit",
  "adagrad",
  "adamw_anyprecision",
  "ademamix",
  "schedule_free_adamw",
];

Deno.test("optim: names Whetstone lacks are refused naming the value and listing the supported ones", () => {
  const supported = ["adamw", "sgd", "adafactor", "lion_32bit", "adamw_8bit", ...ALIASES.map(([n]) => n)];
  for (const name of REFUSED) {
    assert.throws(() => parseTrainArgs(`${M}optim: ${name}`), (e) => {
      assert.ok(e instanceof ConfigError, name);
      assert.equal(e.problems.length, 1);
      const m = /^optim: (\S+) is not supported by Whetstone yet \(supported: (.*)\)$/.exec(e.problems[0]);
      assert.ok(m, e.problems[0]);
      assert.equal(m[1], name);
      assert.deepEqual(m[2].split(", ").sort(), [...new Set(supported)].sort(), name);
      return true;
    });
  }
  assert.throws(() => parseTrainArgs(`${M}optim: adamw_torch_fusd`), /optim: expected one of .*did you mean/);
});

Deno.test("optim paged_adamw_32bit and adamw_torch_fused train step for step as adamw_torch", async () => {
  const root = await Deno.makeTempDir({ prefix: "whetstone-optim-names-" });
  try {
    const run = async (optim: string) =>
      (await train(
        parseTrainArgs({
          model_name_or_path: `${ROOT}fixtures/tiny/model`,
          stage: "sft",
          do_train: true,
          finetuning_type: "lora",
          dataset: "whetstone_demo",
          dataset_dir: `${ROOT}fixtures/demo`,
          template: "qwen",
          cutoff_len: 64,
          max_samples: 8,
          per_device_train_batch_size: 4,
          learning_rate: 5e-3,
          max_steps: 3,
          logging_steps: 1,
          save_strategy: "no",
          plot_loss: false,
          seed: 7,
          optim,
          output_dir: `${root}/${optim}`,
        }),
        { progress: false, log: () => {} },
      )).losses.map((l) => l.loss);
    const plain = await run("adamw_torch");
    assert.equal(plain.length, 3);
    assert.ok(plain[2] < plain[0], `the loss falls: ${plain}`);
    assert.deepEqual(await run("paged_adamw_32bit"), plain);
    assert.deepEqual(await run("adamw_torch_fused"), plain);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
