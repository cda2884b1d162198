/**
 * Training gpt_oss (fixtures/models/gpt_oss): the LM objective's loss and gradients (attention sinks, router weight and
 * bias, fused experts) with the router's load-balancing term (config.json's output_router_logits with
 * router_aux_loss_coef 0.25, the `aux.*` golden), with and without activation checkpointing, on the reference executor
 * and ONNX Runtime; LLaMA-Factory's `moe_aux_loss_coef` leaving gpt_oss alone (its configure_moe does not list it);
 * LoRA and full fine-tuning runs whose losses fall; a full run from the MXFP4 fixture saving the dequantized model; and
 * on ONNX Runtime one symbolic session serving the sparse training step at every batch and length, as sessions built
 * per shape do (exec/onnx/symbolic.ts).
 */
import assert from "node:assert/strict";
import { backward, Graph } from "../graph/mod.ts";
import { ReferenceExecutor } from "../exec/reference.ts";
import { OnnxExecutor } from "../exec/onnx/executor.ts";
import type { Executor } from "../exec/executor.ts";
import { openSafetensors } from "../io/safetensors.ts";
import { bucketLength, loadModel } from "../nn/model.ts";
import { relNorm } from "../nn/lora_testing.ts";
import { parseTrainArgs } from "../config/args.ts";
import { loadTrainModel } from "./run_inputs.ts";
import { adamwStepPlan, lmObjective, LOSS_SUM, traceTrainStep } from "./step/lm.ts";
import { stateNames } from "./step/optimizer.ts";
import { relErr } from "../exec/testing/harness.ts";
import { mulberry32 } from "../util/rng.ts";
import { train } from "./trainer.ts";

const dir = new URL("../../fixtures/models/gpt_oss", import.meta.url).pathname;
const NAMES = [
  "model.layers.0.self_attn.sinks",
  "model.layers.1.mlp.router.weight",
  "model.layers.1.mlp.router.bias",
  "model.layers.0.mlp.experts.gate_up_proj",
  "model.layers.0.mlp.experts.gate_up_proj_bias",
  "model.layers.1.mlp.experts.down_proj",
  "model.layers.1.mlp.experts.down_proj_bias",
];

async function golden() {
  const f = await openSafetensors(`${dir}/golden.safetensors`);
  const rows = async (n: string) => {
    const [B, L] = f.tensors.get(n)!.shape, d = await f.readF32(n);
    return Array.from({ length: B }, (_, b) => Array.from(d.subarray(b * L, (b + 1) * L)));
  };
  const out = {
    ids: await rows("input_ids"),
    mask: await rows("attention_mask"),
    labels: await rows("labels"),
    auxLoss: (await f.readF32("aux.loss"))[0],
    grads: new Map<string, Float32Array>(),
  };
  for (const n of NAMES) out.grads.set(n, await f.readF32(`aux.grad.${n}`));
  f.close();
  return out;
}

for (
  const [exName, make] of [["reference", () => new ReferenceExecutor()], ["onnx", () => OnnxExecutor.create()]] as [
    string,
    () => Executor | Promise<Executor>,
  ][]
) {
  for (const checkpoint of [false, true]) {
    Deno.test(`gpt_oss LM objective on ${exName}${checkpoint ? " (checkpointed)" : ""}: + router_aux_loss_coef × load balancing matches transformers`, async () => {
      const g0 = await golden();
      const model = await loadModel(dir, { executor: await make(), dtype: "f32" });
      model.config.moe!.outputRouterLogits = true; // as config.json's output_router_logits: true
      model.config.moe!.auxCoef = 0.25;
      const B = g0.ids.length, L = bucketLength(g0.ids[0].length);
      const g = new Graph();
      const loss = lmObjective(model, { B, L, checkpoint }).begin(g)(0).loss;
      g.output("loss", loss);
      backward(loss, NAMES.map((n) => model.weights(g).weight(n))).forEach((t, i) => g.output(NAMES[i], t));
      const ids = new Int32Array(B * L), pos = new Int32Array(B * L), seg = new Int32Array(B * L);
      const labels = new Int32Array(B * L).fill(-100);
      let targets = 0;
      g0.ids.forEach((row, b) =>
        row.forEach((t, i) => {
          ids[b * L + i] = t;
          pos[b * L + i] = i;
          seg[b * L + i] = g0.mask[b][i];
          const next = g0.labels[b][i + 1];
          if (next !== undefined && next !== -100) (labels[b * L + i] = next), targets++;
        })
      );
      const out = await (await model.executor.compile(g)).run({
        ids_0: ids,
        positions_0: pos,
        segments_0: seg,
        labels_0: labels,
        inv_targets: [1 / targets],
      });
      assert.ok(Math.abs(out.loss[0] - g0.auxLoss) <= 1e-5 * g0.auxLoss, `loss ${out.loss[0]} vs ${g0.auxLoss}`);
      for (const n of NAMES) {
        const rel = relNorm(out[n] as Float32Array, g0.grads.get(n)!);
        assert.ok(rel <= 1e-4, `${n}: relative error ${rel.toExponential(2)}`);
      }
    });
  }
}

