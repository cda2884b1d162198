/**
 * NEFTune, LongLoRA's shift_attn and LLaMA Pro through the trainer on random tiny models with the demo data: each
 * short run's loss falls; NEFTune's runs repeat for a seed and differ from the plain run; shift_attn on a non-llama
 * model is LF's warning and no change; LLaMA Pro trains exactly the expanded blocks.
 */
import assert from "node:assert/strict";
import { loadTrainConfig, parseTrainArgs } from "../config/args.ts";
import { loadModel } from "../nn/model.ts";
import { expandBlocks } from "../nn/llama_pro.ts";
import { attachOft } from "../nn/oft.ts";
import { makeTinyModel } from "./testing.ts";
import { train } from "./trainer.ts";
import { adamwStepPlan, traceEvalStep, traceTrainStep } from "./step/lm.ts";

const LLAMA_FIXTURE = new URL("../../fixtures/models/llama", import.meta.url).pathname;

const DEMO = new URL("../../fixtures/demo/", import.meta.url).pathname;
const root = await Deno.makeTempDir({ prefix: "whetstone-methods-" });
globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));
const qwen = await makeTinyModel(`${root}/qwen`);
const llama = await makeTinyModel(`${root}/llama`, 1, { model_type: "llama", architectures: ["LlamaForCausalLM"] });

async function run(name: string, extra: Record<string, unknown>, model = qwen) {
  const lines: string[] = [];
  const res = await train(
    parseTrainArgs({
      model_name_or_path: model,
      stage: "sft",
      do_train: true,
      finetuning_type: "lora",
      dataset: "whetstone_demo",
      dataset_dir: DEMO,
      template: "qwen",
      cutoff_len: 64,
      max_samples: 24,
      output_dir: `${root}/${name}`,
      logging_steps: 1,
      per_device_train_batch_size: 4,
      learning_rate: 1e-2,
      max_steps: 6,
      save_strategy: "no",
      seed: 7,
      ...extra,
    }),
    { progress: false, log: (l: string) => lines.push(l) },
  );
  return { losses: res.losses.map((l) => l.loss), lines };
}

const falls = (l: number[]) => assert.ok(l.at(-1)! < l[0], `loss falls: ${l.map((x) => x.toFixed(4)).join(" ")}`);

Deno.test("neftune_noise_alpha: the loss falls; seeded runs repeat; the noise changes the steps", async () => {
  const plain = await run("plain", {});
  const a = await run("neft-a", { neftune_noise_alpha: 5 }), b = await run("neft-b", { neftune_noise_alpha: 5 });
  falls(a.losses);
  assert.deepEqual(a.losses, b.losses, "same seed, same noise");
  assert.notDeepEqual(a.losses, plain.losses, "noise was added");
  const c = await run("shift-qwen", { shift_attn: true, bucket: 64 }); // the plain run's padding, so equal shapes
  assert.ok(c.lines.some((l) => /shift_attn: Current model does not support shift short attention/.test(l)));
  assert.deepEqual(c.losses, plain.losses, "qwen2: S²-attention is not applied (LF patches llama only)");
});

Deno.test("shift_attn on llama: S²-attention in training, the loss falls", async () => {
  const plain = await run("llama-plain", {}, llama);
  const s2 = await run("llama-s2", { shift_attn: true }, llama);
  assert.ok(s2.lines.some((l) => l.includes("Using shift short attention with group_size_ratio=1/4.")));
  falls(s2.losses);
  assert.notDeepEqual(s2.losses, plain.losses, "grouped, shifted attention changes the steps");
});

Deno.test("use_llama_pro: freeze tuning trains only the expanded blocks and the loss falls", async () => {
  const pro = `${root}/qwen-pro`;
  await expandBlocks(qwen, pro, 2);
  const out = await run("pro", {
    finetuning_type: "freeze",
    use_llama_pro: true,
    freeze_trainable_layers: 2,
    save_strategy: "no",
  }, pro);
  falls(out.losses);
  const base = await loadModel(pro, { executor: "reference" });
  const tuned = await loadModel(`${root}/pro`, { executor: "reference" });
  const changed = new Set<string>();
  for (const name of base.params.keys()) {
    const x = await base.executor.getParam(name), y = await tuned.executor.getParam(name);
    if (x.some((v, i) => Math.abs(v - y[i]) > 1e-7)) changed.add(name.split(".").slice(0, 3).join("."));
  }
  assert.deepEqual([...changed].sort(), ["model.layers.1", "model.layers.3"], "the new blocks 1 and 3 train");
  // LoRA with use_llama_pro: LF's find_expanded_modules puts the adapter on the new blocks only.
  const lora = await run("pro-lora", { use_llama_pro: true, freeze_trainable_layers: 2 }, pro);
  falls(lora.losses);
  const cfg = JSON.parse(await Deno.readTextFile(`${root}/pro-lora/adapter_config.json`));
  const layers = new Set((cfg.target_modules as string[]).map((m) => m.split(".")[2]));
  assert.deepEqual([...layers].sort(), ["1", "3"]);
  assert.equal(cfg.target_modules.length, 14, "7 linears in each of the 2 new blocks");
  await assert.rejects(
    run("pro-bad", { finetuning_type: "freeze", use_llama_pro: true, freeze_trainable_layers: 3 }, pro),
    /`num_layers` 4 should be divisible by `num_layer_trainable` 3\./,
  );
});

