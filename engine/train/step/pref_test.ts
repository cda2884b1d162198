/**
 * The preference stages end to end on fixtures/models/llama with its LoRA adapter (policy) and the same model with the
 * adapter disabled (reference), against fixtures/pref/goldens.json (LF's computation in float64 with transformers +
 * PEFT, itself checked there against TRL 1.13's DPOTrainer / KTOTrainer `_compute_loss`): dpo (sigmoid with label
 * smoothing and ftx, ipo, orpo, simpo), kto (with its KL rows), rm (value head at the last token) — loss, LF's
 * metrics and every LoRA (and value-head) gradient, within 1e-5 relative on the reference executor and 1e-4 on
 * ONNX Runtime and WebGPU. Then the step itself: accumulation, running sums, the update, padding pairs, and the
 * other reference sources (precomputed inputs, a frozen copy).
 */
import assert from "node:assert/strict";
import { backward, concat, Graph, reshape, type Tensor } from "../../graph/mod.ts";
import type { Executor, HostArray } from "../../exec/executor.ts";
import { ReferenceExecutor } from "../../exec/reference.ts";
import { OnnxExecutor } from "../../exec/onnx/executor.ts";
import { WebGpuExecutor } from "../../exec/webgpu.ts";
import { hasGpu } from "../../gpu/device.ts";
import type { KtoRecord, PairwiseRecord } from "../../data/process.ts";
import { loadModel, type Model } from "../../nn/model.ts";
import { isValueHeadParam, valueHeadWeight } from "../../nn/value_head.ts";
import { ktoConfig, metricNames, prefLossConfig } from "./pref_loss.ts";
import {
  copyReference,
  PREF_METRIC_SUMS,
  prefMicroObjective,
  type PrefObjective,
  tracePrefStep,
  traceReferenceLogps,
} from "./pref.ts";
import { LOSS_SUM } from "./lm.ts";
import { ktoFeeds, pairwiseFeeds } from "./pref_feeds.ts";

// deno-lint-ignore no-explicit-any
type Json = any;
const GOLD: Json = JSON.parse(await Deno.readTextFile(new URL("../../../fixtures/pref/goldens.json", import.meta.url)));
const E2E = GOLD.end_to_end;
const LLAMA = new URL("../../../fixtures/models/llama/", import.meta.url).pathname;
const L = 12;
const gpu = await hasGpu();

function executors(): [string, number, () => Promise<Executor>][] {
  const list: [string, number, () => Promise<Executor>][] = [
    ["reference", 1e-5, () => Promise.resolve(new ReferenceExecutor())],
    ["onnx", 1e-4, () => OnnxExecutor.create({ threads: 1 })],
  ];
  if (gpu) list.push(["webgpu", 1e-4, () => WebGpuExecutor.create()]);
  return list;
}

const policy = async (ex: Executor) => await loadModel(LLAMA, { executor: ex, adapter: `${LLAMA}lora` });

/** Rows of a golden batch, trimmed to their attention mask. */
function trimmed(b: Json, i: number) {
  const n = b.attention_mask[i].reduce((a: number, x: number) => a + x, 0);
  return {
    input_ids: b.input_ids[i].slice(0, n),
    attention_mask: b.attention_mask[i].slice(0, n),
    labels: b.labels[i].slice(0, n),
  };
}

function pairs(): PairwiseRecord[] {
  const b = E2E.pairwise, B = b.input_ids.length / 2;
  return Array.from({ length: B }, (_, i) => {
    const c = trimmed(b, i), r = trimmed(b, i + B);
    return {
      chosen_input_ids: c.input_ids,
      chosen_attention_mask: c.attention_mask,
      chosen_labels: c.labels,
      rejected_input_ids: r.input_ids,
      rejected_attention_mask: r.attention_mask,
      rejected_labels: r.labels,
    };
  });
}

function ktoRecords(): KtoRecord[] {
  return E2E.kto_tags.map((t: number, i: number) => {
    const m = trimmed(E2E.kto_batch, i), k = trimmed(E2E.kto_kl_batch, i);
    return { ...m, kl_input_ids: k.input_ids, kl_attention_mask: k.attention_mask, kl_labels: k.labels, kto_tags: !!t };
  });
}

