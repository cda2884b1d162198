/**
 * LoRA / rsLoRA / DoRA against PEFT goldens (fixtures/models/<family>/<adapter>, made by fixtures/make_models.py):
 * loss within 1e-5 relative, logits within 1e-4 absolute on real positions, each adapter gradient within 1e-4
 * relative norm — on the reference executor and on WebGPU; the base stays frozen. Also target resolution,
 * rsLoRA scale, fresh initialisation, dropout, and saving. PiSSA is in lora_pissa_test.ts.
 */
import assert from "node:assert/strict";
import { backward, Graph, linearCrossEntropy, reshape } from "../graph/mod.ts";
import { planGraph } from "../exec/plan.ts";
import { ReferenceExecutor } from "../exec/reference.ts";
import { WebGpuExecutor } from "../exec/webgpu.ts";
import type { Executor } from "../exec/executor.ts";
import { hasGpu } from "../gpu/device.ts";
import { readPeftAdapter } from "../io/peft.ts";
import { decoderConfig } from "./config.ts";
import { traceDecoder } from "./decoder.ts";
import { loadModel } from "./model.ts";
import {
  allLinearTargets,
  attachAdapter,
  LoraAdapter,
  loraConfigFromArgs,
  loraParams,
  loraScale,
  resolveTargets,
  saveAdapter,
} from "./lora.ts";
import { golden, maskedLogitError, relNorm } from "./lora_testing.ts";

import { DENSE_LORA } from "./families_testing.ts";
const root = new URL("../../fixtures/models/", import.meta.url).pathname;
const gpu = await hasGpu();
const CASES: [string, string][] = [
  ["llama", "lora"],
  ["qwen2", "lora"],
  ["llama", "dora"],
  ["llama", "rslora"],
  ...DENSE_LORA.map((f): [string, string] => [f, "lora"]),
];

function executors(): [string, () => Promise<Executor>][] {
  const list: [string, () => Promise<Executor>][] = [["reference", () => Promise.resolve(new ReferenceExecutor())]];
  if (gpu) list.push(["webgpu", () => WebGpuExecutor.create()]);
  return list;
}

for (const [family, sub] of CASES) {
  for (const [exName, make] of executors()) {
    Deno.test(`${family}/${sub} on ${exName}: loss, logits and adapter gradients match PEFT`, async () => {
      const dir = `${root}${family}/${sub}`;
      const g = await golden(dir);
      const model = await loadModel(`${root}${family}`, { executor: await make(), adapter: dir });
      const res = await model.forward(g.ids, { labels: g.labels, attentionMask: g.mask });
      const worst = maskedLogitError(res.logits, g.logits, g.mask, model.config.vocab);
      assert.ok(worst <= 1e-4, `max logit error ${worst}`);
      assert.ok(Math.abs(res.loss! - g.loss) <= 1e-5 * Math.abs(g.loss), `loss ${res.loss} vs ${g.loss}`);
      const { loss, grads } = await model.gradients(g.ids, { labels: g.labels, attentionMask: g.mask });
      assert.ok(Math.abs(loss - g.loss) <= 1e-5 * Math.abs(g.loss), `gradient-graph loss ${loss} vs ${g.loss}`);
      // Only the adapter's parameters get gradients: exactly the tensors of adapter_model.safetensors.
      assert.deepEqual([...grads.keys()].sort(), [...g.grads.keys()].sort());
      for (const [name, want] of g.grads) {
        const rel = relNorm(grads.get(name)!, want);
        assert.ok(rel <= 1e-4, `${name}: relative error ${rel.toExponential(2)}`);
      }
    });
  }
}