Deno.test("finetuning_type oft: the loss falls and the run writes a PEFT OFT adapter that loads back", async () => {
  const out = await run("oft", { finetuning_type: "oft", oft_block_size: 8, learning_rate: 5e-2 });
  falls(out.losses);
  const cfg = JSON.parse(await Deno.readTextFile(`${root}/oft/adapter_config.json`));
  assert.deepEqual([cfg.peft_type, cfg.r, cfg.oft_block_size, cfg.base_model_name_or_path], ["OFT", 0, 8, qwen]);
  const base = await loadModel(qwen, { executor: "reference" });
  const ids = [[3, 7, 11, 19, 23]];
  const before = (await base.forward(ids)).logits;
  await attachOft(base, `${root}/oft`);
  const after = (await base.forward(ids)).logits;
  assert.ok(after.some((v, i) => Math.abs(v - before[i]) > 1e-4), "the trained rotations change the outputs");
  // Training on from the adapter (adapter_name_or_path): the same first batch now has a lower loss.
  const cont = await run("oft-cont", {
    finetuning_type: "oft",
    oft_block_size: 8,
    adapter_name_or_path: `${root}/oft`,
    max_steps: 1,
  });
  assert.ok(cont.losses[0] < out.losses[0] - 0.05, `${cont.losses[0]} vs ${out.losses[0]}`);
  // QOFT: OFT on a 4-bit (nf4) base.
  const q = await run("qoft", { finetuning_type: "oft", oft_block_size: 8, learning_rate: 5e-2, quantization_bit: 4 });
  falls(q.losses);
  assert.notDeepEqual(q.losses, out.losses, "the quantized base computes otherwise");
  await assert.rejects(
    run("oft-bad", { finetuning_type: "oft", oft_rank: 4 }),
    /oft_rank: You can only specify either r/,
  );
});

Deno.test("LF's examples/extras YAMLs for OFT and LLaMA Pro run with the model and data pointed at tiny fixtures", async () => {
  const CONFIGS = new URL("../../fixtures/configs/", import.meta.url).pathname;
  const deep = await makeTinyModel(`${root}/deep`, 2, { num_hidden_layers: 8 });
  await expandBlocks(deep, `${root}/deep-pro`, 8);
  for (
    const [file, model] of [["llama3_oft_sft.yaml", qwen], ["llama3_freeze_sft_llama_pro.yaml", `${root}/deep-pro`]]
  ) {
    const a = await loadTrainConfig(`${CONFIGS}${file}`, [
      `model_name_or_path=${model}`,
      "dataset=whetstone_demo",
      `dataset_dir=${DEMO}`,
      "template=qwen",
      "cutoff_len=64",
      "max_samples=16",
      "max_steps=1",
      `output_dir=${root}/extras-${file}`,
    ]);
    const res = await train(a, { progress: false, log: () => {} });
    assert.equal(res.globalStep, 1, file);
  }
  const cfg = JSON.parse(await Deno.readTextFile(`${root}/extras-llama3_oft_sft.yaml/adapter_config.json`));
  assert.deepEqual([cfg.peft_type, cfg.oft_block_size], ["OFT", 32]);
});

Deno.test("finetuning_type oft: a resumed run repeats the uninterrupted run's losses", async () => {
  const extra = { finetuning_type: "oft", oft_block_size: 8, learning_rate: 5e-2, max_steps: 4 };
  const whole = await run("oft-whole", { ...extra, save_strategy: "no" });
  await run("oft-cut", { ...extra, save_strategy: "steps", save_steps: 2 });
  const resumed = await run("oft-cut", {
    ...extra,
    save_strategy: "no",
    resume_from_checkpoint: `${root}/oft-cut/checkpoint-2`,
  });
  assert.deepEqual(resumed.losses, whole.losses.slice(2));
});

Deno.test("NEFTune and S²-attention are in training steps only: the eval step has neither", async () => {
  const model = await loadModel(LLAMA_FIXTURE, { executor: "reference", dtype: "f32" });
  const names = ["model.layers.0.self_attn.q_proj.weight"];
  const train = traceTrainStep(model, adamwStepPlan(2, 16, names, { neftune: 5, shiftAttn: true }));
  assert.ok(train.inputs.has("noise_0"), "the training step takes the noise");
  const plain = traceTrainStep(model, adamwStepPlan(2, 16, names));
  assert.ok(train.nodes.length > plain.nodes.length, "and rolls / regroups its attention");
  const evalStep = traceEvalStep(model, 2, 16);
  assert.ok(![...evalStep.inputs.keys()].some((k) => k.startsWith("noise")), "evaluation adds no noise");
});
