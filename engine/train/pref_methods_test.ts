/**
 * NEFTune (`neftune_noise_alpha`) and LongLoRA's S²-attention (`shift_attn`) in the preference stages, as LF applies
 * them through HF's Trainer: short LoRA DPO, RM and KTO runs on random tiny models with the bundled pairs, each run's loss
 * falls and differs from the run without the key; a seeded run repeats exactly; evaluation takes neither (equal
 * eval losses before training, no noise inputs in the eval graph); the noise feeds keep transformers' bound; a separate
 * reference model runs in evaluation mode (no noise input for it); ppo still refuses both keys.
 */
import assert from "node:assert/strict";
import { parseTrainArgs } from "../config/args.ts";
import { loadModel } from "../nn/model.ts";
import { neftuneMagnitude } from "../nn/neftune.ts";
import { makeTinyModel } from "./testing.ts";
import { TrainSession } from "./session.ts";
import { train } from "./trainer.ts";
import { copyReference, noiseInputs, type PrefObjective, tracePrefEvalStep, tracePrefStep } from "./step/pref.ts";
import { prefNoiseFeeds } from "./step/pref_feeds.ts";
import { adamwStepPlan } from "./step/plan.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const LLAMA_FIXTURE = `${ROOT}fixtures/models/llama`;
const root = await Deno.makeTempDir({ prefix: "whetstone-pref-methods-" });
globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));
const qwen = await makeTinyModel(`${root}/qwen`);
const llama = await makeTinyModel(`${root}/llama`, 1, { model_type: "llama", architectures: ["LlamaForCausalLM"] });

type Stage = "dpo" | "rm" | "kto";

function args(stage: Stage, model: string, out: string, extra: Record<string, unknown> = {}) {
  return parseTrainArgs({
    model_name_or_path: model,
    stage,
    do_train: true,
    finetuning_type: "lora",
    lora_target: "all",
    dataset: stage === "kto" ? "whetstone_kto" : "whetstone_pref",
    dataset_dir: `${ROOT}fixtures/demo`,
    template: "qwen",
    cutoff_len: 64,
    output_dir: `${root}/${out}`,
    logging_steps: 1,
    per_device_train_batch_size: 4,
    learning_rate: 1e-2,
    lr_scheduler_type: "constant",
    max_steps: 6,
    save_strategy: "no",
    seed: 7,
    // The plain runs pad as the method runs do (LF's multiple of 8), so shapes match and only the method differs.
    bucket: 8,
    ...extra,
  });
}

async function run(stage: Stage, model: string, out: string, extra: Record<string, unknown> = {}) {
  const lines: string[] = [];
  const res = await train(args(stage, model, out, extra), { progress: false, log: (l: string) => lines.push(l) });
  return { losses: res.losses.map((l) => l.loss), lines };
}

const falls = (l: number[]) => assert.ok(l.at(-1)! < l[0], `loss falls: ${l.map((x) => x.toFixed(4)).join(" ")}`);

for (const stage of ["dpo", "rm", "kto"] as const) {
  Deno.test(`${stage} with neftune_noise_alpha: the loss falls, differs from the plain run, and a seeded run repeats`, async () => {
    const plain = await run(stage, qwen, `${stage}-plain`);
    const a = await run(stage, qwen, `${stage}-neft-a`, { neftune_noise_alpha: 5 });
    const b = await run(stage, qwen, `${stage}-neft-b`, { neftune_noise_alpha: 5 });
    falls(a.losses);
    assert.notDeepEqual(a.losses, plain.losses, "noise was added");
    assert.deepEqual(a.losses, b.losses, "same seed, same noise");
    if (stage === "dpo") {
      // Step 1: LoRA's B is zero, so policy = reference and the plain loss is ln 2; the noise of the two forwards
      // (fresh for each, as transformers' hook draws it) moves it.
      assert.ok(Math.abs(plain.losses[0] - Math.LN2) < 1e-5, `${plain.losses[0]}`);
      assert.ok(Math.abs(a.losses[0] - Math.LN2) > 1e-6, `${a.losses[0]}`);
    }
  });

  Deno.test(`${stage} with shift_attn on llama: S²-attention in training, the loss falls and differs`, async () => {
    const plain = await run(stage, llama, `${stage}-llama-plain`);
    const s2 = await run(stage, llama, `${stage}-llama-s2`, { shift_attn: true });
    assert.ok(s2.lines.some((l) => l.includes("Using shift short attention with group_size_ratio=1/4.")));
    falls(s2.losses);
    assert.notDeepEqual(s2.losses, plain.losses, "grouped, shifted attention changes the steps");
  });
}

Deno.test("neither method reaches evaluation: equal eval losses before training, with and without them", async () => {
  const evalOf = async (extra: Record<string, unknown>) => {
    const s = await TrainSession.create(
      args("dpo", llama, `eval-${Object.keys(extra).join("-")}`, {
        val_size: 8,
        ...extra,
      }),
      { log: () => {} },
    );
    const e = await s.evaluate();
    s.close();
    return e.eval_loss;
  };
  const plain = await evalOf({});
  assert.ok(Number.isFinite(plain));
  assert.equal(await evalOf({ neftune_noise_alpha: 5, shift_attn: true }), plain);
});