const stack = (xs: Tensor[]) => concat(xs.map((x) => reshape(x, [1])), 0);
const weightOf = (model: Model, g: Graph, n: string) =>
  isValueHeadParam(n) ? valueHeadWeight(g, model, n) : model.weights(g).weight(n);

/** Loss, metrics and gradients (w.r.t. `wrt`) of micro-batch 0 of an objective. */
async function lossAndGrads(
  model: Model,
  o: PrefObjective,
  B: number,
  feeds: Record<string, ArrayLike<number>>,
  wrt: string[],
) {
  const g = new Graph();
  const mo = prefMicroObjective(model, g, o, 0, B, L);
  g.output("loss", mo.loss);
  g.output("metrics", stack(mo.metrics));
  backward(mo.loss, wrt.map((n) => weightOf(model, g, n))).forEach((gr, i) => g.output(`grad:${wrt[i]}`, gr));
  return await (await model.executor.compile(g)).run(feeds);
}

function close(what: string, got: number, want: number, tol: number, floor = 1e-12) {
  assert.ok(
    Math.abs(got - want) <= tol * Math.max(Math.abs(want), floor),
    `${what}: got ${got}, want ${want} (tolerance ${tol} relative)`,
  );
}

/** Gradients against the golden norms, dot products with u[i] = sin(i + 1), and full tensors. */
function checkGrads(what: string, out: Record<string, HostArray>, want: Json, tol: number) {
  // A tensor whose gradient vanishes (the value head's bias: it cancels in chosen − rejected) is judged against
  // 1e-3 of the largest gradient norm.
  const floor = 1e-3 * Math.max(0, ...Object.values(want.norms) as number[]);
  for (const [name, norm] of Object.entries(want.norms) as [string, number][]) {
    const gr = out[`grad:${name}`];
    assert.ok(gr, `${what}: no gradient for ${name}`);
    let n2 = 0, dot = 0, u2 = 0;
    gr.forEach((v, i) => {
      n2 += v * v;
      dot += v * Math.sin(i + 1);
      u2 += Math.sin(i + 1) ** 2;
    });
    close(`${what} ‖∂/∂${name}‖`, Math.sqrt(n2), norm, tol, floor);
    const d = want.dots[name];
    assert.ok(
      Math.abs(dot - d) <= tol * Math.max(norm, floor) * Math.sqrt(u2),
      `${what} ∂/∂${name}·u: got ${dot}, want ${d}`,
    );
  }
  for (const [name, full] of Object.entries(want.full) as [string, number[]][]) {
    const gr = out[`grad:${name}`];
    let err = 0, scale = 0;
    full.forEach((v, i) => (err = Math.max(err, Math.abs(gr[i] - v)), scale = Math.max(scale, Math.abs(v))));
    assert.ok(err <= tol * Math.max(scale, floor), `${what} ∂/∂${name}: max error ${err} > ${tol} · ${scale}`);
  }
}

function checkMetrics(what: string, names: string[], got: HostArray, want: Record<string, number>, tol: number) {
  for (const [k, v] of Object.entries(want)) {
    const i = names.indexOf(k);
    assert.ok(i >= 0, `${what}: no metric ${k}`);
    close(`${what} ${k}`, got[i], v, tol, 1e-2);
  }
}

const loraNames = (model: Model) => [...model.adapter!.params.keys()];

