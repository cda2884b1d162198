/**
 * The trainer end to end on a random tiny qwen2 with the built-in tokenizer and the bundled demo data:
 * LoRA outputs PEFT's files and learns; a resumed run repeats the uninterrupted run's losses step for step;
 * full and freeze tuning write HF folders that load back, freeze touching only its layers.
 */
import assert from "node:assert/strict";
import { parseTrainArgs } from "../config/args.ts";
import { loadModel } from "../nn/model.ts";
import { readPeftAdapter } from "../io/peft.ts";
import { makeTinyModel } from "./testing.ts";
import { writePaddedVocabModel } from "../nn/vocab_testing.ts";
import { train } from "./trainer.ts";
import { listCheckpoints } from "./outputs/checkpoint.ts";

const DEMO = new URL("../../fixtures/demo/", import.meta.url).pathname;
const root = await Deno.makeTempDir({ prefix: "whetstone-trainer-" });
// The temporary folder goes when the test module unloads.
globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));
const model = await makeTinyModel(`${root}/model`);

function args(out: string, extra: Record<string, unknown> = {}) {
  return parseTrainArgs({
    model_name_or_path: model,
    stage: "sft",
    do_train: true,
    finetuning_type: "lora",
    lora_target: "all",
    dataset: "whetstone_demo",
    dataset_dir: DEMO,
    template: "qwen",
    cutoff_len: 64,
    max_samples: 40,
    output_dir: out,
    logging_steps: 1,
    per_device_train_batch_size: 4,
    learning_rate: 1e-2,
    max_steps: 6,
    save_steps: 3,
    seed: 7,
    ...extra,
  });
}

Deno.test("trainer: LoRA SFT writes a PEFT adapter, logs, checkpoints and a loss plot, and eval loss falls", async () => {
  const out = `${root}/lora`;
  const res = await train(args(out, { val_size: 0.2, eval_steps: 3, eval_strategy: "steps", plot_loss: true }), {
    progress: false,
    log: () => {},
  });
  assert.equal(res.globalStep, 6);
  assert.equal(res.losses.length, 6);
  assert.ok(res.evalLosses[1].eval_loss < res.evalLosses[0].eval_loss, JSON.stringify(res.evalLosses));
  const adapter = await readPeftAdapter(out);
  assert.equal(adapter.config.r, 8);
  assert.ok(adapter.tensors.size > 0);
  const lines = (await Deno.readTextFile(`${out}/trainer_log.jsonl`)).trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(lines.filter((l) => l.loss !== undefined).map((l) => l.current_steps), [1, 2, 3, 4, 5, 6]);
  for (const k of ["current_steps", "total_steps", "loss", "lr", "epoch", "percentage", "elapsed_time"]) {
    assert.ok(k in lines[0], `trainer_log.jsonl lacks ${k}`);
  }
  assert.ok((await Deno.stat(`${out}/training_loss.svg`)).size > 0);
  // Every save_steps, and at the last step as HF's DefaultFlowCallback saves there too.
  assert.deepEqual((await listCheckpoints(out)).map((c) => c.step), [3, 6]);
  // The adapter loads onto the base and reproduces a lower loss than the base alone.
  const base = await loadModel(model);
  const tuned = await loadModel(model, { adapter: out });
  const ids = [[151, 200, 300, 400, 500, 600, 700, 800]].map((r) => r.map((x) => x % base.config.vocab));
  const a = await base.forward(ids), b = await tuned.forward(ids);
  assert.ok(a.logits.some((x, i) => Math.abs(x - b.logits[i]) > 1e-4), "the trained adapter changes the logits");
});