Deno.test("noise inputs: one per training-mode forward; a separate reference model and the eval step take none", async () => {
  const model = await loadModel(LLAMA_FIXTURE, { executor: "reference", adapter: `${LLAMA_FIXTURE}/lora` });
  const names = [...model.adapter!.params.keys()];
  const loss = { loss: "sigmoid" as const, beta: 0.1, labelSmoothing: 0, ftx: 0, simpoGamma: 0.5 };
  const dpo: PrefObjective = { stage: "dpo", loss };
  const inputs = (o: PrefObjective, neftune?: number) =>
    [...tracePrefStep(model, { ...adamwStepPlan(2, 16, names, { G: 2, neftune }), objective: o }).inputs.keys()]
      .filter((k) => k.includes("noise")).sort();
  assert.deepEqual(inputs(dpo, 5), ["noise_0", "noise_1", "ref_noise_0", "ref_noise_1"]);
  assert.deepEqual(inputs(dpo), [], "no alpha, no noise");
  const ref = await copyReference(model);
  assert.deepEqual(inputs({ stage: "dpo", loss, reference: ref }, 5), ["noise_0", "noise_1"], "ref_model: eval mode");
  assert.deepEqual(inputs({ stage: "dpo", loss: { ...loss, loss: "orpo" } }, 5), ["noise_0", "noise_1"]);
  assert.deepEqual(inputs({ stage: "rm" }, 5), ["noise_0", "noise_1"]);
  const kto: PrefObjective = { stage: "kto", loss: { beta: 0.1, ftx: 0, chosenWeight: 1, rejectedWeight: 1 } };
  assert.deepEqual(
    inputs(kto, 5).filter((k) => k.endsWith("_0")),
    ["kl_noise_0", "noise_0", "ref_kl_noise_0", "ref_noise_0"],
  );
  // The declared shapes are what the feeds give.
  const g = tracePrefStep(model, { ...adamwStepPlan(2, 16, names, { neftune: 5 }), objective: dpo });
  const feeds = prefNoiseFeeds(dpo, 0, 2, 16, model.config.hidden, 5, 123);
  for (const { name, rows } of noiseInputs(dpo, 0, 2)) {
    assert.deepEqual(g.values[g.inputs.get(name)!].shape, [rows, 16, model.config.hidden]);
    assert.equal(feeds[name].length, rows * 16 * model.config.hidden);
  }
  const evalInputs = [...tracePrefEvalStep(model, { objective: dpo, B: 2, L: 16 }).inputs.keys()];
  assert.ok(!evalInputs.some((k) => k.includes("noise")), "evaluation adds no noise");
});

Deno.test("noise feeds: within ±alpha/√(L·H), fresh per forward and micro-batch, seeded", () => {
  const loss = { loss: "sigmoid" as const, beta: 0.1, labelSmoothing: 0, ftx: 0, simpoGamma: 0.5 };
  const o: PrefObjective = { stage: "dpo", loss };
  const B = 2, L = 24, H = 32, alpha = 5, m = neftuneMagnitude(alpha, L, H);
  const f0 = prefNoiseFeeds(o, 0, B, L, H, alpha, 99), f1 = prefNoiseFeeds(o, 1, B, L, H, alpha, 99);
  for (const x of [f0.noise_0, f0.ref_noise_0, f1.noise_1, f1.ref_noise_1]) {
    let lo = Infinity, hi = -Infinity, mean = 0;
    for (const v of x) (lo = Math.min(lo, v), hi = Math.max(hi, v), mean += v / x.length);
    assert.ok(lo >= -m && hi <= m, `[${lo}, ${hi}] within ±${m}`);
    assert.ok(hi > 0.95 * m && lo < -0.95 * m, "fills the interval");
    assert.ok(Math.abs(mean) < 0.05 * m, `mean ${mean}`);
  }
  assert.notDeepEqual(f0.noise_0, f0.ref_noise_0, "the reference forward draws its own noise");
  assert.notDeepEqual(f0.noise_0, f1.noise_1, "each micro-batch draws its own noise");
  assert.deepEqual(prefNoiseFeeds(o, 0, B, L, H, alpha, 99), f0, "same seed, same noise");
  assert.notDeepEqual(prefNoiseFeeds(o, 0, B, L, H, alpha, 100).noise_0, f0.noise_0, "another step, other noise");
});

Deno.test("ppo refuses neftune_noise_alpha naming it (LF's ppo_train never turns it on); shift_attn is accepted", () => {
  const ppo = (extra: Record<string, unknown>) => () =>
    parseTrainArgs({
      model_name_or_path: qwen,
      stage: "ppo",
      reward_model: qwen,
      dataset: "whetstone_demo",
      template: "qwen",
      output_dir: `${root}/ppo`,
      ...extra,
    });
  assert.throws(ppo({ neftune_noise_alpha: 5 }), /neftune_noise_alpha: .*not ppo/);
  assert.equal(ppo({ shift_attn: true })().shift_attn, true);
});
