/**
 * Issue 19's schedules and optimizers in the trainer, on the built-in tiny model and the demo data: each new `optim`
 * and optimizer switch lowers the loss in a short full or LoRA run; `reduce_lr_on_plateau` cuts the lr after the
 * training loop's evaluations as torch's scheduler does.
 */
import assert from "node:assert/strict";
import { loadTrainConfig } from "../config/args.ts";
import { TrainSession } from "./session.ts";
import { PlateauScheduler } from "./schedule_plateau.ts";
import { train } from "./trainer.ts";

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

const PLATEAU = [
  "val_size=4",
  "eval_strategy=steps",
  "eval_steps=1",
  "learning_rate=1e-3",
  "lr_scheduler_type=reduce_lr_on_plateau",
  // mode max on a falling loss: every evaluation after the first is a bad one, so the lr halves each time.
  'lr_scheduler_kwargs={"mode": "max", "patience": 0, "factor": 0.5}',
];

Deno.test("reduce_lr_on_plateau: the lr follows torch's scheduler fed each evaluation's eval_loss", async () => {
  const s = await TrainSession.create(await demo(`${root}/plateau`, PLATEAU, 5), quiet);
  const recs = await s.step(5);
  const ref = new PlateauScheduler(1e-3, { mode: "max", patience: 0, factor: 0.5 });
  assert.equal(s.evalLosses.length, 5);
  recs.forEach((r, i) => {
    assert.ok(Math.abs(r.lr - ref.lr) < 1e-15, `step ${i + 1}: lr ${r.lr}, expected ${ref.lr}`);
    ref.step(s.evalLosses[i].eval_loss);
  });
  assert.ok(recs.at(-1)!.lr < 1e-3, "the lr was cut");
  s.close();
  // Stopped after step 2 (checkpoint-2) and resumed: the same lrs, the scheduler's state came back.
  const cut = `${root}/plateau-cut`;
  const first = await TrainSession.create(await demo(cut, [...PLATEAU, "save_steps=2"], 5), quiet);
  await first.step(2);
  first.close();
  const rest = await TrainSession.create(
    await demo(cut, [...PLATEAU, "save_steps=2", "resume_from_checkpoint=true"], 5),
    quiet,
  );
  const again = await rest.step(3);
  again.forEach((r, i) => assert.equal(r.lr, recs[2 + i].lr, `resumed step ${3 + i}`));
  rest.close();
});

const head = (xs: number[]) => (xs[0] + xs[1]) / 2;
const tail = (xs: number[]) => (xs.at(-1)! + xs.at(-2)!) / 2;

/** The tensor names in a safetensors file (its JSON header). */
async function tensorNames(path: string): Promise<string[]> {
  const bytes = await Deno.readFile(path);
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  return Object.keys(JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)))).filter((k) =>
    k !== "__metadata__"
  );
}

const APOLLO = ["finetuning_type=full", "use_apollo=true", "apollo_rank=8", "apollo_update_interval=3"];

const RUNS: [string, string[], string[]][] = [
  ["sgd momentum (LoRA)", ["optim=sgd", "optim_args=momentum=0.9,nesterov=True", "learning_rate=0.05"], [
    "momentum_buffer",
  ]],
  ["adafactor (full)", ["finetuning_type=full", "optim=adafactor", "learning_rate=1e-3"], [
    "exp_avg_sq",
    "exp_avg_sq_col",
    "exp_avg_sq_row",
  ]],
  ["lion_32bit (LoRA)", ["optim=lion_32bit", "learning_rate=2e-3", "weight_decay=0.01"], ["exp_avg"]],
  ["paged_lion_32bit (full)", ["finetuning_type=full", "optim=paged_lion_32bit", "learning_rate=1e-4"], ["exp_avg"]],
  ["use_muon (full)", ["finetuning_type=full", "use_muon=true", "learning_rate=2e-3", "weight_decay=0.01"], [
    "moment1",
    "moment2",
    "momentum_buffer",
  ]],
  ["use_muon (LoRA)", ["use_muon=true", "learning_rate=5e-3"], ["momentum_buffer"]],
  ["use_adam_mini (full)", ["finetuning_type=full", "use_adam_mini=true", "learning_rate=1e-3"], ["m", "v", "vmean"]],
  ["use_apollo (full)", [...APOLLO, "learning_rate=1e-3"], [
    "apollo_exp_avg",
    "apollo_exp_avg_sq",
    "apollo_proj",
    "apollo_scaled_grad",
    "exp_avg",
    "exp_avg_sq",
  ]],
  ["use_apollo (full, tensor scale, scale front)", [
    ...APOLLO,
    "apollo_scale_type=tensor",
    "apollo_scale_front=true",
    "apollo_proj_type=reverse_std",
    "learning_rate=1e-3",
  ], ["apollo_exp_avg", "apollo_exp_avg_sq", "apollo_proj", "apollo_scaled_grad", "exp_avg", "exp_avg_sq"]],
  ["use_adam_mini (LoRA)", ["use_adam_mini=true", "learning_rate=5e-3"], ["m", "vmean"]],
];