Deno.test("the base stays frozen: no gradient of any base weight is traced or planned", async () => {
  const model = await loadModel(`${root}llama`, { executor: "reference", adapter: `${root}llama/dora` });
  const ad = model.adapter as LoraAdapter;
  const build = (wrtBase: boolean) => {
    const g = new Graph();
    const [B, L] = [1, 16]; // N = 16 rows: no activation gradient has the shape of a weight
    const inp = {
      ids: g.input("ids", [B, L], "i32"),
      positions: g.input("positions", [B, L], "i32"),
      segments: g.input("segments", [B, L], "i32"),
    };
    const weight = (n: string) => {
      const p = model.params.get(n) ?? ad.params.get(n)!;
      return g.param(n, p.shape, p.dtype);
    };
    const out = traceDecoder(model.config, inp, { weight, linear: ad.linear(weight) });
    const loss = linearCrossEntropy(reshape(out.hidden, [B * L, 64]), out.head, g.input("labels", [B * L], "i32"));
    g.output("loss", loss);
    const names = [...ad.params.keys(), ...(wrtBase ? [...model.params.keys()] : [])];
    const nFwd = g.nodes.length;
    backward(loss, names.map(weight)).forEach((t, i) => g.output(`grad:${names[i]}`, t));
    return { g, nFwd, plan: planGraph(g) };
  };
  const { g, nFwd, plan } = build(false);
  assert.deepEqual(
    [...g.outputs.keys()].filter((k) => k.startsWith("grad:")).sort(),
    [...ad.params.keys()].map((k) => `grad:${k}`).sort(),
  );
  const baseShapes = new Set([...model.params.values()].map((p) => p.shape.join()));
  for (const ni of plan.order.filter((i) => i >= nFwd)) {
    const n = g.nodes[ni];
    assert.notEqual(n.op, "embedding_bwd", "the embedding must get no gradient");
    if (n.op === "linear_cross_entropy_bwd") assert.equal(n.outputs.length, 1, "lm_head must get no gradient");
    for (const o of n.outputs) {
      const shape = g.values[o].shape.join();
      assert.ok(
        !baseShapes.has(shape) || shape === "64",
        `backward node ${n.op} makes a base-weight-shaped [${shape}]`,
      );
    }
  }
  const full = build(true);
  assert.ok(
    plan.arenaBytes < full.plan.arenaBytes,
    `arena ${plan.arenaBytes} vs ${full.plan.arenaBytes} with base grads`,
  );
  // The DoRA norm is detached: its backward (through W + s·B·A) is never live.
  const merged = g.nodes.filter((n) => n.op === "stop_gradient").length;
  assert.equal(merged, ad.targets.length);
});

Deno.test("targets: 'all' is every linear but lm_head, as LLaMA-Factory resolves it; regex, exclude, layers", async () => {
  const cfg = async (f: string) => decoderConfig(JSON.parse(await Deno.readTextFile(`${root}${f}/config.json`)));
  const llama = await cfg("llama"), phi3 = await cfg("phi3"), qwen2 = await cfg("qwen2");
  const seven = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];
  assert.deepEqual(allLinearTargets(llama), seven);
  assert.deepEqual(allLinearTargets(qwen2), seven);
  assert.deepEqual(allLinearTargets(phi3), ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]);
  assert.equal(resolveTargets(llama, { targets: "all" }).length, 14);
  assert.equal(resolveTargets(llama, { targets: ["all"] }).length, 14);
  assert.deepEqual(resolveTargets(phi3, { targets: "all-linear" }).slice(0, 4), [
    "model.layers.0.self_attn.qkv_proj",
    "model.layers.0.self_attn.o_proj",
    "model.layers.0.mlp.gate_up_proj",
    "model.layers.0.mlp.down_proj",
  ]);
  assert.deepEqual(resolveTargets(llama, { targets: ["q_proj", "v_proj"], layers: [1] }), [
    "model.layers.1.self_attn.q_proj",
    "model.layers.1.self_attn.v_proj",
  ]);
  assert.deepEqual(resolveTargets(llama, { targets: "all", exclude: ["mlp.up_proj", "gate_proj"], layers: [0] }), [
    "model.layers.0.self_attn.q_proj",
    "model.layers.0.self_attn.k_proj",
    "model.layers.0.self_attn.v_proj",
    "model.layers.0.self_attn.o_proj",
    "model.layers.0.mlp.down_proj",
  ]);
  assert.deepEqual(resolveTargets(llama, { targets: String.raw`.*\.1\.self_attn\.(q|k)_proj` }), [
    "model.layers.1.self_attn.q_proj",
    "model.layers.1.self_attn.k_proj",
  ]);
  assert.throws(() => resolveTargets(llama, { targets: ["lm_head"] }), /lm_head is not supported/);
  assert.throws(() => resolveTargets(llama, { targets: ["qkv_proj"] }), /match no linear module.*q_proj/);
  const la = loraConfigFromArgs({ lora_rank: 16, lora_target: "q_proj, v_proj", use_rslora: true });
  assert.deepEqual([la.r, la.alpha, la.targets, la.useRslora, la.init], [16, 32, ["q_proj", "v_proj"], true, true]);
  assert.equal(loraConfigFromArgs({ pissa_init: true }).init, "pissa_niter_16");
  assert.equal(loraConfigFromArgs({ pissa_init: true, pissa_iter: -1 }).init, "pissa");
  assert.throws(() => loraConfigFromArgs({ additional_target: "embed_tokens" }), /modules_to_save/);
  const p = loraParams({ ...la, useDora: true }, llama);
  assert.deepEqual(p.get("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"), [16, 64]);
  assert.deepEqual(p.get("base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight"), [32, 16]);
  assert.deepEqual(p.get("base_model.model.model.layers.1.self_attn.v_proj.lora_magnitude_vector"), [32]);
  assert.equal(p.size, 12);
});