for (const [exName, tol, make] of executors()) {
  Deno.test(`pref step on ${exName}: dpo losses, metrics and LoRA gradients match LF on the tiny Llama`, async () => {
    const model = await policy(await make());
    const feeds = pairwiseFeeds(pairs(), 2, L);
    for (const c of E2E.dpo) {
      const o: PrefObjective = { stage: "dpo", loss: prefLossConfig(c.config) };
      const out = await lossAndGrads(model, o, 2, feeds, loraNames(model));
      close(`${c.config.name} loss`, out.loss[0], c.loss, tol);
      checkMetrics(c.config.name, metricNames("dpo", o.loss.loss), out.metrics, c.metrics, tol);
      checkGrads(c.config.name, out, c.grads, tol);
    }
    model.executor.dispose();
  });

  Deno.test(`pref step on ${exName}: kto with its KL rows matches LF / TRL on the tiny Llama`, async () => {
    const model = await policy(await make());
    const feeds = ktoFeeds(ktoRecords(), 3, L);
    for (const c of E2E.kto) {
      const out = await lossAndGrads(model, { stage: "kto", loss: ktoConfig(c.config) }, 3, feeds, loraNames(model));
      close(`${c.config.name} loss`, out.loss[0], c.loss, tol);
      checkMetrics(c.config.name, metricNames("kto"), out.metrics, c.metrics, tol);
      checkGrads(c.config.name, out, c.grads, tol);
    }
    model.executor.dispose();
  });

  Deno.test(`pref step on ${exName}: rm with a value head matches LF on the tiny Llama`, async () => {
    const model = await policy(await make());
    for (const [k, v] of Object.entries(E2E.rm.v_head) as [string, number[]][]) {
      model.executor.setParam(k, v, k.endsWith("weight") ? [1, v.length] : [1]);
    }
    const wrt = [...loraNames(model), "v_head.summary.bias", "v_head.summary.weight"];
    const out = await lossAndGrads(model, { stage: "rm" }, 2, pairwiseFeeds(pairs(), 2, L), wrt);
    close("rm loss", out.loss[0], E2E.rm.loss, tol);
    assert.deepEqual(Array.from(out.metrics), [E2E.rm.accuracy * 2, 2]);
    checkGrads("rm", out, E2E.rm.grads, tol);
    model.executor.dispose();
  });
}

const sgdPlan = {
  B: 2,
  L,
  optim: "sgd" as const,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0,
  maxGradNorm: 0,
  loraplusRatio: 0,
  dropout: false,
};

Deno.test("tracePrefStep: two accumulated micro-batches, running sums and one SGD update", async () => {
  const model = await policy(new ReferenceExecutor());
  const c = E2E.dpo[0];
  const name = Object.keys(c.grads.full)[0];
  const objective: PrefObjective = { stage: "dpo", loss: prefLossConfig(c.config) };
  const names = metricNames("dpo", "sigmoid");
  const g = tracePrefStep(model, { ...sgdPlan, G: 2, trainable: loraNames(model), objective });
  const ex = model.executor;
  ex.setParam(LOSS_SUM, [0], [1]);
  ex.setParam(PREF_METRIC_SUMS, new Array(names.length).fill(0), [names.length]);
  const before = Float64Array.from(await ex.getParam(name));
  const step = await ex.compile(g);
  const feeds = {
    ...pairwiseFeeds(pairs(), 2, L, 0),
    ...pairwiseFeeds(pairs(), 2, L, 1),
    inv_accum: [0.5],
    lr: [0.1],
    step: [1],
  };
  const out = await step.run(feeds);
  close("step loss", out.loss[0], c.loss, 1e-5);
  close("loss_sum", out.loss_sum[0], c.loss, 1e-5);
  checkMetrics("step", names, out.metrics.map((v) => v / 2), c.metrics, 1e-5);
  assert.deepEqual(Array.from(out.metric_sums), Array.from(out.metrics));
  const after = await ex.getParam(name);
  // after = f32(before − 0.1·g): the store rounds to f32, so allow 2 ulp of the weight besides 1e-5 of the step.
  const top = Math.max(...c.grads.full[name].map((v: number) => 0.1 * Math.abs(v)));
  c.grads.full[name].forEach((gv: number, i: number) => {
    const err = Math.abs(before[i] - after[i] - 0.1 * gv);
    assert.ok(
      err <= 1e-5 * top + 2 ** -22 * Math.abs(before[i]),
      `${name}[${i}]: step ${before[i] - after[i]} vs ${0.1 * gv}`,
    );
  });
  const again = await step.run(feeds, ["loss_sum", "metric_sums"]);
  assert.ok(again.loss_sum[0] > out.loss_sum[0] && again.metric_sums.length === names.length);
});

