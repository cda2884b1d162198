/**
 * GaLore and BAdam on the tiny fixture llama, on the ONNX Runtime executor, without the trainer: the step graphs
 * of train_step.ts fed one fixed batch, checked against host-side f64 arithmetic for one update and for a loss
 * that falls.
 */
import assert from "node:assert/strict";
import type { HostArray } from "../exec/executor.ts";
import { createExecutor } from "../exec/pick.ts";
import { loadModel, type Model } from "../nn/model.ts";
import { collate } from "./batches.ts";
import { stateNames } from "./step.ts";
import { BADAM_WEIGHT_DECAY } from "../optim/badam.ts";
import { galoreLayout, galoreStateNames, galoreTargets } from "../optim/galore.ts";
import {
  BadamDriver,
  GaloreDriver,
  type OptimStepPlan,
  traceBadamTrainStep,
  traceGradStep,
} from "../optim/train_step.ts";

const MODEL = new URL("../../fixtures/models/llama", import.meta.url).pathname;

/** One fixed batch of two rows of 16 tokens (a pattern a tiny model can learn), as step feeds. */
function batch(): Record<string, ArrayLike<number>> {
  const rows = [0, 1].map((r) => {
    const ids = Array.from({ length: 16 }, (_, i) => (7 + 11 * r + 5 * i) % 128);
    return { input_ids: ids, attention_mask: ids.map(() => 1), labels: ids };
  });
  const mb = collate(rows, 2, 16);
  return {
    ids_0: mb.ids,
    positions_0: mb.positions,
    segments_0: mb.segments,
    labels_0: mb.labels,
    inv_targets: [1 / mb.targets],
  };
}

const PLAN: Omit<OptimStepPlan, "trainable"> = {
  G: 1,
  B: 2,
  L: 16,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0.01,
  maxGradNorm: 1,
};

async function f64(model: Model, name: string): Promise<Float64Array> {
  return Float64Array.from(await model.executor.getParam(name));
}

Deno.test("galore e2e: GaLore-AdamW lowers the loss of the tiny llama on onnx; one update checked on the host", async () => {
  const model = await loadModel(MODEL, { executor: await createExecutor("onnx"), dtype: "f32" });
  const trainable = [...model.params.keys()];
  const targets = galoreTargets(model.config, trainable, "all");
  const opts = { rank: 8, updateInterval: 4, scale: 2, projType: "std" as const };
  const galore = new GaloreDriver(model, trainable, targets, opts);
  galore.initStates();
  const step = await model.executor.compile(galore.trace(PLAN));
  const grads = await model.executor.compile(traceGradStep(model, { ...PLAN, trainable: [] }, targets));
  const feeds = batch(), lr = 2e-3;
  const losses: number[] = [];
  const probe = targets.find((t) => t.endsWith("layers.0.mlp.down_proj.weight"))!;
  for (let t = 1; t <= 10; t++) {
    const refreshed = await galore.beforeStep(t, PLAN, feeds);
    assert.equal(refreshed, t === 1 || t === 5 || t === 9, `step ${t}: refresh every 4 steps from 1`);
    let check: { w0: Float64Array; g: HostArray; p: Float64Array } | undefined;
    if (t === 1) {
      const out = await grads.run(feeds, [`grad:${probe}`]);
      check = {
        w0: await f64(model, probe),
        g: out[`grad:${probe}`],
        p: await f64(model, galoreStateNames(probe).proj),
      };
    }
    const out = await step.run({ ...feeds, lr: [lr], step: [t] }, ["loss", "grad_norm"]);
    losses.push(out.loss[0]);
    if (check) {
      // Host f64: clip, project, one Adam step from zero moments, project back × scale, decay after the update.
      const l = galoreLayout(model.params.get(probe)!.shape, opts);
      assert.equal(l.side, "right");
      const [m, n] = model.params.get(probe)!.shape, r = l.rank;
      const clip = Math.min(1, 1 / (out.grad_norm[0] + 1e-6));
      const low = new Float64Array(m * r);
      for (let i = 0; i < m; i++) {
        for (let k = 0; k < r; k++) {
          let s = 0;
          for (let j = 0; j < n; j++) s += check.g[i * n + j] * clip * check.p[k * n + j];
          low[i * r + k] = s;
        }
      }
      const stepSize = lr * Math.sqrt(1 - 0.999) / (1 - 0.9);
      const w1 = await f64(model, probe);
      let worst = 0;
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let u = 0;
          for (let k = 0; k < r; k++) {
            const g = low[i * r + k], mm = 0.1 * g, vv = 0.001 * g * g;
            u += (mm / (Math.sqrt(vv) + 1e-8)) * check.p[k * n + j];
          }
          const want = (check.w0[i * n + j] - stepSize * opts.scale * u) * (1 - lr * 0.01);
          worst = Math.max(worst, Math.abs(w1[i * n + j] - want));
        }
      }
      assert.ok(worst < 1e-5, `host and graph GaLore updates differ by ${worst}`);
      const mState = await f64(model, galoreStateNames(probe).m);
      assert.equal(mState.length, m * r, "m has the low-rank shape");
    }
  }
  const final = (await step.run({ ...feeds, lr: [0], step: [11] }, ["loss"])).loss[0];
  assert.ok(
    final < losses[0] - 0.3,
    `loss ${losses[0].toFixed(4)} → ${final.toFixed(4)} (${losses.map((x) => x.toFixed(3))})`,
  );
  assert.ok(
    losses.slice(1).every((x, i) => x < losses[i] + 0.05),
    `roughly monotone: ${losses.map((x) => x.toFixed(3))}`,
  );
  // Non-projected params train too (plain GaLoreAdamW), with full-shape moments.
  assert.equal((await f64(model, stateNames("model.norm.weight").m)).length, model.config.hidden);
});

