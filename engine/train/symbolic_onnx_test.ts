/**
 * The trainer on ONNX Runtime compiles one session for its training step and one for its evaluation whatever the
 * padded lengths of the batches (exec/onnx/symbolic.ts), and trains exactly as with a session per length.
 */
import assert from "node:assert/strict";
import { parseTrainArgs } from "../config/args.ts";
import { countOnnxSessions, makeTinyModel } from "./testing.ts";
import { train } from "./trainer.ts";

const DEMO = new URL("../../fixtures/demo/", import.meta.url).pathname;
const root = await Deno.makeTempDir({ prefix: "whetstone-symbolic-" });
globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));
const model = await makeTinyModel(`${root}/model`);

async function run(out: string, finetuning_type: "lora" | "full", symbolic: boolean) {
  const r = await countOnnxSessions(symbolic, () =>
    train(
      parseTrainArgs({
        model_name_or_path: model,
        stage: "sft",
        do_train: true,
        finetuning_type,
        lora_target: "all",
        dataset: "whetstone_demo",
        dataset_dir: DEMO,
        template: "qwen",
        cutoff_len: 512,
        max_samples: 40,
        output_dir: out,
        logging_steps: 1,
        per_device_train_batch_size: 1,
        learning_rate: 1e-2,
        max_steps: 8,
        val_size: 0.2,
        eval_strategy: "steps",
        eval_steps: 4,
        bucket: 8, // many padded lengths
        seed: 7,
        executor: "onnx",
      }),
      { progress: false, log: () => {} },
    ));
  return { ...r, losses: r.result.losses.map((l) => l.loss) };
}

for (const method of ["lora", "full"] as const) {
  Deno.test(`trainer on ONNX Runtime (${method}): one step and one eval session across padded lengths`, async () => {
    const sym = await run(`${root}/${method}-sym`, method, true);
    const fixed = await run(`${root}/${method}-fixed`, method, false);
    assert.deepEqual(sym.fallbacks, []);
    assert.ok(fixed.created >= 4, `per-length sessions: ${fixed.created} (the batches must have several lengths)`);
    // The training step and the evaluation graph (and the sample answer's prefill and decode, if any).
    assert.ok(sym.created <= 4 && sym.created < fixed.created, `sessions: ${sym.created} vs ${fixed.created}`);
    assert.ok(sym.reused >= fixed.created - sym.created, `reused ${sym.reused}`);
    assert.equal(sym.losses.length, fixed.losses.length);
    sym.losses.forEach((l, i) => {
      const want = fixed.losses[i];
      assert.ok(Math.abs(l - want) <= 1e-6 * Math.abs(want), `step ${i + 1}: ${l} vs ${want}`);
    });
  });
}
