/**
 * Issue 19's schedules and optimizers in the trainer, on the built-in tiny model and the demo data: each new `optim`
 * and optimizer switch lowers the loss in a short full or LoRA run; `reduce_lr_on_plateau` cuts the lr after the
 * training loop's evaluations as torch's scheduler does.
 */
import assert from "node:assert/strict";
import { loadTrainConfig } from "../config/args.ts";
import { TrainSession } from "./session.ts";
import { PlateauScheduler } from "./schedule_plateau.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const root = await Deno.makeTempDir({ prefix: "whetstone-optim-more-" });
// The temporary folder goes when the test module unloads.
globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));
const quiet = { log: () => {} };

/** examples/demo_lora_sft.yaml cut down to `steps` steps of 4 rows of at most 64 tokens. */
function demo(out: string, extra: string[], steps = 8) {
  return loadTrainConfig(`${ROOT}examples/demo_lora_sft.yaml`, [
    `model_name_or_path=${ROOT}fixtures/tiny/model`,
    `dataset_dir=${ROOT}fixtures/demo`,
    `output_dir=${out}`,
    `max_steps=${steps}`,
    "max_samples=16",
    "cutoff_len=64",
    "per_device_train_batch_size=4",
    "val_size=0",
    "eval_strategy=no",
    "logging_steps=1",
    "save_steps=100",
    "plot_loss=false",
    "seed=7",
    ...extra,
  ]);
}

Deno.test("reduce_lr_on_plateau: the lr follows torch's scheduler fed each evaluation's eval_loss", async () => {
  const s = await TrainSession.create(
    await demo(`${root}/plateau`, [
      "val_size=4",
      "eval_strategy=steps",
      "eval_steps=1",
      "learning_rate=1e-3",
      "lr_scheduler_type=reduce_lr_on_plateau",
      // mode max on a falling loss: every evaluation after the first is a bad one, so the lr halves each time.
      'lr_scheduler_kwargs={"mode": "max", "patience": 0, "factor": 0.5}',
    ], 5),
    quiet,
  );
  const recs = await s.step(5);
  const ref = new PlateauScheduler(1e-3, { mode: "max", patience: 0, factor: 0.5 });
  assert.equal(s.evalLosses.length, 5);
  recs.forEach((r, i) => {
    assert.ok(Math.abs(r.lr - ref.lr) < 1e-15, `step ${i + 1}: lr ${r.lr}, expected ${ref.lr}`);
    ref.step(s.evalLosses[i].eval_loss);
  });
  assert.ok(recs.at(-1)!.lr < 1e-3, "the lr was cut");
  s.close();
});
