/**
 * Training deepseek_v3 and glm4_moe (fixtures/models/<deepseek_v3|glm4_moe>): LoRA and full fine-tuning through
 * `train` with finite losses that fall; the e_score_correction_bias buffers never train (full, freeze) and the saved
 * full model keeps them as loaded; `moe_aux_loss_coef` leaves the router loss off, as LLaMA-Factory's configure_moe does.
 */
import assert from "node:assert/strict";
import { ReferenceExecutor } from "../exec/reference.ts";
import { openSafetensors } from "../io/safetensors.ts";
import { parseTrainArgs } from "../config/args.ts";
import { loadTrainModel } from "./run_inputs.ts";
import { train } from "./trainer.ts";

const models = new URL("../../fixtures/models/", import.meta.url).pathname;
const steps = new URL("../../fixtures/steps/", import.meta.url).pathname;
const BIAS = "model.layers.1.mlp.gate.e_score_correction_bias";

async function tensor(file: string, name: string): Promise<Float32Array> {
  const f = await openSafetensors(file);
  try {
    return await f.readF32(name);
  } finally {
    f.close();
  }
}

Deno.test("deepseek_v3: the correction bias never trains; moe_aux_loss_coef adds no router loss", async () => {
  const base = {
    model_name_or_path: `${models}deepseek_v3`,
    stage: "sft",
    do_train: true,
    dataset: "x",
    template: "empty",
    output_dir: "/tmp/unused",
    executor: "reference",
    moe_aux_loss_coef: 0.01,
  };
  for (const finetuning_type of ["lora", "full", "freeze"]) {
    const { model, trainable } = await loadTrainModel(
      parseTrainArgs({ ...base, finetuning_type }),
      new ReferenceExecutor(),
    );
    assert.deepEqual([model.config.moe!.outputRouterLogits, model.config.moe!.auxCoef], [false, 0]);
    assert.ok(!trainable.some((n) => n.endsWith("e_score_correction_bias")), finetuning_type);
    if (finetuning_type !== "lora") assert.ok(trainable.includes("model.layers.1.mlp.gate.weight"), finetuning_type);
  }
});

for (const family of ["deepseek_v3", "glm4_moe"]) {
  Deno.test(`${family} trains with LoRA and full fine-tuning: finite losses that fall, buffers kept`, async () => {
    const root = await Deno.makeTempDir({ prefix: `whetstone-${family}-` });
    try {
      for (const f of ["config.json", "model.safetensors"]) {
        await Deno.copyFile(`${models}${family}/${f}`, `${root}/${f}`);
      }
      for (const f of ["tokenizer.json", "tokenizer_config.json"]) {
        await Deno.copyFile(`${steps}tokenizer/${f}`, `${root}/${f}`);
      }
      for (const [finetuning_type, learning_rate] of [["lora", 2e-2], ["full", 2e-3]] as const) {
        const out = `${root}/out_${finetuning_type}`;
        const a = parseTrainArgs({
          model_name_or_path: root,
          stage: "sft",
          do_train: true,
          finetuning_type,
          dataset: "steps_sft",
          dataset_dir: steps,
          template: "empty",
          output_dir: out,
          per_device_train_batch_size: 2,
          learning_rate,
          weight_decay: 0.1,
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
        assert.ok(losses.every(Number.isFinite), `${finetuning_type}: ${losses}`);
        assert.ok(losses[4] + losses[5] < losses[0] + losses[1], `${finetuning_type}: losses do not fall: ${losses}`);
        if (finetuning_type === "full") {
          const before = await tensor(`${root}/model.safetensors`, BIAS);
          const after = await tensor(`${out}/model.safetensors`, BIAS);
          assert.deepEqual(Array.from(after), Array.from(before), "e_score_correction_bias changed in training");
          const w = "model.layers.1.mlp.experts.0.down_proj.weight";
          const w0 = await tensor(`${root}/model.safetensors`, w), w1 = await tensor(`${out}/model.safetensors`, w);
          assert.ok(w0.some((v, i) => v !== w1[i]), "full fine-tuning left the experts unchanged");
        }
      }
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  });
}