Deno.test("pref step: a padding pair changes nothing; ref from inputs or a frozen copy equals the base", async () => {
  const model = await policy(new ReferenceExecutor());
  const [sig, ipo] = E2E.dpo;
  const wrt = [Object.keys(sig.grads.full)[0]];
  // Three-pair micro-batch, the last pair padding.
  const padded = await lossAndGrads(
    model,
    { stage: "dpo", loss: prefLossConfig(sig.config) },
    3,
    pairwiseFeeds(pairs(), 3, L),
    wrt,
  );
  close("padded loss", padded.loss[0], sig.loss, 1e-5);
  checkGrads("padded", padded, { norms: {}, dots: {}, full: { [wrt[0]]: sig.grads.full[wrt[0]] } }, 1e-5);
  // Precomputed reference log-probs (sums; ipo averages them in the graph).
  const pre = await (await model.executor.compile(traceReferenceLogps(model, { stage: "dpo", B: 2, L }))).run(
    pairwiseFeeds(pairs(), 2, L),
  );
  pre.ref_logps.forEach((v, i) => close(`ref_logps[${i}]`, v, ipo.ref_logps[i], 1e-5));
  const fed = await lossAndGrads(
    model,
    { stage: "dpo", loss: prefLossConfig(ipo.config), reference: "inputs" },
    2,
    { ...pairwiseFeeds(pairs(), 2, L), ref_logps_0: pre.ref_logps },
    wrt,
  );
  close("ipo loss, reference fed", fed.loss[0], ipo.loss, 1e-5);
  // A frozen copy of the base under "ref." as the reference model.
  const ref = await copyReference(model);
  const copied = await lossAndGrads(
    model,
    { stage: "dpo", loss: prefLossConfig(sig.config), reference: ref },
    2,
    pairwiseFeeds(pairs(), 2, L),
    wrt,
  );
  close("sigmoid loss, reference copy", copied.loss[0], sig.loss, 1e-5);
  // Without an adapter, "base" would be the policy itself.
  model.setAdapter(undefined);
  assert.throws(
    () => prefMicroObjective(model, new Graph(), { stage: "kto", loss: ktoConfig() }, 0, 2, L),
    /this model has no adapter/,
  );
});

Deno.test("tracePrefStep: rm trains the value head with AdamW and dropout; dpo / kto never declare a seed", async () => {
  const model = await policy(new ReferenceExecutor());
  const ex = model.executor;
  for (const [k, v] of Object.entries(E2E.rm.v_head) as [string, number[]][]) {
    ex.setParam(k, v, k.endsWith("weight") ? [1, v.length] : [1]);
  }
  const trainable = [...loraNames(model), "v_head.summary.weight", "v_head.summary.bias"];
  const plan = {
    ...sgdPlan,
    optim: "adamw" as const,
    maxGradNorm: 1,
    weightDecay: 0.1,
    dropout: true,
    G: 1,
    trainable,
  };
  const g = tracePrefStep(model, { ...plan, objective: { stage: "rm", valueHeadDropout: 0.1 } });
  assert.ok(g.inputs.has("seed"));
  ex.setParam(LOSS_SUM, [0], [1]);
  ex.setParam(PREF_METRIC_SUMS, [0, 0], [2]);
  for (const n of trainable) {
    const shape = n.startsWith("v_head") ? (n.endsWith("weight") ? [1, 64] : [1]) : model.adapter!.params.get(n)!.shape;
    const size = shape.reduce((a, b) => a * b, 1);
    for (const s of [".exp_avg", ".exp_avg_sq"]) ex.setParam(n + s, new Array(size).fill(0), shape);
  }
  const w0 = Array.from(await ex.getParam("v_head.summary.weight"));
  const out = await (await ex.compile(g)).run({
    ...pairwiseFeeds(pairs(), 2, L),
    inv_accum: [1],
    lr: [1e-3],
    step: [1],
    seed: [3],
  });
  assert.ok(Number.isFinite(out.loss[0]) && out.grad_norm[0] > 0);
  const w1 = Array.from(await ex.getParam("v_head.summary.weight"));
  assert.ok(w1.every((v, i) => Math.abs(v - w0[i]) > 1e-4 && Math.abs(v - w0[i]) < 2e-3), "each weight moved ~lr");
  for (const objective of [{ stage: "dpo", loss: prefLossConfig() }, { stage: "kto", loss: ktoConfig() }] as const) {
    assert.ok(!tracePrefStep(model, { ...plan, objective }).inputs.has("seed"), objective.stage);
  }
});
