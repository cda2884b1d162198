/**
 * GaLore and BAdam with the preference stages on the built-in tiny model (fixtures/tiny/model) and the bundled pairs,
 * full-parameter as LLaMA-Factory allows: DPO (against a frozen copy) with GaLore and with BAdam lowers the loss and
 * does not lower rewards/accuracies, and a GaLore DPO run stopped at step 4 resumes step for step; a BAdam reward
 * model raises its pairwise accuracy.
 */
import assert from "node:assert/strict";
import { loadTrainConfig } from "../config/args.ts";
import { TrainSession } from "./session.ts";
import { train } from "./trainer.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const root = await Deno.makeTempDir({ prefix: "whetstone-optim-pref-" });
// The temporary folder goes when the test module unloads.
globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));
const quiet = { log: () => {} };

/** examples/demo_<stage>.yaml, full-parameter, cut down to 8 steps of 4 pairs of at most 64 tokens. */
function demo(stage: "dpo" | "rm", out: string, extra: string[]) {
  return loadTrainConfig(`${ROOT}examples/demo_${stage}.yaml`, [
    `model_name_or_path=${ROOT}fixtures/tiny/model`,
    `dataset_dir=${ROOT}fixtures/demo`,
    `output_dir=${out}`,
    "finetuning_type=full",
    "max_steps=8",
    "max_samples=32",
    "cutoff_len=64",
    "val_size=0",
    "eval_strategy=no",
    "logging_steps=2",
    "save_steps=4",
    "plot_loss=false",
    "lr_scheduler_type=constant",
    "warmup_ratio=0",
    "seed=7",
    ...extra,
  ]);
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const head = (xs: number[]) => mean(xs.slice(0, 3));
const tail = (xs: number[]) => mean(xs.slice(-3));

/** Per-step records of a whole session. */
async function run(stage: "dpo" | "rm", out: string, extra: string[]) {
  const session = await TrainSession.create(await demo(stage, out, extra), quiet);
  try {
    return await session.step(8);
  } finally {
    session.close();
  }
}

const GALORE = ["use_galore=true", "galore_rank=8", "galore_update_interval=4", "learning_rate=1e-3"];
const BADAM = ["use_badam=true", "badam_switch_interval=2", "learning_rate=1e-3"];

for (const [name, keys] of [["galore", GALORE], ["badam", BADAM]] as const) {
  Deno.test(`optim pref: full-parameter DPO with ${name} lowers the loss, rewards/accuracies does not fall`, async () => {
    const recs = await run("dpo", `${root}/dpo-${name}`, keys);
    const loss = recs.map((r) => r.loss!), acc = recs.map((r) => r["rewards/accuracies"] as number);
    assert.equal(loss.length, 8);
    assert.ok(loss.every(Number.isFinite) && acc.every(Number.isFinite), JSON.stringify(recs[0]));
    assert.ok(tail(loss) < head(loss) - 0.02, `${name} loss ${loss.map((x) => x.toFixed(4))}`);
    assert.ok(tail(acc) >= head(acc), `${name} rewards/accuracies ${acc}`);
  });
}

Deno.test("optim pref: GaLore DPO stopped at step 4 resumes step for step", async () => {
  const hooks = { progress: false, ...quiet };
  const whole = (await train(await demo("dpo", `${root}/resume-whole`, GALORE), hooks)).losses.map((x) => x.loss);
  const cut = `${root}/resume-cut`;
  await train(await demo("dpo", cut, GALORE), { ...hooks, stopAfter: 4 });
  const rest = await train(await demo("dpo", cut, [...GALORE, "resume_from_checkpoint=true"]), hooks);
  const r = rest.losses.map((x) => x.loss), w = whole.slice(-r.length);
  assert.ok(r.length >= 1, "the resumed run logged nothing");
  r.forEach((x, i) => assert.ok(Math.abs(x - w[i]) < 1e-4, `resumed ${r} vs ${w}`));
});

Deno.test("optim pref: a full-parameter reward model with BAdam raises its pairwise accuracy", async () => {
  // seed 2: the value head starts ranking the first pairs wrong (BAdam leaves it frozen, as LF's BlockOptimizer does).
  const recs = await run("rm", `${root}/rm-badam`, [...BADAM, "seed=2"]);
  const loss = recs.map((r) => r.loss!), acc = recs.map((r) => r.accuracy as number);
  assert.ok(acc.every(Number.isFinite), JSON.stringify(recs[0]));
  assert.ok(tail(acc) > head(acc), `rm accuracy ${acc}`);
  assert.ok(tail(loss) < head(loss), `rm loss ${loss.map((x) => x.toFixed(4))}`);
});
