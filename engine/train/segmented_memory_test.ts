/**
 * Training steps under forced small WebGPU limits (64 KiB storage bindings, 256 KiB buffers) give the results of
 * the same steps under the adapter's own limits: a tiny tied Llama whose 256 KiB embedding (also its LM head) is
 * stored in 4 segments, with its gradient and AdamW states, and whose step is spread over several arenas. LoRA
 * reads the segmented embedding (gather and the fused LM head + cross-entropy); full fine-tuning also scatters
 * its gradient, sums the two gradients, takes the global norm and updates it in segments. And, without a device, a
 * Qwen2.5-0.5B-shaped step plans within lavapipe's limits, every binding checked as the executor checks it.
 */
import assert from "node:assert/strict";
import { hasGpu } from "../gpu/device.ts";
import { WebGpuExecutor, type WebGpuOptions } from "../exec/webgpu.ts";
import type { HostArray } from "../exec/executor.ts";
import type { DType } from "../graph/types.ts";
import { decoderConfig } from "../nn/config.ts";
import { decoderParams } from "../nn/decoder.ts";
import { Model } from "../nn/model.ts";
import { attachAdapter } from "../nn/lora.ts";
import { mulberry32 } from "../util/rng.ts";
import { adamwStepPlan, LOSS_SUM, traceTrainStep } from "./step/lm.ts";
import { stateNames } from "./step/optimizer.ts";
import { ShapeOnlyExecutor } from "./memory_plan.ts";
import { type MemoryLimits, plannedDeviceBytes } from "../exec/webgpu_memory.ts";

const gpu = await hasGpu();
const KiB = 1024;
const FORCED: WebGpuOptions = { limits: { maxStorageBufferBindingSize: 64 * KiB, maxBufferSize: 256 * KiB } };
const B = 2, L = 8, V = 1024;
const config = decoderConfig({
  model_type: "llama",
  vocab_size: V,
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: true,
});

/** Random weights, zero AdamW states and the traced step of `method` on `ex`; returns the step graph. */
async function setUp(ex: WebGpuExecutor, method: "lora" | "full") {
  const r = mulberry32(11);
  const params = new Map<string, { shape: number[]; dtype: DType }>();
  for (const [name, shape] of decoderParams(config)) {
    const n = shape.reduce((a, b) => a * b, 1);
    ex.setParam(name, Float32Array.from({ length: n }, () => (r() - 0.5) * 0.2), shape);
    params.set(name, { shape, dtype: "f32" });
  }
  const model = new Model(config, ex, params);
  const trainable = method === "full"
    ? [...params.keys()]
    : [...(await attachAdapter(model, { r: 4, alpha: 8, targets: ["all"] })).params.keys()];
  for (const name of trainable) {
    const shape = (params.get(name) ?? model.adapter!.params.get(name)!).shape;
    const zeros = new Float32Array(shape.reduce((a, b) => a * b, 1));
    ex.setParam(stateNames(name).m, zeros, shape);
    ex.setParam(stateNames(name).v, zeros, shape);
  }
  ex.setParam(LOSS_SUM, [0], [1]);
  return traceTrainStep(model, adamwStepPlan(B, L, trainable));
}

function feeds(step: number) {
  const r = mulberry32(100 + step);
  const n = B * L;
  return {
    ids_0: Int32Array.from({ length: n }, () => Math.floor(r() * V)),
    positions_0: Int32Array.from({ length: n }, (_, i) => i % L),
    segments_0: new Int32Array(n).fill(1),
    labels_0: Int32Array.from({ length: n }, (_, i) => (i % L === L - 1 ? -100 : Math.floor(r() * V))),
    inv_targets: [1 / (B * (L - 1))],
    lr: [1e-2],
    step: [step],
  };
}

/** Runs 2 steps; returns the outputs of each and every stored tensor afterwards. */
async function run(method: "lora" | "full", opts: WebGpuOptions) {
  const ex = await WebGpuExecutor.create(opts);
  const compiled = await ex.compile(await setUp(ex, method));
  const before = new Map<string, HostArray>();
  for (const name of ex.store.keys()) before.set(name, await ex.getParam(name));
  const outs: Record<string, HostArray>[] = [];
  for (const s of [1, 2]) outs.push(await compiled.run(feeds(s)));
  const store = new Map<string, HostArray>();
  for (const name of [...ex.store.keys()].sort()) store.set(name, await ex.getParam(name));
  // The compiled graph keeps its buffers (arenas) reachable as `owned`.
  const owned = (compiled as unknown as { owned: GPUBuffer[] }).owned.map((b) => b.size);
  const embedding = ex.store.get("model.embed_tokens.weight")!.buffers.map((b) => b.size);
  ex.dispose();
  return { outs, store, before, owned, embedding };
}

/** Bit-for-bit equality of two host arrays (f32 values compared as numbers; NaN never appears here). */
function assertSame(a: HostArray, b: HostArray, what: string) {
  assert.equal(a.length, b.length, what);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  assert.equal(worst, 0, `${what}: differs by up to ${worst}`);
}