for (const [name, keys, states] of RUNS) {
  Deno.test(`${name}: the loss falls on the tiny model, and a run stopped at step 4 resumes step for step`, async () => {
    const out = `${root}/${name.replace(/\W+/g, "-")}`;
    const whole = await train(await demo(out, [...keys, "save_steps=4"]), { progress: false, ...quiet });
    const l = whole.losses.map((x) => x.loss);
    assert.equal(l.length, 8);
    assert.ok(tail(l) < head(l) - 0.3, `${name}: ${l.map((x) => x.toFixed(3))}`);
    const saved = await tensorNames(`${out}/checkpoint-4/optimizer.safetensors`);
    const kinds = new Set(saved.map((n) => n.split(".").at(-1)).filter((k) => k !== "loss_sum"));
    assert.deepEqual([...kinds].sort(), states, `${name}: states`);
    const cut = `${out}-cut`;
    await train(await demo(cut, [...keys, "save_steps=4"]), { progress: false, ...quiet, stopAfter: 4 });
    const rest = await train(await demo(cut, [...keys, "save_steps=4", "resume_from_checkpoint=true"]), {
      progress: false,
      ...quiet,
    });
    const r = rest.losses.map((x) => x.loss);
    assert.equal(r.length, 4);
    r.forEach((x, i) => assert.ok(Math.abs(x - l[4 + i]) < 1e-4, `${name} step ${5 + i}: resumed ${x} vs ${l[4 + i]}`));
  });
}

const GALORE = ["finetuning_type=full", "use_galore=true", "galore_rank=8", "galore_update_interval=3"];

Deno.test("galore_layerwise: GaLore stepping each param in its hook, i.e. without clipping (LF's layer-wise mode)", async () => {
  const run = async (dir: string, keys: string[]) =>
    (await train(await demo(`${root}/${dir}`, [...GALORE, "learning_rate=1e-3", ...keys]), {
      progress: false,
      ...quiet,
    }))
      .losses.map((x) => x.loss);
  const layerwise = await run("galore-lw", ["galore_layerwise=true", "max_grad_norm=0.1"]);
  const unclipped = await run("galore-noclip", ["max_grad_norm=0"]);
  const clipped = await run("galore-clip", ["max_grad_norm=0.1"]);
  assert.ok(tail(layerwise) < head(layerwise) - 0.3, `${layerwise.map((x) => x.toFixed(3))}`);
  layerwise.forEach((x, i) => assert.ok(Math.abs(x - unclipped[i]) < 1e-6, `step ${i + 1}: ${x} vs ${unclipped[i]}`));
  assert.ok(clipped.some((x, i) => Math.abs(x - layerwise[i]) > 1e-4), "clipping at 0.1 changes the run");
});

Deno.test("apollo_layerwise: APOLLO without clipping (LF's per-param hooks)", async () => {
  const run = async (dir: string, keys: string[]) =>
    (await train(await demo(`${root}/${dir}`, [...APOLLO, "learning_rate=1e-3", ...keys]), {
      progress: false,
      ...quiet,
    }))
      .losses.map((x) => x.loss);
  const layerwise = await run("apollo-lw", ["apollo_layerwise=true", "max_grad_norm=0.1"]);
  const unclipped = await run("apollo-noclip", ["max_grad_norm=0"]);
  layerwise.forEach((x, i) => assert.ok(Math.abs(x - unclipped[i]) < 1e-6, `step ${i + 1}: ${x} vs ${unclipped[i]}`));
  assert.ok(tail(layerwise) < head(layerwise) - 0.3, `${layerwise.map((x) => x.toFixed(3))}`);
});

for (
  const [file, kind] of [
    ["llama3_full_sft_apollo.yaml", "apollo"],
    ["qwen2_full_sft_muon.yaml", "muon"],
    ["qwen2_full_sft_adam_mini.yaml", "adam_mini"],
  ] as const
) {
  Deno.test(`LF's examples/extras ${file} runs with the tiny model and demo data put in`, async () => {
    const out = `${root}/lf-${kind}`;
    const a = await loadTrainConfig(`${ROOT}fixtures/configs/${file}`, [
      `model_name_or_path=${ROOT}fixtures/tiny/model`,
      `dataset_dir=${ROOT}fixtures/demo`,
      "dataset=whetstone_demo",
      `output_dir=${out}`,
      "max_steps=3",
      "max_samples=16",
      "cutoff_len=64",
      "plot_loss=false",
    ]);
    const session = await TrainSession.create(a, quiet);
    // The example's optimizer is the one running: other state bytes than AdamW's two f32 moments per parameter (fewer
    // for Muon and Adam-mini; APOLLO's rank 128 is the tiny model's full width, so its projections make it more).
    const adamw = 8 * session.plan.trainable_parameters, states = session.plan.memory!.optimizer;
    assert.ok(kind === "apollo" ? states > adamw : states < adamw, `${file}: ${states} bytes vs AdamW's ${adamw}`);
    const recs = await session.step(3);
    assert.equal(recs.length, 3);
    for (const r of recs) assert.ok(Number.isFinite(r.loss), `${file}: loss ${r.loss}`);
    session.close();
  });
}
