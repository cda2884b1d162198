/**
 * `use_badam: true, badam_mode: ratio` in the trainer, on fixtures/models/llama (untied embeddings: BAdam's ratio mode
 * freezes its embed_tokens and lm_head) and the steps data: the loss falls; the embeddings and the head stay; every
 * other param changes in exactly int(n · ratio) entries, those of the adjacent mask; a run stopped at step 4 resumes
 * step for step; a tied model is refused as BAdam fails on it.
 */
import assert from "node:assert/strict";
import { makeModelFolder, readRuns, runArgs } from "../../fixtures/steps/runs.ts";
import { openSafetensors } from "../io/safetensors.ts";
import { TrainSession } from "./session.ts";
import { train } from "./trainer.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const root = await Deno.makeTempDir({ prefix: "whetstone-badam-ratio-" });
globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));
const quiet = { log: () => {} };
const model = await makeModelFolder(`${root}/model`);
const run = (await readRuns()).full_sft;

const KEYS = {
  use_badam: true,
  badam_mode: "ratio",
  badam_update_ratio: 0.3,
  learning_rate: 0.01,
  max_steps: 8,
  save_strategy: "steps",
  save_steps: 4,
};
const args = (out: string, extra: Record<string, unknown> = {}) =>
  runArgs({ ...run, ...KEYS, ...extra }, model, out, "onnx");

Deno.test("badam ratio: the loss falls, a fraction of each param trains, a stopped run resumes", async () => {
  const a = args(`${root}/whole`);
  assert.ok(a.warnings.some((w) => /max_grad_norm: BAdam's ratio mode/.test(w)), a.warnings.join("; "));
  const whole = await train(a, { progress: false, ...quiet });
  const l = whole.losses.map((x) => x.loss);
  assert.equal(l.length, 8);
  assert.ok((l[6] + l[7]) / 2 < (l[0] + l[1]) / 2 - 0.1, `${l.map((x) => x.toFixed(3))}`);

  using before = await openSafetensors(`${model}/model.safetensors`);
  using after = await openSafetensors(`${root}/whole/model.safetensors`);
  for (const [name, info] of before.tensors) {
    const x = await before.readF32(name), y = await after.readF32(name), n = x.length;
    const changed = [...x.keys()].filter((i) => x[i] !== y[i]);
    if (name.includes("embed_tokens") || name.startsWith("lm_head")) {
      assert.equal(changed.length, 0, `${name} is frozen (${info.shape})`);
    } else {
      const k = Math.trunc(n * 0.3);
      assert.ok(changed.length > 0 && changed.length <= k, `${name}: ${changed.length} changed, k ${k}`);
      assert.ok(changed.every((i) => i < k), `${name}: only the first block's adjacent entries`);
    }
  }

  const cut = `${root}/cut`;
  await train(args(cut), { progress: false, ...quiet, stopAfter: 4 });
  const rest = await train(args(cut, { resume_from_checkpoint: true }), { progress: false, ...quiet });
  const r = rest.losses.map((x) => x.loss);
  assert.equal(r.length, 4);
  r.forEach((x, i) => assert.ok(Math.abs(x - l[4 + i]) < 1e-6, `step ${5 + i}: resumed ${x} vs ${l[4 + i]}`));
});

Deno.test("badam ratio: a model with tied embeddings (no lm_head parameter) is refused, as BAdam fails on it", async () => {
  const a = runArgs({ ...run, ...KEYS }, `${ROOT}fixtures/tiny/model`, `${root}/tied`, "onnx");
  await assert.rejects(() => TrainSession.create(a, quiet), /tied word embeddings list no lm_head/);
});
