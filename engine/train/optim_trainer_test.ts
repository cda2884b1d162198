/**
 * Issue 9's pieces in the trainer, on the built-in tiny model and the demo data: QLoRA (4 and 8 bits) trains and its
 * plan counts the quantized base; activation checkpointing (on by default) gives the same losses with a smaller
 * arena; GaLore and BAdam full-parameter runs lower the loss and resume step for step; the config rules refuse
 * LLaMA-Factory's invalid combinations.
 */
import assert from "node:assert/strict";
import { loadTrainConfig, parseTrainArgs } from "../config/args.ts";
import { TrainSession } from "./session.ts";
import { train } from "./trainer.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const root = await Deno.makeTempDir({ prefix: "whetstone-optim-trainer-" });
// The temporary folder goes when the test module unloads.
globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));
const quiet = { log: () => {} };

/** examples/demo_lora_sft.yaml cut down to 8 steps of 4 rows of at most 64 tokens. */
function demo(out: string, extra: string[] = []) {
  return loadTrainConfig(`${ROOT}examples/demo_lora_sft.yaml`, [
    `model_name_or_path=${ROOT}fixtures/tiny/model`,
    `dataset_dir=${ROOT}fixtures/demo`,
    `output_dir=${out}`,
    "max_steps=8",
    "max_samples=16",
    "cutoff_len=64",
    "per_device_train_batch_size=4",
    "val_size=0",
    "eval_strategy=no",
    "logging_steps=1",
    "save_steps=4",
    "plot_loss=false",
    "seed=7",
    ...extra,
  ]);
}

/** Per-step losses of a whole session. */
async function losses(out: string, extra: string[]): Promise<{ losses: number[]; session: TrainSession }> {
  const session = await TrainSession.create(await demo(out, extra), quiet);
  const recs = await session.step(8);
  return { losses: recs.map((r) => r.loss!), session };
}

const head = (xs: number[]) => (xs[0] + xs[1]) / 2;
const tail = (xs: number[]) => (xs.at(-1)! + xs.at(-2)!) / 2;

Deno.test("qlora: LoRA SFT on a 4-bit and an 8-bit base lowers the loss; the plan counts the quantized base", async () => {
  const { losses: base, session: s0 } = await losses(`${root}/lora`, []);
  s0.close();
  for (const bits of [4, 8]) {
    const { losses: l, session: s } = await losses(`${root}/q${bits}`, [`quantization_bit=${bits}`]);
    assert.ok(tail(l) < head(l) - 0.5, `${bits} bits: ${l.map((x) => x.toFixed(3))}`);
    // Close to the unquantized run (the tiny model's weights survive quantization well).
    assert.ok(Math.abs(l[0] - base[0]) < 0.1, `${bits} bits: first loss ${l[0]} vs ${base[0]}`);
    assert.equal(s.plan.parameters, s0.plan.parameters, "quantized linears still count as parameters");
    assert.ok(s.plan.memory!.parameters < s0.plan.memory!.parameters, JSON.stringify([s.plan.memory, s0.plan.memory]));
    await assert.rejects(() => s.export(`${root}/q${bits}-export`), /quantization_bit/);
    s.close();
  }
});

Deno.test("checkpointing: same losses with and without it, and a smaller planned arena with it", async () => {
  const on = await losses(`${root}/ckpt-on`, []);
  const off = await losses(`${root}/ckpt-off`, ["disable_gradient_checkpointing=true"]);
  on.losses.forEach((x, i) => assert.ok(Math.abs(x - off.losses[i]) < 1e-5, `step ${i + 1}: ${x} vs ${off.losses[i]}`));
  const a = on.session.plan.memory!.activations, b = off.session.plan.memory!.activations;
  assert.ok(a < b, `arena with checkpointing ${a} >= without ${b}`);
  on.session.close();
  off.session.close();
});

const GALORE = [
  "finetuning_type=full",
  "use_galore=true",
  "galore_rank=8",
  "galore_update_interval=3",
  "learning_rate=1e-3",
];
const BADAM = ["finetuning_type=full", "use_badam=true", "badam_switch_interval=3", "learning_rate=1e-3"];

for (const [name, keys] of [["galore", GALORE], ["badam", BADAM]] as const) {
  Deno.test(`${name}: a full-parameter run lowers the loss, and a run stopped at step 4 resumes step for step`, async () => {
    const whole = await train(await demo(`${root}/${name}`, keys), { progress: false, ...quiet });
    const l = whole.losses.map((x) => x.loss);
    assert.equal(l.length, 8);
    assert.ok(tail(l) < head(l) - 0.3, `${name}: ${l.map((x) => x.toFixed(3))}`);
    const cut = `${root}/${name}-cut`;
    await train(await demo(cut, keys), { progress: false, ...quiet, stopAfter: 4 });
    const rest = await train(await demo(cut, [...keys, "resume_from_checkpoint=true"]), { progress: false, ...quiet });
    const r = rest.losses.map((x) => x.loss);
    assert.equal(r.length, 4);
    r.forEach((x, i) => assert.ok(Math.abs(x - l[4 + i]) < 1e-4, `${name} step ${5 + i}: resumed ${x} vs ${l[4 + i]}`));
  });
}

Deno.test("config: LLaMA-Factory's rules for quantization, GaLore and BAdam", () => {
  const base = {
    model_name_or_path: "m",
    dataset: "d",
    output_dir: "o",
    stage: "sft",
    finetuning_type: "full",
  };
  const bad = (extra: Record<string, unknown>, re: RegExp) =>
    assert.throws(() => parseTrainArgs({ ...base, ...extra }), re);
  bad({ quantization_bit: 4 }, /quantization_bit: Quantization is only compatible with the LoRA or OFT method/);
  bad({ quantization_bit: 3, finetuning_type: "lora" }, /quantization_bit: expected 4 or 8/);
  bad({ quantization_bit: 4, finetuning_type: "lora", pissa_init: true }, /pissa_init: .*quantized model/);
  bad({ quantization_method: "gptq", finetuning_type: "lora" }, /quantization_method/);
  bad({ use_galore: true, finetuning_type: "lora" }, /use_galore: Cannot use LoRA with GaLore/);
  bad({ use_badam: true, finetuning_type: "lora" }, /use_badam: Cannot use LoRA with GaLore, APOLLO or BAdam/);
  bad({ use_galore: true, use_badam: true }, /Cannot use GaLore, APOLLO or BAdam together/);
  bad({ use_galore: true, optim: "sgd" }, /optim: GaLore/);
  bad({ use_badam: true, finetuning_type: "freeze" }, /use_badam: .*full/);
  bad({ use_galore: true, stage: "ppo" }, /use_galore: .*got stage ppo/);
  bad({ use_badam: true, stage: "ppo" }, /use_badam: .*got stage ppo/);
  for (const stage of ["rm", "dpo", "kto"]) {
    assert.equal(parseTrainArgs({ ...base, stage, use_galore: true }).use_galore, true, stage);
    assert.equal(parseTrainArgs({ ...base, stage, use_badam: true }).use_badam, true, stage);
  }
  const a = parseTrainArgs({ ...base, finetuning_type: "lora", quantization_bit: 4 });
  assert.equal(a.quantization_type, "nf4");
  assert.equal(a.double_quantization, true);
  assert.equal(a.disable_gradient_checkpointing, false);
  const g = parseTrainArgs({ ...base, use_galore: true, galore_target: "q_proj,v_proj" });
  assert.deepEqual(g.galore_target, ["q_proj", "v_proj"]);
  assert.equal(g.galore_rank, 16);
  assert.equal(g.galore_update_interval, 200);
});