const base = {
  model_name_or_path: dir,
  stage: "sft",
  do_train: true,
  dataset: "x",
  template: "empty",
  output_dir: "/tmp/unused",
  executor: "reference",
};

Deno.test("gpt_oss: moe_aux_loss_coef is not applied (LF's configure_moe has no gpt_oss); LoRA leaves router and experts", async () => {
  for (const finetuning_type of ["lora", "full"]) {
    const a = parseTrainArgs({ ...base, finetuning_type, moe_aux_loss_coef: 0.01 });
    const { model, trainable } = await loadTrainModel(a, new ReferenceExecutor());
    assert.deepEqual([model.config.moe!.outputRouterLogits, model.config.moe!.auxCoef], [false, 0.001]);
    if (finetuning_type === "lora") {
      assert.ok(trainable.length > 0 && trainable.every((n) => n.includes("self_attn.") && n.includes("lora_")));
    } else {
      assert.ok(trainable.includes("model.layers.0.self_attn.sinks"));
      assert.ok(trainable.includes("model.layers.1.mlp.experts.gate_up_proj"));
      assert.ok(trainable.includes("model.layers.1.mlp.router.bias"));
    }
  }
});

Deno.test("gpt_oss trains with LoRA and full fine-tuning: finite losses that fall", async () => {
  const root = await Deno.makeTempDir({ prefix: "whetstone-gpt-oss-" });
  try {
    const steps = new URL("../../fixtures/steps/", import.meta.url).pathname;
    const cfg = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
    // The router loss on, as a config.json with output_router_logits: true asks (transformers adds it in training).
    await Deno.writeTextFile(`${root}/config.json`, JSON.stringify({ ...cfg, output_router_logits: true }));
    await Deno.copyFile(`${dir}/model.safetensors`, `${root}/model.safetensors`);
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) {
      await Deno.copyFile(`${steps}tokenizer/${f}`, `${root}/${f}`);
    }
    for (const [finetuning_type, learning_rate] of [["lora", 2e-2], ["full", 2e-3]] as const) {
      const a = parseTrainArgs({
        model_name_or_path: root,
        stage: "sft",
        do_train: true,
        finetuning_type,
        dataset: "steps_sft",
        dataset_dir: steps,
        template: "empty",
        output_dir: `${root}/out_${finetuning_type}`,
        per_device_train_batch_size: 2,
        learning_rate,
        max_steps: 12, // 3 epochs of 4 steps (7 examples, batch 2), the same batches in the same order each epoch
        logging_steps: 1,
        executor: "reference",
        bucket: 16,
        seed: 42,
        disable_shuffling: true,
        lr_scheduler_type: "constant",
      });
      const res = await train(a, { progress: false, log: () => {} });
      const losses = res.losses.map((l) => l.loss);
      assert.equal(losses.length, 12);
      assert.ok(losses.every(Number.isFinite), `${finetuning_type}: ${losses}`);
      const epoch = (e: number) => losses.slice(4 * e, 4 * e + 4).reduce((x, y) => x + y, 0);
      assert.ok(epoch(2) < epoch(1) && epoch(1) < epoch(0), `${finetuning_type}: losses do not fall: ${losses}`);
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("gpt_oss_mxfp4 fine-tuned in full: the saved folder is the dequantized model, no quantization_config", async () => {
  const root = await Deno.makeTempDir({ prefix: "whetstone-gpt-oss-" });
  try {
    const src = new URL("../../fixtures/models/gpt_oss_mxfp4", import.meta.url).pathname;
    const steps = new URL("../../fixtures/steps/", import.meta.url).pathname;
    for (const f of ["config.json", "model.safetensors"]) await Deno.copyFile(`${src}/${f}`, `${root}/${f}`);
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) {
      await Deno.copyFile(`${steps}tokenizer/${f}`, `${root}/${f}`);
    }
    const out = `${root}/out`;
    const a = parseTrainArgs({
      model_name_or_path: root,
      stage: "sft",
      do_train: true,
      finetuning_type: "full",
      dataset: "steps_sft",
      dataset_dir: steps,
      template: "empty",
      output_dir: out,
      per_device_train_batch_size: 2,
      learning_rate: 1e-3,
      max_steps: 2,
      executor: "reference",
      bucket: 16,
      seed: 42,
    });
    const res = await train(a, { progress: false, log: () => {} });
    assert.ok(res.losses.every((l) => Number.isFinite(l.loss)));
    const cfg = JSON.parse(await Deno.readTextFile(`${out}/config.json`));
    assert.equal(cfg.quantization_config, undefined);
    const f = await openSafetensors(`${out}/model.safetensors`);
    assert.deepEqual(f.tensors.get("model.layers.0.mlp.experts.gate_up_proj")!.shape, [4, 32, 64]);
    assert.ok(![...f.tensors.keys()].some((n) => n.endsWith("_blocks") || n.endsWith("_scales")));
    f.close();
    const back = await loadModel(out, { executor: new ReferenceExecutor() });
    assert.ok(Number.isFinite((await back.forward([[1, 5, 9]])).logits[0]));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("gpt_oss on ONNX Runtime: one symbolic session serves the sparse training step at every shape", async () => {
  const shapes: [number, number][] = [[2, 8], [1, 5], [3, 16]];
  const run = async (symbolic: boolean) => {
    const ex = await OnnxExecutor.create({ symbolic, modelCache: false });
    const model = await loadModel(dir, { executor: ex, dtype: "f32" });
    const trainable = [...model.params.keys()];
    for (const name of trainable) {
      const shape = model.params.get(name)!.shape, zeros = new Float32Array(shape.reduce((a, b) => a * b, 1));
      ex.setParam(stateNames(name).m, zeros, shape);
      ex.setParam(stateNames(name).v, zeros, shape);
    }
    ex.setParam(LOSS_SUM, [0], [1]);
    const losses: number[] = [];
    for (const [B, L] of shapes) {
      const trace = (s: Record<string, number>) => traceTrainStep(model, adamwStepPlan(s.B, s.L, trainable));
      const step = await ex.compile(trace({ B, L }), { symbolic: { sizes: { B, L }, trace } });
      const r = mulberry32(B * 100 + L), n = B * L, V = model.config.vocab;
      const out = await step.run({
        ids_0: Int32Array.from({ length: n }, () => Math.floor(r() * V)),
        positions_0: Int32Array.from({ length: n }, (_, i) => i % L),
        segments_0: Int32Array.from({ length: n }, () => 1),
        labels_0: Int32Array.from({ length: n }, () => Math.floor(r() * V)),
        inv_targets: [1 / n],
        lr: [1e-2],
        step: [losses.length + 1],
      }, ["loss"]);
      losses.push(out.loss[0]);
    }
    const expert = await ex.getParam(`model.layers.1.mlp.experts.gate_up_proj`);
    ex.dispose();
    return { losses, expert, sessions: ex.sessions };
  };
  const sym = await run(true), fixed = await run(false);
  assert.deepEqual(sym.sessions.fallbacks, []);
  assert.deepEqual([sym.sessions.created, sym.sessions.reused, fixed.sessions.created], [1, shapes.length - 1, 3]);
  assert.ok(relErr(sym.losses, fixed.losses) <= 1e-6, `losses ${sym.losses} vs ${fixed.losses}`);
  assert.ok(relErr(sym.expert, fixed.expert) <= 1e-6, "updated gate_up_proj");
});
