/**
 * Stage ppo on PEFT's constrained-OFT adapter (fixtures/methods/oft_coft as `adapter_name_or_path`, finetuning_type
 * oft): every policy update starts from the projected weights, as PEFT's forward projects them in place, so after the
 * run each row's skew-symmetric norm is within ε' plus the run's AdamW steps of the origin although many rows start
 * 30× further out; the saved adapter keeps coft and eps.
 */
import assert from "node:assert/strict";
import { makeModelFolder, readRuns, runArgs } from "../../fixtures/steps/runs.ts";
import { openSafetensors } from "../io/safetensors.ts";
import { coftRadius } from "../nn/oft.ts";
import { TrainSession } from "./session.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const root = await Deno.makeTempDir({ prefix: "whetstone-oft-coft-ppo-" });
globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));

Deno.test("ppo with OFT coft: each policy update starts from the projected weights; the adapter keeps coft", async () => {
  const model = await makeModelFolder(`${root}/model`);
  const lr = 1e-3, out = `${root}/out`, updates = 2;
  const a = runArgs(
    {
      ...(await readRuns()).full_sft,
      stage: "ppo",
      finetuning_type: "oft",
      adapter_name_or_path: "fixtures/methods/oft_coft", // runArgs makes it absolute
      reward_model: "(a function)",
      reward_model_type: "full", // LF: lora is for LoRA PPO only
      per_device_train_batch_size: 2,
      gradient_accumulation_steps: 1,
      max_steps: updates,
      max_new_tokens: 4,
      learning_rate: lr,
      weight_decay: 0,
      lr_scheduler_type: "constant",
      warmup_steps: 0,
    },
    model,
    out,
    "onnx",
  );
  const s = await TrainSession.create(a, {
    log: () => {},
    reward: (_q, rs) => rs.map((r) => r.length / 4),
    planMemory: false,
  });
  const recs = await s.step(updates);
  assert.equal(recs.length, updates);
  for (const r of recs) assert.ok(Number.isFinite(r.loss) && Number.isFinite(r.reward!), JSON.stringify(r));
  s.close();
  const cfg = JSON.parse(await Deno.readTextFile(`${out}/adapter_config.json`));
  assert.deepEqual([cfg.peft_type, cfg.coft, cfg.eps], ["OFT", true, 0.02]);
  using before = await openSafetensors(`${ROOT}fixtures/methods/oft_coft/adapter_model.safetensors`);
  using after = await openSafetensors(`${out}/adapter_model.safetensors`);
  let far = 0, checked = 0;
  for (const [k, info] of after.tensors) {
    if (!k.includes("oft_R")) continue;
    const [rows, n] = info.shape, r = coftRadius(0.02, rows);
    const w = await after.readF32(k), w0 = await before.readF32(k);
    const norm = (x: Float32Array, i: number) =>
      Math.sqrt(2 * x.subarray(i * n, (i + 1) * n).reduce((t, v) => t + v * v, 0));
    for (let i = 0; i < rows; i++) {
      checked++;
      if (norm(w0, i) > 10 * r) far++;
      // the last update moves each entry by at most about lr (ppo_epochs 4: the earlier ones were projected away)
      assert.ok(norm(w, i) <= r + Math.sqrt(2 * n) * lr * 1.05, `${k} row ${i}: ${norm(w, i)} vs ε' ${r}`);
    }
  }
  assert.ok(checked > 0 && far > 10, `${far} of ${checked} rows started far outside ε'`);
});
