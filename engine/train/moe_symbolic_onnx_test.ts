/**
 * Mixture-of-experts training on ONNX Runtime with symbolic sessions (exec/onnx/symbolic.ts): the routers' TopK
 * (a constant k at every probe size; engine/graph/ops/topk.ts) and its gather / scatter keep the step graph symbolic,
 * so one session serves every padded length, and the losses are those of a session per length. Tiny mixtral (softmax
 * top-k, the load-balancing loss on) and deepseek_v3 (grouped noaux_tc top-k), LoRA.
 */
import assert from "node:assert/strict";
import { parseTrainArgs } from "../config/args.ts";
import { countOnnxSessions } from "./testing.ts";
import { train } from "./trainer.ts";

const models = new URL("../../fixtures/models/", import.meta.url).pathname;
const steps = new URL("../../fixtures/steps/", import.meta.url).pathname;

async function run(model: string, out: string, symbolic: boolean) {
  const r = await countOnnxSessions(symbolic, () =>
    train(
      parseTrainArgs({
        model_name_or_path: model,
        stage: "sft",
        do_train: true,
        finetuning_type: "lora",
        dataset: "steps_sft",
        dataset_dir: steps,
        template: "empty",
        output_dir: out,
        per_device_train_batch_size: 1,
        learning_rate: 1e-2,
        max_steps: 6,
        logging_steps: 1,
        moe_aux_loss_coef: 0.01,
        bucket: 2, // many padded lengths
        seed: 3,
        disable_shuffling: true,
        executor: "onnx",
      }),
      { progress: false, log: () => {} },
    ));
  return { ...r, losses: r.result.losses.map((l) => l.loss) };
}

for (const family of ["mixtral", "deepseek_v3"]) {
  Deno.test(`${family} LoRA on ONNX Runtime: one symbolic step session across padded lengths, losses as per length`, async () => {
    const root = await Deno.makeTempDir({ prefix: "whetstone-moe-sym-" });
    try {
      for (const f of ["config.json", "model.safetensors"]) {
        await Deno.copyFile(`${models}${family}/${f}`, `${root}/${f}`);
      }
      for (const f of ["tokenizer.json", "tokenizer_config.json"]) {
        await Deno.copyFile(`${steps}tokenizer/${f}`, `${root}/${f}`);
      }
      const sym = await run(root, `${root}/sym`, true);
      const fixed = await run(root, `${root}/fixed`, false);
      assert.deepEqual(sym.fallbacks, []);
      assert.ok(fixed.created >= 3, `per-length sessions: ${fixed.created} (the batches must have several lengths)`);
      assert.ok(sym.created < fixed.created && sym.created <= 3, `sessions: ${sym.created} vs ${fixed.created}`);
      assert.equal(sym.losses.length, 6);
      sym.losses.forEach((l, i) => {
        const want = fixed.losses[i];
        assert.ok(Math.abs(l - want) <= 1e-6 * Math.abs(want), `step ${i + 1}: ${l} vs ${want}`);
      });
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  });
}