Deno.test("trainer: the sample answer of a model padded past its tokenizer stays within the tokenizer", async () => {
  // The tiny model with 2048 padded rows (row V + i = 10 × row i): unmasked, a padded id wins.
  const { dir, vocab } = await writePaddedVocabModel(model, `${root}/padded`, 2048);
  const out = `${root}/padded-lora`, lines: string[] = [];
  const res = await train(args(out, { model_name_or_path: dir, max_steps: 2, save_strategy: "no" }), {
    progress: false,
    log: (l) => lines.push(l),
  });
  assert.ok((await readPeftAdapter(out)).tensors.size > 0, "the run's outputs are written");
  assert.ok(res.sample && res.sample.prompt.length > 0, `a sample: ${JSON.stringify(res.sample)}`);
  assert.ok(res.sample.tokens >= 1 && res.sample.tokens <= 48, `answer tokens: ${res.sample.tokens}`);
  assert.ok(!lines.some((l) => l.includes("sample answer failed")), lines.join("\n"));
  const unmasked = await res.model!.generate([5, 6, 7], { maxNewTokens: 2 });
  assert.ok(unmasked.every((t) => t >= vocab), `the padded rows win unmasked: ${unmasked}`);
});

Deno.test("trainer: a run stopped at a checkpoint and resumed repeats the uninterrupted run step for step", async () => {
  const whole = await train(args(`${root}/whole`), { progress: false, log: () => {} });
  const cut = `${root}/cut`;
  const first = await train(args(cut), { progress: false, log: () => {}, stopAfter: 3 });
  assert.equal(first.globalStep, 3);
  const rest = await train(args(cut, { resume_from_checkpoint: true }), { progress: false, log: () => {} });
  assert.deepEqual(rest.losses.map((l) => l.step), [4, 5, 6]);
  for (const l of rest.losses) {
    const w = whole.losses.find((x) => x.step === l.step)!;
    assert.ok(Math.abs(l.loss - w.loss) <= 1e-6 * Math.abs(w.loss), `step ${l.step}: ${l.loss} vs ${w.loss}`);
  }
  const log = (await Deno.readTextFile(`${cut}/trainer_log.jsonl`)).trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(log.map((l) => l.current_steps), [1, 2, 3, 4, 5, 6]);
});

Deno.test("trainer: full and freeze tuning write HF model folders; freeze changes only its layers", async () => {
  for (const type of ["full", "freeze"]) {
    const out = `${root}/${type}`;
    await train(args(out, { finetuning_type: type, max_steps: 2, save_strategy: "no", freeze_trainable_layers: 1 }), {
      progress: false,
      log: () => {},
    });
    const base = await loadModel(model, { executor: "reference" });
    const tuned = await loadModel(out, { executor: "reference" });
    let changedOther = false, changedLast = false, changedEmbed = false;
    for (const name of base.params.keys()) {
      const x = await base.executor.getParam(name), y = await tuned.executor.getParam(name);
      const diff = x.some((v, i) => Math.abs(v - y[i]) > 1e-7);
      if (name.startsWith("model.layers.1.")) changedLast ||= diff;
      else if (name.startsWith("model.layers.0.")) changedOther ||= diff;
      else if (name.startsWith("model.embed_tokens")) changedEmbed ||= diff;
    }
    assert.ok(changedLast, `${type}: the last layer trained`);
    assert.equal(changedOther, type === "full", `${type}: layer 0 ${type === "full" ? "trains" : "stays frozen"}`);
    assert.equal(changedEmbed, type === "full");
  }
});

Deno.test("trainer: 2 micro-batches of 2 accumulate to the same steps as one batch of 4 (token-level loss)", async () => {
  const one = await train(args(`${root}/acc1`, { max_steps: 3, save_strategy: "no" }), {
    progress: false,
    log: () => {},
  });
  const two = await train(
    args(`${root}/acc2`, {
      max_steps: 3,
      save_strategy: "no",
      per_device_train_batch_size: 2,
      gradient_accumulation_steps: 2,
    }),
    { progress: false, log: () => {} },
  );
  for (let i = 0; i < 3; i++) {
    const [a, b] = [one.losses[i].loss, two.losses[i].loss];
    assert.ok(Math.abs(a - b) <= 2e-5 * Math.abs(a), `step ${i + 1}: ${a} vs ${b}`);
  }
});

