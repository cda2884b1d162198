import assert from "node:assert/strict";
import { hasGpu, openGpu } from "../../gpu/device.ts";
import { planGraph } from "../../exec/plan.ts";
import type { Model } from "../../nn/model.ts";
import { makeTinyModel } from "../testing.ts";
import { initLossScaler, LOSS_SCALE, SCALE_GROWTH } from "./precision.ts";
import { PlainRun } from "../optimizers.ts";
import { type StepPlan, traceTrainStep } from "./lm.ts";

const dir = await Deno.makeTempDir({ prefix: "whetstone_fp16_" });
const modelDir = await makeTinyModel(`${dir}/model`);
const gpu = await hasGpu() && (await openGpu()).f16;

const L = 8;
const plan = (trainable: string[], fp16: boolean): StepPlan => ({
  G: 1,
  B: 1,
  L,
  trainable,
  optim: "adamw",
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0.01,
  maxGradNorm: 1,
  loraplusRatio: 0,
  dropout: false,
  fp16,
});

async function lora(executor: "reference" | "webgpu"): Promise<{ m: Model; trainable: string[] }> {
  const { loadModel } = await import("../../nn/model.ts");
  const { attachAdapter } = await import("../../nn/lora.ts");
  const m = await loadModel(modelDir, { executor });
  // init false: lora_B random too, so every adapter matrix gets a gradient on the first step.
  const ad = await attachAdapter(m, { r: 4, targets: ["q_proj", "v_proj", "down_proj"], init: false });
  const trainable = [...ad.params.keys()];
  new PlainRun(m, { ...plan(trainable, false) }).init();
  initLossScaler(m.executor);
  return { m, trainable };
}

const feeds = (() => {
  const ids = Array.from({ length: L }, (_, i) => 3 + ((i * 7) % 20));
  return {
    ids_0: ids,
    positions_0: ids.map((_, i) => i),
    segments_0: ids.map(() => 1),
    labels_0: [...ids.slice(1), -100],
    inv_targets: [1 / (L - 1)],
    lr: [1e-2],
    step: [1],
  };
})();

async function snapshot(m: Model, names: string[]): Promise<Float64Array[]> {
  return await Promise.all(names.map(async (n) => Float64Array.from(await m.executor.getParam(n))));
}

for (const executor of ["reference", "webgpu"] as const) {
  Deno.test({
    name: `loss scaler (${executor}): overflow skips the update and halves the scale; else matches f32`,
    ignore: executor === "webgpu" && !gpu,
    fn: async () => {
      const a = await lora(executor), b = await lora(executor);
      const states = a.trainable.flatMap((n) => [n, `${n}.exp_avg`, `${n}.exp_avg_sq`]);
      try {
        const before = await snapshot(a.m, states);
        // A finite step: the same update as f32 within f16 tolerance; the counter grows, the scale stays.
        const half = await a.m.executor.compile(traceTrainStep(a.m, plan(a.trainable, true)));
        const full = await b.m.executor.compile(traceTrainStep(b.m, plan(b.trainable, false)));
        const rh = await half.run(feeds), rf = await full.run(feeds);
        assert.ok(Math.abs(rh.loss[0] - rf.loss[0]) < 5e-3 * Math.abs(rf.loss[0]), `${rh.loss[0]} vs ${rf.loss[0]}`);
        assert.ok(Math.abs(rh.grad_norm[0] - rf.grad_norm[0]) < 2e-2 * rf.grad_norm[0] + 1e-6);
        assert.equal(rh.loss_scale[0], 2 ** 16);
        const ah = await snapshot(a.m, states), af = await snapshot(b.m, states);
        let moved = 0;
        ah.forEach((x, i) => {
          for (let j = 0; j < x.length; j++) {
            assert.ok(Math.abs(x[j] - af[i][j]) <= 2e-3 * Math.abs(af[i][j]) + 1e-4, `${states[i]}[${j}]`);
            if (x[j] !== before[i][j]) moved++;
          }
        });
        assert.ok(moved > 0, "the finite step updates");
        assert.equal((await a.m.executor.getParam(SCALE_GROWTH))[0], 1);
        assert.equal((await a.m.executor.getParam(LOSS_SCALE))[0], 2 ** 16);

        // Force a huge scale: the scaled gradients overflow f32, so the step is skipped and the scale halves.
        a.m.executor.setParam(LOSS_SCALE, [2 ** 127], [1]); // the largest f32 power of 2
        const r = await half.run({ ...feeds, step: [2] });
        // f32 overflows to inf; the f64 reference keeps the huge norm, which the check (norm ≥ 3e38) also catches.
        const gn = r.grad_norm[0];
        assert.ok(!Number.isFinite(gn) || gn * 2 ** 127 >= 3e38, `grad_norm ${gn}`);
        const after = await snapshot(a.m, states);
        after.forEach((x, i) => assert.deepEqual([...x], [...ah[i]], `${states[i]} unchanged`));
        assert.equal((await a.m.executor.getParam(LOSS_SCALE))[0], 2 ** 126);
        assert.equal((await a.m.executor.getParam(SCALE_GROWTH))[0], 0);
      } finally {
        a.m.executor.dispose();
        b.m.executor.dispose();
      }
    },
  });
}

