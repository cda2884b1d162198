/**
 * Training a mixture-of-experts model: LLaMA-Factory's `moe_aux_loss_coef` through `loadTrainModel` (LoRA, full and
 * freeze) and the LM objective's loss and gradients with the router's load-balancing term, against the transformers
 * golden (fixtures/models/mixtral, `aux.*`: output_router_logits with router_aux_loss_coef 0.25), with and without
 * activation checkpointing, on the reference executor and ONNX Runtime; short runs of LoRA, LoRA on the fused expert
 * parameters alone (lora_target `experts.gate_up_proj,experts.down_proj`) and full fine-tuning whose losses fall.
 */
import assert from "node:assert/strict";
import { backward, Graph } from "../graph/mod.ts";
import { ReferenceExecutor } from "../exec/reference.ts";
import { OnnxExecutor } from "../exec/onnx/executor.ts";
import type { Executor } from "../exec/executor.ts";
import { openSafetensors } from "../io/safetensors.ts";
import { bucketLength, loadModel } from "../nn/model.ts";
import { configureMoe } from "../nn/moe.ts";
import { relNorm } from "../nn/lora_testing.ts";
import { parseTrainArgs } from "../config/args.ts";
import { loadTrainModel } from "./run_inputs.ts";
import { lmObjective } from "./step/lm.ts";
import { train } from "./trainer.ts";

const dir = new URL("../../fixtures/models/mixtral", import.meta.url).pathname;
const ROUTERS = ["model.layers.0.block_sparse_moe.gate.weight", "model.layers.1.block_sparse_moe.gate.weight"];
const EXPERT = "model.layers.1.block_sparse_moe.experts.2.w2.weight";

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
  for (const n of [...ROUTERS, EXPERT]) out.grads.set(n, await f.readF32(`aux.grad.${n}`));
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
    Deno.test(`mixtral LM objective on ${exName}${checkpoint ? " (checkpointed)" : ""}: + moe_aux_loss_coef × load balancing matches transformers`, async () => {
      const g0 = await golden();
      const model = await loadModel(dir, { executor: await make(), dtype: "f32" });
      configureMoe(model.config.moe, 0.25);
      const B = g0.ids.length, L = bucketLength(g0.ids[0].length);
      const g = new Graph();
      const loss = lmObjective(model, { B, L, checkpoint }).begin(g)(0).loss;
      g.output("loss", loss);
      const names = [...ROUTERS, EXPERT];
      backward(loss, names.map((n) => model.weights(g).weight(n))).forEach((t, i) => g.output(names[i], t));
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
      for (const n of names) {
        const rel = relNorm(out[n] as Float32Array, g0.grads.get(n)!);
        assert.ok(rel <= 1e-4, `${n}: relative error ${rel.toExponential(2)}`);
      }
    });
  }
}

Deno.test("moe_aux_loss_coef: accepted, turns the router loss on for lora, full and freeze; absent: off", async () => {
  const base = {
    model_name_or_path: dir,
    stage: "sft",
    do_train: true,
    dataset: "x",
    template: "empty",
    output_dir: "/tmp/unused",
    executor: "reference",
  };
  for (const finetuning_type of ["lora", "full", "freeze"]) {
    const a = parseTrainArgs({ ...base, finetuning_type, moe_aux_loss_coef: 0.01 });
    const { model, trainable } = await loadTrainModel(a, new ReferenceExecutor());
    assert.deepEqual([model.config.moe!.outputRouterLogits, model.config.moe!.auxCoef], [true, 0.01]);
    if (finetuning_type === "freeze") {
      // LF's freeze_trainable_layers 2 (default): the last 2 of num_hidden_layers — here every layer, experts too.
      assert.ok(trainable.includes(EXPERT) && trainable.includes(ROUTERS[0]));
    }
    if (finetuning_type === "lora") {
      assert.ok(trainable.every((n) => !n.includes(".experts.") && !n.includes(".gate.")));
    }
  }
  // freeze_trainable_modules by transformers 5's module name (mlp) or the checkpoint's (block_sparse_moe).
  for (const modules of ["mlp", "block_sparse_moe"]) {
    const a = parseTrainArgs({
      ...base,
      finetuning_type: "freeze",
      freeze_trainable_layers: 1,
      freeze_trainable_modules: modules,
    });
    const { trainable } = await loadTrainModel(a, new ReferenceExecutor());
    assert.equal(trainable.length, 1 + 4 * 3, modules); // layer 1's router and 4 experts × 3
    assert.ok(trainable.every((n) => n.startsWith("model.layers.1.block_sparse_moe.")), modules);
  }
  const off = await loadTrainModel(parseTrainArgs({ ...base, finetuning_type: "lora" }), new ReferenceExecutor());
  assert.deepEqual([off.model.config.moe!.outputRouterLogits, off.model.config.moe!.auxCoef], [false, 0.001]);
  assert.throws(() => parseTrainArgs({ ...base, moe_aux_loss_coef: -1 }), /moe_aux_loss_coef/);
});

Deno.test("mixtral trains with LoRA (attention; fused experts only), full (moe_aux_loss_coef on): losses fall", async () => {
  const root = await Deno.makeTempDir({ prefix: "whetstone-moe-" });
  try {
    const steps = new URL("../../fixtures/steps/", import.meta.url).pathname;
    for (const f of ["config.json", "model.safetensors"]) await Deno.copyFile(`${dir}/${f}`, `${root}/${f}`);
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) {
      await Deno.copyFile(`${steps}tokenizer/${f}`, `${root}/${f}`);
    }
    // lora_experts: LoRA on the routed experts' fused parameters only (PEFT's target_parameters), so the loss can
    // fall only through W + s·ΔW of the experts.
    const runs = [["lora", 2e-2, {}], ["full", 2e-3, {}], ["lora", 2e-2, {
      lora_target: "experts.gate_up_proj,experts.down_proj",
    }]] as const;
    for (const [finetuning_type, learning_rate, extra] of runs) {
      const name = "lora_target" in extra ? "lora_experts" : finetuning_type;
      const a = parseTrainArgs({
        ...extra,
        model_name_or_path: root,
        stage: "sft",
        do_train: true,
        finetuning_type,
        dataset: "steps_sft",
        dataset_dir: steps,
        template: "empty",
        output_dir: `${root}/out_${name}`,
        per_device_train_batch_size: 2,
        learning_rate,
        max_steps: 6,
        logging_steps: 1,
        moe_aux_loss_coef: 0.01,
        executor: "reference",
        bucket: 16,
        seed: 42,
        disable_shuffling: true,
        lr_scheduler_type: "constant",
      });
      const res = await train(a, { progress: false, log: () => {} });
      const losses = res.losses.map((l) => l.loss);
      assert.equal(losses.length, 6);
      assert.ok(losses.every(Number.isFinite), `${name}: ${losses}`);
      assert.ok(losses[4] + losses[5] < losses[0] + losses[1], `${name}: losses do not fall: ${losses}`);
      if (name === "lora_experts") {
        const saved = JSON.parse(await Deno.readTextFile(`${root}/out_${name}/adapter_config.json`));
        assert.deepEqual([saved.target_modules, saved.target_parameters], [[], [
          "experts.down_proj",
          "experts.gate_up_proj",
        ]]);
      }
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
