/**
 * Training on from PEFT's constrained-OFT adapter (fixtures/methods/oft_coft, `adapter_name_or_path` with
 * finetuning_type oft): every step starts from the projected weights as PEFT's does, so after the run each row's
 * skew-symmetric norm is within ε' plus one AdamW step of the origin (the adapter's large rows start 30× further out);
 * the saved adapter keeps PEFT's coft and eps.
 */
import assert from "node:assert/strict";
import { makeModelFolder, readRuns, runArgs } from "../../fixtures/steps/runs.ts";
import { openSafetensors } from "../io/safetensors.ts";
import { coftRadius } from "../nn/oft.ts";
import { train } from "./trainer.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const root = await Deno.makeTempDir({ prefix: "whetstone-oft-coft-" });
globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));

Deno.test("OFT coft: each training step starts from the projected weights; the adapter keeps coft and eps", async () => {
  const model = await makeModelFolder(`${root}/model`);
  const run = (await readRuns()).full_sft;
  const lr = 1e-3, out = `${root}/out`;
  const a = runArgs(
    {
      ...run,
      finetuning_type: "oft",
      adapter_name_or_path: "fixtures/methods/oft_coft", // runArgs makes it absolute
      learning_rate: lr,
      weight_decay: 0,
      lr_scheduler_type: "constant",
      max_steps: 3,
    },
    model,
    out,
    "onnx",
  );
  const res = await train(a, { progress: false, log: () => {} });
  assert.equal(res.losses.length, 3);
  const cfg = JSON.parse(await Deno.readTextFile(`${out}/adapter_config.json`));
  assert.equal(cfg.coft, true);
  assert.equal(cfg.eps, 0.02);
  using before = await openSafetensors(`${ROOT}fixtures/methods/oft_coft/adapter_model.safetensors`);
  using after = await openSafetensors(`${out}/adapter_model.safetensors`);
  let far = 0;
  for (const [k, info] of after.tensors) {
    const [rows, n] = info.shape, r = coftRadius(0.02, rows);
    const w = await after.readF32(k), w0 = await before.readF32(k);
    const norm = (x: Float32Array, i: number) =>
      Math.sqrt(2 * x.subarray(i * n, (i + 1) * n).reduce((s, v) => s + v * v, 0));
    for (let i = 0; i < rows; i++) {
      if (norm(w0, i) > 10 * r) far++;
      // one AdamW step moves each entry by at most about lr
      assert.ok(norm(w, i) <= r + Math.sqrt(2 * n) * lr * 1.05, `${k} row ${i}: ${norm(w, i)} vs ε' ${r}`);
    }
  }
  assert.ok(far > 10, `${far} rows started far outside ε'`);
});