Deno.test("fp16 (reference): a DPO step scales its loss and skips an overflowed update, as the LM step does", async () => {
  const { tracePrefStep, PREF_METRIC_SUMS, objectiveMetrics } = await import("./pref.ts");
  const { pairwiseFeeds } = await import("./pref_feeds.ts");
  const { prefLossConfig } = await import("./pref_loss.ts");
  const [a, b, o] = [await lora("reference"), await lora("reference"), await lora("reference")];
  const objective = { stage: "dpo" as const, loss: prefLossConfig({ pref_beta: 1 }), reference: "base" as const };
  const side = (shift: number) => {
    const ids = Array.from({ length: L }, (_, i) => 3 + ((i * 7 + shift) % 20));
    return { ids, mask: ids.map(() => 1), labels: ids.map((x, i) => (i < 3 ? -100 : x)) };
  };
  const c = side(0), r = side(5);
  const record = {
    chosen_input_ids: c.ids,
    chosen_attention_mask: c.mask,
    chosen_labels: c.labels,
    rejected_input_ids: r.ids,
    rejected_attention_mask: r.mask,
    rejected_labels: r.labels,
  };
  const dpoFeeds = { ...pairwiseFeeds([record], 1, L), inv_accum: [1], lr: [1e-2], step: [1] };
  const states = a.trainable.flatMap((n) => [n, `${n}.exp_avg`, `${n}.exp_avg_sq`]);
  const M = objectiveMetrics(objective).length;
  const compile = (x: { m: Model; trainable: string[] }, fp16: boolean) => {
    x.m.executor.setParam(PREF_METRIC_SUMS, new Float32Array(M), [M]);
    return x.m.executor.compile(tracePrefStep(x.m, { ...plan(x.trainable, fp16), objective }));
  };
  try {
    // A finite step: f32's loss and grad norm within f16 tolerance; the counter grows.
    const rh = await (await compile(a, true)).run(dpoFeeds), rf = await (await compile(b, false)).run(dpoFeeds);
    assert.ok(Math.abs(rh.loss[0] - rf.loss[0]) < 5e-3 * Math.abs(rf.loss[0]), `${rh.loss[0]} vs ${rf.loss[0]}`);
    assert.ok(Math.abs(rh.grad_norm[0] - rf.grad_norm[0]) < 2e-2 * rf.grad_norm[0] + 1e-6);
    assert.equal(rh.loss_scale[0], 2 ** 16);
    assert.equal((await a.m.executor.getParam(SCALE_GROWTH))[0], 1);
    // From the same start, a scale that overflows f32: nothing is written and the scale halves.
    const before = await snapshot(o.m, states);
    o.m.executor.setParam(LOSS_SCALE, [2 ** 127], [1]);
    const gn = (await (await compile(o, true)).run(dpoFeeds)).grad_norm[0];
    assert.ok(!Number.isFinite(gn) || gn * 2 ** 127 >= 3e38, `grad_norm ${gn}: the scaled norm must overflow f32`);
    (await snapshot(o.m, states)).forEach((x, i) => assert.deepEqual([...x], [...before[i]], `${states[i]}`));
    assert.equal((await o.m.executor.getParam(LOSS_SCALE))[0], 2 ** 126);
  } finally {
    for (const x of [a, b, o]) x.m.executor.dispose();
  }
});

Deno.test("loss scaler: the scale doubles after 2000 finite steps in a row", async () => {
  const a = await lora("reference");
  try {
    a.m.executor.setParam(SCALE_GROWTH, [1999], [1]);
    const c = await a.m.executor.compile(traceTrainStep(a.m, plan(a.trainable, true)));
    await c.run(feeds);
    assert.equal((await a.m.executor.getParam(LOSS_SCALE))[0], 2 ** 17);
    assert.equal((await a.m.executor.getParam(SCALE_GROWTH))[0], 0);
  } finally {
    a.m.executor.dispose();
  }
});

