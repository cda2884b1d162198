/**
 * Issue 16's dense families (and the yarn / longrope fixtures) train: a short LoRA run (fresh adapter on every linear)
 * and a short full fine-tuning run of each fixture model (fixtures/models/<family> with the BPE tokenizer of
 * fixtures/steps) on the steps' SFT data, on the reference executor; the loss falls.
 */
import assert from "node:assert/strict";
import { parseTrainArgs } from "../config/args.ts";
import { train } from "./trainer.ts";
import { DENSE } from "../nn/families_testing.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const tmp = await Deno.makeTempDir({ prefix: "whetstone-families-" });

async function modelFolder(family: string): Promise<string> {
  const dir = `${tmp}/${family}`;
  await Deno.mkdir(dir, { recursive: true });
  for (const f of ["config.json", "generation_config.json", "model.safetensors"]) {
    await Deno.copyFile(`${ROOT}fixtures/models/${family}/${f}`, `${dir}/${f}`);
  }
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) {
    await Deno.copyFile(`${ROOT}fixtures/steps/tokenizer/${f}`, `${dir}/${f}`);
  }
  return dir;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

for (const family of DENSE) {
  for (
    const [kind, extra] of [
      ["lora", { finetuning_type: "lora", lora_target: "all", lora_rank: 4, learning_rate: 2e-2 }],
      ["full", { finetuning_type: "full", learning_rate: 3e-3 }],
    ] as const
  ) {
    Deno.test(`${family}: a short ${kind} run lowers the loss`, async () => {
      const model = await modelFolder(family);
      const res = await train(
        parseTrainArgs({
          model_name_or_path: model,
          stage: "sft",
          do_train: true,
          dataset: "steps_sft",
          dataset_dir: `${ROOT}fixtures/steps/`,
          template: "empty",
          cutoff_len: 32,
          output_dir: `${tmp}/${family}-${kind}`,
          per_device_train_batch_size: 2,
          max_steps: 12,
          logging_steps: 1,
          save_strategy: "no",
          report_to: "none",
          seed: 42,
          executor: "reference",
          bucket: 16,
          ...extra,
        }),
        { progress: false, log: () => {} },
      );
      const losses = res.losses.map((l) => l.loss);
      assert.equal(losses.length, 12);
      assert.ok(losses.every(Number.isFinite), `losses ${losses}`);
      const first = mean(losses.slice(0, 4)), last = mean(losses.slice(-4));
      assert.ok(last < 0.9 * first, `${family} ${kind}: loss ${first.toFixed(3)} → ${last.toFixed(3)}`);
    });
  }
}
