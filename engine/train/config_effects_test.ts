/**
 * Training keys whose effect lives in the run (engine/config/effects_test.ts checks the table): data_seed and
 * disable_shuffling set the data order, group_by_length groups it by length, save_only_model leaves the optimizer states out of checkpoints,
 * pissa_convert writes output_dir/pissa_converted; the strategies and step counts decide when the loop logs and saves.
 */
import assert from "node:assert/strict";
import { parseTrainArgs } from "../config/args.ts";
import { makeTinyModel } from "./testing.ts";
import { train } from "./trainer.ts";

const DEMO = new URL("../../fixtures/demo/", import.meta.url).pathname;
const root = await Deno.makeTempDir({ prefix: "whetstone-effects-" });
globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));
const model = await makeTinyModel(`${root}/model`);
let runs = 0;

async function run(extra: Record<string, unknown>) {
  const out = `${root}/run${runs++}`;
  const a = parseTrainArgs({
    model_name_or_path: model,
    stage: "sft",
    do_train: true,
    dataset: "whetstone_demo",
    dataset_dir: DEMO,
    template: "qwen",
    cutoff_len: 64,
    max_samples: 16,
    output_dir: out,
    logging_steps: 1,
    per_device_train_batch_size: 2,
    learning_rate: 1e-2,
    max_steps: 2,
    seed: 7,
    ...extra,
  });
  const res = await train(a, { progress: false, log: () => {} });
  return { out, losses: res.losses.map((l) => l.loss) };
}

Deno.test("data_seed orders the data (not seed); disable_shuffling keeps it in order whatever the seeds", async () => {
  const a = await run({ data_seed: 1 }), b = await run({ data_seed: 2 });
  assert.notDeepEqual(a.losses, b.losses, "another data_seed, other batches");
  const c = await run({ data_seed: 1, disable_shuffling: true }),
    d = await run({ data_seed: 2, disable_shuffling: true });
  assert.deepEqual(c.losses, d.losses, "in order, the data seed does not matter");
  assert.notDeepEqual(c.losses, a.losses);
});

Deno.test("group_by_length: the run takes HF's length-grouped order (other batches than the plain shuffle)", async () => {
  // cutoff_len 1024 keeps the rows' own lengths (at 64 every row is cut to 64 and there is nothing to group).
  const c = { data_seed: 3, cutoff_len: 1024 };
  const plain = await run(c), grouped = await run({ ...c, group_by_length: true });
  assert.notDeepEqual(grouped.losses, plain.losses, "grouped by length, other batches");
  assert.deepEqual((await run({ ...c, group_by_length: true })).losses, grouped.losses, "and the same again");
  const inOrder = await run({ ...c, disable_shuffling: true }),
    both = await run({ ...c, disable_shuffling: true, group_by_length: true });
  assert.deepEqual(both.losses, inOrder.losses, "disable_shuffling comes first, as in LF's trainers");
});

Deno.test("save_only_model: checkpoints hold the adapter but no optimizer states", async () => {
  const { out } = await run({ max_steps: 3, save_steps: 2, save_only_model: true });
  assert.ok((await Deno.stat(`${out}/checkpoint-2/adapter_model.safetensors`)).isFile);
  await assert.rejects(Deno.stat(`${out}/checkpoint-2/optimizer.safetensors`), Deno.errors.NotFound);
  const full = await run({ max_steps: 3, save_steps: 2 });
  assert.ok((await Deno.stat(`${full.out}/checkpoint-2/optimizer.safetensors`)).isFile);
});

Deno.test("pissa_convert: output_dir/pissa_converted holds the rank-2r LoRA", async () => {
  const { out } = await run({ max_steps: 1, pissa_init: true, pissa_iter: -1, pissa_convert: true, lora_rank: 4 });
  const cfg = JSON.parse(await Deno.readTextFile(`${out}/pissa_converted/adapter_config.json`));
  assert.deepEqual([cfg.r, cfg.init_lora_weights], [8, true]);
  assert.match(JSON.parse(await Deno.readTextFile(`${out}/adapter_config.json`)).init_lora_weights, /^pissa/);
});

Deno.test("logging / eval / save strategies: epochs, fractional steps and logging_first_step as HF's flow", async () => {
  const logged = async (out: string) =>
    (await Deno.readTextFile(`${out}/trainer_log.jsonl`)).trim().split("\n").map((l) => JSON.parse(l))
      .filter((l) => l.loss !== undefined).map((l) => l.current_steps);
  const checkpoints = (out: string) =>
    [...Deno.readDirSync(out)].map((e) => e.name).filter((n) => n.startsWith("checkpoint-")).sort();
  // 16 records, batch 2: 8 steps an epoch; 2 epochs = 16 steps.
  const epochs = await run({
    max_steps: -1,
    num_train_epochs: 2,
    logging_strategy: "epoch",
    save_strategy: "epoch",
    logging_first_step: true,
  });
  assert.deepEqual(await logged(epochs.out), [1, 8, 16]);
  assert.deepEqual(await checkpoints(epochs.out), ["checkpoint-16", "checkpoint-8"]);
  // A fraction of the total steps: ceil(6 × 0.5) = 3.
  const ratio = await run({ max_steps: 6, logging_steps: 0.5, save_steps: 0.34 });
  assert.deepEqual(await logged(ratio.out), [3, 6]);
  assert.deepEqual(await checkpoints(ratio.out), ["checkpoint-3", "checkpoint-6"]);
});