for (const method of ["lora", "full"] as const) {
  Deno.test({
    name: `segmented memory: a ${method} step under 64 KiB bindings and 256 KiB buffers matches the unforced run`,
    ignore: !gpu,
    fn: async () => {
      const free = await run(method, {});
      const forced = await run(method, FORCED);
      assert.deepEqual(free.embedding, [V * 64 * 4], "unforced: the embedding is one buffer");
      assert.deepEqual(forced.embedding, [64 * KiB, 64 * KiB, 64 * KiB, 64 * KiB], "forced: four 64 KiB segments");
      assert.ok(forced.owned.length > 1, `forced: the step spans several arenas (${forced.owned.join(", ")})`);
      assert.ok(forced.owned.every((b) => b <= 256 * KiB), `forced: an arena over 256 KiB: ${forced.owned}`);
      for (let s = 0; s < 2; s++) {
        for (const [k, v] of Object.entries(free.outs[s])) assertSame(forced.outs[s][k], v, `step ${s + 1} ${k}`);
      }
      assert.deepEqual([...forced.store.keys()], [...free.store.keys()]);
      for (const [name, v] of free.store) assertSame(forced.store.get(name)!, v, name);
      // The steps trained: what trains moved from where it started (the segmented embedding itself in full).
      const moved = [...free.store].filter(([name, v]) => v.some((x, i) => x !== free.before.get(name)![i]));
      const names = moved.map(([name]) => name);
      if (method === "full") assert.ok(names.includes("model.embed_tokens.weight"), names.join(", "));
      else assert.ok(names.some((n) => n.includes("lora_B")), names.join(", "));
    },
  });
}

/** A Qwen2.5-0.5B-shaped step (2 of its 24 layers, its 151936 × 896 tied embedding), traced without a device. */
async function qwenStep(method: "lora" | "full", vocab = 151936) {
  const cfg = decoderConfig({
    model_type: "qwen2",
    vocab_size: vocab,
    hidden_size: 896,
    intermediate_size: 4864,
    num_hidden_layers: 2,
    num_attention_heads: 14,
    num_key_value_heads: 2,
    tie_word_embeddings: true,
  });
  const ex = new ShapeOnlyExecutor();
  const params = new Map<string, { shape: number[]; dtype: DType }>();
  for (const [name, shape] of decoderParams(cfg)) {
    const dtype = method === "full" ? "f32" : "bf16";
    ex.setParam(name, [], shape, dtype);
    params.set(name, { shape, dtype });
  }
  const model = new Model(cfg, ex, params);
  const trainable = method === "full"
    ? [...params.keys()]
    : [...(await attachAdapter(model, { r: 8, alpha: 16, targets: ["all"] })).params.keys()];
  for (const name of trainable) {
    const shape = (params.get(name) ?? model.adapter!.params.get(name)!).shape;
    ex.setParam(stateNames(name).m, [], shape);
    ex.setParam(stateNames(name).v, [], shape);
  }
  ex.setParam(LOSS_SUM, [0], [1]);
  return traceTrainStep(model, adamwStepPlan(1, 512, trainable));
}

const LAVAPIPE: MemoryLimits = { maxBufferBytes: 2 ** 31 - 1, maxBindingBytes: 128 * 2 ** 20, align: 256 };

Deno.test("segmented memory: a Qwen2.5-0.5B-shaped LoRA and full step fit lavapipe's 128 MiB bindings (no device)", async () => {
  // The embedding is 272 MB in bf16, 545 MB in f32 (with its gradient and AdamW states): all segmented.
  for (const method of ["lora", "full"] as const) {
    const g = await qwenStep(method);
    // Segments add a little scratch (the LM head's logits block by block) to the unbounded plan.
    const bytes = plannedDeviceBytes(g, undefined, LAVAPIPE), unbounded = plannedDeviceBytes(g);
    assert.ok(bytes >= unbounded && bytes < 1.1 * unbounded, `${method}: ${bytes} vs ${unbounded}`);
  }
});

Deno.test("segmented memory: what no kernel reads in segments is refused when planned, naming it", async () => {
  // Under 4 MiB bindings the MLP's 17 MB weights and its [512, 4864] activations are all over the limit: a matmul
  // with a segmented weight and a segmented output is not handled, and the first one is refused.
  const lim = { ...LAVAPIPE, maxBindingBytes: 4 * 2 ** 20 };
  const [g8k, g151k] = [await qwenStep("full", 8192), await qwenStep("lora")];
  assert.throws(
    () => plannedDeviceBytes(g8k, undefined, lim),
    /"matmul" binds input 1 "model.layers.0.mlp.gate_proj.weight" \(\[4864, 896\] f32\) whole: 17432576 bytes, over this adapter's storage binding limit of 4194304 bytes, and its WebGPU kernel does not read it in segments/,
  );
  // With the real vocabulary and 32 MiB bindings, the fused LM head's 64-row logits chunk is what is over the limit.
  assert.throws(
    () => plannedDeviceBytes(g151k, undefined, { ...LAVAPIPE, maxBindingBytes: 32 * 2 ** 20 }),
    /"linear_cross_entropy" asks for a 38895616-byte scratch buffer; this adapter binds at most 33554432 bytes/,
  );
});