Deno.test("rsLoRA scales by alpha / √r, LoRA by alpha / r", () => {
  assert.equal(loraScale({ r: 16, alpha: 32, useRslora: false }), 2);
  assert.equal(loraScale({ r: 16, alpha: 32, useRslora: true }), 8);
  assert.equal(loraScale({ r: 8, alpha: 16, useRslora: true }), 16 / Math.sqrt(8));
});

Deno.test("a new adapter starts as the base model (B = 0; DoRA magnitude = ‖W‖_row) and trains A, B", async () => {
  const g = await golden(`${root}llama`);
  for (const extra of [{}, { useDora: true }, { init: "gaussian" as const }]) {
    const model = await loadModel(`${root}llama`, { executor: "reference" });
    const ad = await attachAdapter(model, { r: 4, targets: "all", ...extra }, { seed: 7 });
    const res = await model.forward(g.ids, { labels: g.labels, attentionMask: g.mask });
    assert.ok(maskedLogitError(res.logits, g.logits, g.mask, 128) <= 1e-4, JSON.stringify(extra));
    const A = await model.executor.getParam(`base_model.model.model.layers.0.mlp.down_proj.lora_A.weight`);
    const bound = extra.init === "gaussian" ? 6 / 4 : 1 / Math.sqrt(64);
    assert.ok(A.every((v) => Math.abs(v) <= bound) && A.some((v) => v !== 0));
    const { grads } = await model.gradients(g.ids, { labels: g.labels, attentionMask: g.mask });
    assert.equal(grads.size, ad.params.size);
    const nonzero = [...grads].filter(([k, v]) => k.endsWith("lora_B.weight") && v.some((x) => x !== 0));
    assert.equal(nonzero.length, 14, "every lora_B gets a gradient at init");
  }
});

Deno.test("LoRA dropout: one dropout site per target, only with a seed; a fixed seed gives a fixed loss", async () => {
  const model = await loadModel(`${root}llama`, { executor: "reference" });
  const ad = await attachAdapter(model, { r: 4, targets: ["q_proj", "down_proj"], dropout: 0.3, init: false });
  const run = async (withSeed: boolean, seed: number) => {
    const g = new Graph();
    const inp = {
      ids: g.input("ids", [1, 16], "i32"),
      positions: g.input("positions", [1, 16], "i32"),
    };
    const weight = (n: string) => {
      const p = model.params.get(n) ?? ad.params.get(n)!;
      return g.param(n, p.shape, p.dtype);
    };
    const s = withSeed ? g.input("seed", [], "u32") : undefined;
    const out = traceDecoder(model.config, inp, { weight, linear: ad.linear(weight, { seed: s }) });
    g.output("logits", out.logits);
    const drops = g.nodes.filter((n) => n.op === "dropout").length;
    const c = await model.executor.compile(g);
    const feeds: Record<string, ArrayLike<number>> = {
      ids: Array.from({ length: 16 }, (_, i) => (i * 7) % 128),
      positions: Array.from({ length: 16 }, (_, i) => i),
    };
    if (s) feeds.seed = [seed];
    return { drops, logits: (await c.run(feeds)).logits };
  };
  const plain = await run(false, 0), a = await run(true, 1), b = await run(true, 1), c = await run(true, 2);
  assert.equal(plain.drops, 0);
  assert.equal(a.drops, 4);
  assert.deepEqual(a.logits, b.logits);
  assert.notDeepEqual(a.logits, c.logits);
  assert.notDeepEqual(a.logits, plain.logits);
});

Deno.test("saveAdapter writes what readPeftAdapter reads back, bit for bit", async () => {
  const model = await loadModel(`${root}llama`, { executor: "reference", adapter: `${root}llama/dora` });
  const dir = await Deno.makeTempDir();
  try {
    await saveAdapter(model, dir);
    const src = await readPeftAdapter(`${root}llama/dora`), out = await readPeftAdapter(dir);
    assert.deepEqual(out.config, src.config);
    assert.equal(out.baseModel, `${root}llama`);
    assert.deepEqual([...out.tensors.keys()].sort(), [...src.tensors.keys()].sort());
    for (const [k, t] of src.tensors) assert.deepEqual(out.tensors.get(k), t, k);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
      "adapter_config.json",
      "adapter_model.safetensors",
    ]);
    await assert.rejects(() => attachAdapter(model, dir), /already has an adapter/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