Deno.test("fp16: linears read f16 activations, and the planned arena is smaller than f32's", async () => {
  const a = await lora("reference");
  try {
    const g16 = traceTrainStep(a.m, plan(a.trainable, true)), g32 = traceTrainStep(a.m, plan(a.trainable, false));
    const f16Matmuls = g16.nodes.filter((n) => n.op === "matmul" && g16.values[n.inputs[0]].dtype === "f16");
    assert.ok(f16Matmuls.length >= 7 * 2, `${f16Matmuls.length} matmuls on f16 activations`);
    assert.ok(!g32.nodes.some((n) => n.op === "cast" && g32.values[n.outputs[0]].dtype === "f16"));
    const [h, f] = [planGraph(g16).arenaBytes, planGraph(g32).arenaBytes];
    assert.ok(h < f, `fp16 arena ${h} >= f32 arena ${f}`);
  } finally {
    a.m.executor.dispose();
  }
});

Deno.test({
  name: "fp16: a short LoRA run on webgpu falls and stays within a few percent of the f32 run",
  ignore: !gpu,
  fn: async () => {
    const { train } = await import("../trainer.ts");
    const run = async (fp16: boolean) => {
      const lines: string[] = [];
      const res = await train(
        await runArgs(`${dir}/run_${fp16 ? "fp16" : "f32"}`, { save_strategy: "no", fp16 }),
        { progress: false, log: (l: string) => lines.push(l) },
      );
      return { losses: res.losses.map((l) => l.loss), lines };
    };
    const half = await run(true), full = await run(false);
    assert.ok(half.lines.some((l) => l.startsWith("fp16: f16 linear inputs")), half.lines.join("\n"));
    assert.equal(half.losses.length, 4);
    half.losses.forEach((l, i) => {
      assert.ok(Math.abs(l - full.losses[i]) < 0.03 * full.losses[i], `step ${i + 1}: ${l} vs ${full.losses[i]}`);
    });
    assert.ok(half.losses[3] < half.losses[0], `losses ${half.losses}`);
  },
});

Deno.test("fp16: the reference executor keeps f32 and says why", async () => {
  const { chooseFp16 } = await import("./precision.ts");
  const { ReferenceExecutor } = await import("../../exec/reference.ts");
  const lines: string[] = [];
  const ok = await chooseFp16({ fp16: true, bf16: false }, new ReferenceExecutor(), {
    objective: true,
    optimizer: true,
    quantized: false,
  }, (l) => lines.push(l));
  assert.equal(ok, false);
  assert.deepEqual(lines, ["fp16: keeping f32 compute: the reference executor computes in f32"]);
});

globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

/** Train args of a 4-step LoRA SFT run of the tiny model on the demo data, on WebGPU. */
async function runArgs(out: string, extra: Record<string, unknown>) {
  const { parseTrainArgs } = await import("../../config/args.ts");
  return parseTrainArgs({
    model_name_or_path: modelDir,
    stage: "sft",
    do_train: true,
    finetuning_type: "lora",
    lora_target: "all",
    dataset: "whetstone_demo",
    dataset_dir: new URL("../../../fixtures/demo/", import.meta.url).pathname,
    template: "qwen",
    cutoff_len: 64,
    max_samples: 16,
    output_dir: out,
    logging_steps: 1,
    per_device_train_batch_size: 4,
    learning_rate: 1e-2,
    max_steps: 4,
    seed: 7,
    executor: "webgpu",
    ...extra,
  });
}

Deno.test({
  name: "fp16: a checkpoint keeps the loss scale and growth counter; a resumed run repeats the uninterrupted one",
  ignore: !gpu,
  fn: async () => {
    const { train } = await import("../trainer.ts");
    const { openSafetensors } = await import("../../io/safetensors.ts");
    const args = (out: string, extra: Record<string, unknown> = {}) =>
      runArgs(out, { save_steps: 2, fp16: true, ...extra });
    const quiet = { progress: false, log: () => {} };
    const whole = await train(await args(`${dir}/scale_whole`), quiet);
    const cut = `${dir}/scale_cut`;
    await train(await args(cut), { ...quiet, stopAfter: 2 });
    const f = await openSafetensors(`${cut}/checkpoint-2/optimizer.safetensors`);
    try {
      assert.deepEqual(Array.from(await f.readF32("train.loss_scale")), [2 ** 16]);
      assert.deepEqual(Array.from(await f.readF32("train.scale_growth")), [2]);
    } finally {
      f.close();
    }
    const rest = await train(await args(cut, { resume_from_checkpoint: true }), quiet);
    for (const l of rest.losses) {
      const w = whole.losses.find((x) => x.step === l.step)!;
      assert.ok(Math.abs(l.loss - w.loss) <= 1e-5 * Math.abs(w.loss), `step ${l.step}: ${l.loss} vs ${w.loss}`);
    }
  },
});