Deno.test("trainer: pre-training (stage pt) on plain text packs blocks and learns", async () => {
  const res = await train(
    args(`${root}/pt`, {
      stage: "pt",
      dataset: "whetstone_text",
      template: null,
      max_steps: 4,
      save_strategy: "no",
      learning_rate: 2e-2,
    }),
    { progress: false, log: () => {} },
  );
  assert.equal(res.losses.length, 4);
  assert.ok(res.losses.every((l) => Number.isFinite(l.loss)));
  assert.ok(res.losses[3].loss < res.losses[0].loss, JSON.stringify(res.losses));
});

Deno.test("trainer: LoRA+ gives lora_B matrices loraplus_lr_ratio times the learning rate", async () => {
  const { loadModel } = await import("../nn/model.ts");
  const { attachAdapter } = await import("../nn/lora.ts");
  const { adamwStepPlan, traceTrainStep } = await import("./step/lm.ts");
  const m = await loadModel(model, { executor: "reference" });
  const ad = await attachAdapter(m, { r: 4, targets: ["q_proj"] });
  const g = traceTrainStep(m, adamwStepPlan(1, 8, [...ad.params.keys()], { loraplusRatio: 16 }));
  const lrId = g.inputs.get("lr")!;
  const updates = g.nodes.filter((n) => n.op === "adamw");
  assert.equal(updates.length, ad.params.size);
  for (const n of updates) {
    const name = g.values[n.inputs[0]].name!;
    const lr = n.inputs[4];
    if (name.endsWith("lora_B.weight")) {
      const mulNode = g.nodes[g.values[lr].node!];
      assert.equal(mulNode.op, "mul");
      assert.ok(mulNode.inputs.includes(lrId));
      assert.ok(mulNode.inputs.some((v) => g.values[v].data?.[0] === 16), `${name}: lr × 16`);
    } else assert.equal(lr, lrId, `${name}: the base lr`);
  }
});

Deno.test("trainer: the README's main job config parses and names files that exist", async () => {
  const { loadTrainConfig } = await import("../config/args.ts");
  const here = new URL("../../", import.meta.url).pathname;
  const a = await loadTrainConfig(`${here}examples/demo_lora_sft.yaml`);
  assert.equal(a.finetuning_type, "lora");
  assert.equal(a.stage, "sft");
  for (const f of ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]) {
    await Deno.stat(`${here}${a.model_name_or_path}/${f}`);
  }
  const info = JSON.parse(await Deno.readTextFile(`${here}${a.dataset_dir}/dataset_info.json`));
  assert.ok(info[String(a.dataset)], `dataset ${a.dataset} is in ${a.dataset_dir}/dataset_info.json`);
});

Deno.test("trainer: the same run on WebGPU, ONNX Runtime and the reference gives one loss curve", async () => {
  const curves: Record<string, number[]> = {};
  for (const executor of ["reference", "webgpu", "onnx"] as const) {
    const res = await train(args(`${root}/curve-${executor}`, { executor, lora_dropout: 0.1 }), {
      progress: false,
      log: () => {},
    });
    curves[executor] = res.losses.map((l) => l.loss);
  }
  assert.equal(curves.reference.length, 6);
  for (const ex of ["webgpu", "onnx"]) {
    curves[ex].forEach((l, i) => {
      const want = curves.reference[i];
      assert.ok(Math.abs(l - want) <= 2e-4 * Math.abs(want), `${ex} step ${i + 1}: ${l} vs reference ${want}`);
    });
  }
});

Deno.test("trainer: checkpoints move between executors: stopped on ONNX Runtime, resumed on WebGPU", async () => {
  const whole = await train(args(`${root}/x-whole`, { executor: "onnx" }), { progress: false, log: () => {} });
  const cut = `${root}/x-cut`;
  await train(args(cut, { executor: "onnx" }), { progress: false, log: () => {}, stopAfter: 3 });
  const rest = await train(args(cut, { executor: "webgpu", resume_from_checkpoint: true }), {
    progress: false,
    log: () => {},
  });
  assert.deepEqual(rest.losses.map((l) => l.step), [4, 5, 6]);
  for (const l of rest.losses) {
    const w = whole.losses.find((x) => x.step === l.step)!;
    assert.ok(Math.abs(l.loss - w.loss) <= 2e-4 * Math.abs(w.loss), `step ${l.step}: ${l.loss} vs ${w.loss}`);
  }
});