Deno.test("badam e2e: block switching lowers the loss of the tiny llama on onnx; only the active block moves", async () => {
  const model = await loadModel(MODEL, { executor: await createExecutor("onnx"), dtype: "f32" });
  const badam = new BadamDriver(model, { switchMode: "ascending", switchInterval: 3 });
  assert.equal(badam.blocks.length, 2);
  const feeds = batch(), lr = 2e-3;
  // One compiled graph at a time, compiled at each switch: the old block's states are dropped (shrunk), so a graph
  // compiled for it earlier must not be reused (WebGPU binds the buffers at compile).
  let current: Awaited<ReturnType<typeof model.executor.compile>> | undefined;
  const compiled = async (trainable: string[], switched: boolean) => {
    if (switched || !current) {
      const plan = { ...PLAN, trainable, weightDecay: BADAM_WEIGHT_DECAY };
      current = await model.executor.compile(traceBadamTrainStep(model, plan));
    }
    return current;
  };
  const embed0 = await f64(model, "model.embed_tokens.weight");
  const losses: number[] = [], active: number[] = [];
  for (let t = 1; t <= 11; t++) {
    const { block, trainable, adamStep, switched } = badam.beforeStep(t);
    active.push(block);
    const before = new Map<string, Float64Array>();
    for (const b of badam.blocks) for (const n of b.params) before.set(n, await f64(model, n));
    // At a (re)start, the block's gradients (and only its own, for the clipping norm) from a gradient graph.
    const grads = switched
      ? await (await model.executor.compile(traceGradStep(model, { ...PLAN, trainable: [] }, trainable))).run(feeds)
      : undefined;
    const out = await (await compiled(trainable, switched)).run({ ...feeds, lr: [lr], step: [adamStep] }, ["loss"]);
    losses.push(out.loss[0]);
    let norm = 0;
    if (grads) { for (const n of trainable) for (const x of grads[`grad:${n}`]) norm += x * x; }
    const clip = Math.min(1, 1 / (Math.sqrt(norm) + 1e-6));
    for (const b of badam.blocks) {
      for (const n of b.params) {
        const now = await f64(model, n), was = before.get(n)!;
        const moved = now.some((x, i) => x !== was[i]);
        assert.equal(moved, trainable.includes(n), `step ${t}: ${n} ${moved ? "moved" : "stayed"}`);
        if (!grads || !trainable.includes(n)) continue;
        // torch AdamW's first step from zero moments (m̂ = g, v̂ = g²), decay first: the states were reset.
        const g = grads[`grad:${n}`];
        let worst = 0;
        for (let i = 0; i < now.length; i++) {
          const gi = g[i] * clip;
          const want = was[i] * (1 - lr * BADAM_WEIGHT_DECAY) - lr * gi / (Math.abs(gi) + 1e-8);
          worst = Math.max(worst, Math.abs(now[i] - want));
        }
        assert.ok(worst < 2e-5, `step ${t}: ${n} differs from AdamW's first step by ${worst}`);
      }
    }
  }
  assert.deepEqual(active, [0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1]);
  assert.deepEqual(await f64(model, "model.embed_tokens.weight"), embed0, "embeddings are in no block");
  const final = (await (await compiled(badam.blocks[1].params, false)).run({ ...feeds, lr: [0], step: [1] }, ["loss"]))
    .loss[0];
  assert.ok(
    final < losses[0] - 0.2,
    `loss ${losses[0].toFixed(4)} → ${final.toFixed(4)} (${losses.map((x) => x.toFixed(3))})`,
  );
  assert.equal(
    (await f64(model, stateNames(badam.blocks[0].params[0]).m)).length,
    1,
    "the old block's state is dropped",
  );
});
