/**
 * QLoRA on the engine with the tiny fixture Llama: a base quantized at load (NF4 + double quantization, FP4, int8)
 * gives logits close to the f32 model's, exactly those of an f32 model holding the dequantized weights, and LoRA
 * gradients through `matmul_q` that equal that model's; a few SGD steps of a LoRA adapter on the NF4 base lower
 * the loss — on the reference and ONNX executors (and WebGPU where an adapter exists).
 */
import assert from "node:assert/strict";
import { ReferenceExecutor } from "../exec/reference.ts";
import { OnnxExecutor } from "../exec/onnx/executor.ts";
import { WebGpuExecutor } from "../exec/webgpu.ts";
import type { Executor } from "../exec/executor.ts";
import { hasGpu } from "../gpu/device.ts";
import { dequantizeWeight, quantizeWeight } from "../quant/weight.ts";
import { attachAdapter } from "./lora.ts";
import { loadModel } from "./model.ts";
import { quantizeModel, type QuantizeOptions, quantizeOptionsFromArgs, quantSpecOf } from "./quantize.ts";
import { golden, relNorm } from "./lora_testing.ts";

const dir = new URL("../../fixtures/models/llama", import.meta.url).pathname;
const g = await golden(dir);
const gpu = await hasGpu();
const EXECUTORS: [string, () => Promise<Executor>][] = [
  ["reference", () => Promise.resolve(new ReferenceExecutor())],
  ["onnx", () => OnnxExecutor.create({ threads: 1 })],
  ...(gpu ? [["webgpu", () => WebGpuExecutor.create()] as [string, () => Promise<Executor>]] : []),
];

/** Over real positions: max |a − b| and ‖a − b‖ / ‖b‖. */
function logitError(a: Float32Array, b: Float32Array, V: number): { err: number; rel: number } {
  let err = 0, num = 0, den = 0;
  g.mask.forEach((row, bi) =>
    row.forEach((m, i) => {
      if (!m) return;
      for (let v = 0; v < V; v++) {
        const k = (bi * row.length + i) * V + v;
        err = Math.max(err, Math.abs(a[k] - b[k]));
        num += (a[k] - b[k]) ** 2;
        den += b[k] ** 2;
      }
    })
  );
  return { err, rel: Math.sqrt(num / den) };
}

const NF4: QuantizeOptions = { bits: 4, type: "nf4", doubleQuant: true };
/**
 * Relative RMS logit error bounds. Measured on this fixture (every executor alike): NF4 + double quant 0.302 (max
 * |Δlogit| 1.61, logits up to 4.3; argmax kept at 16 of 21 positions), FP4 0.430 (2.94), int8 0.023 (0.136). The
 * weights' own relative error is 0.091 (NF4), 0.123 (FP4), 0.006 (int8); this random 2-layer model amplifies it
 * about 3.5 times by the logits.
 */
const BOUNDS: [QuantizeOptions, number][] = [
  [NF4, 0.33],
  [{ bits: 4, type: "fp4", doubleQuant: false }, 0.46],
  [{ bits: 8 }, 0.03],
];

Deno.test("quantize: LLaMA-Factory's arguments map to specs", () => {
  assert.equal(quantizeOptionsFromArgs({ quantization_bit: null }), undefined);
  assert.deepEqual(quantSpecOf(quantizeOptionsFromArgs({ quantization_bit: 4 })!), {
    kind: "nf4",
    blocksize: 64,
    doubleQuant: true,
  });
  assert.deepEqual(
    quantSpecOf(
      quantizeOptionsFromArgs({ quantization_bit: 4, quantization_type: "fp4", double_quantization: false })!,
    ),
    { kind: "fp4", blocksize: 64, doubleQuant: false },
  );
  assert.equal(quantSpecOf({ bits: 8 }).kind, "int8");
  assert.throws(() => quantizeOptionsFromArgs({ quantization_bit: 3 }), /4 or 8/);
  assert.throws(() => quantizeOptionsFromArgs({ quantization_bit: 4, quantization_method: "hqq" }), /bnb/);
});

for (const [exName, make] of EXECUTORS) {
  Deno.test(`quantize on ${exName}: quantized logits are close to f32 and equal the dequantized model's`, async () => {
    const ex = await make();
    const full = await loadModel(dir, { executor: ex });
    const want = (await full.forward(g.ids, { attentionMask: g.mask })).logits;
    for (const [opts, bound] of BOUNDS) {
      const ex2 = await make();
      const q = await loadModel(dir, { executor: ex2, quantization: opts });
      assert.ok(!q.params.has("model.layers.0.self_attn.q_proj.weight"), "quantized weights are not f32 params");
      const got = (await q.forward(g.ids, { attentionMask: g.mask })).logits;
      const { err, rel } = logitError(got, want, q.config.vocab);
      assert.ok(
        rel > 0 && rel < bound,
        `${opts.bits}-bit ${opts.type ?? ""}: logit error ${rel} relative (max ${err})`,
      );
      // An f32 model holding the dequantized weights computes the same logits: the kernels dequantize exactly.
      const deq = await loadModel(dir, { executor: await make() });
      for (const m of q.quantized!.modules.keys()) {
        const name = `${m}.weight`;
        const shape = deq.params.get(name)!.shape;
        const w = dequantizeWeight(quantizeWeight(await deq.executor.getParam(name), shape, quantSpecOf(opts)));
        deq.executor.setParam(name, w, shape, "f32");
      }
      const same = (await deq.forward(g.ids, { attentionMask: g.mask })).logits;
      const d = logitError(got, same, q.config.vocab).err;
      assert.ok(d < 2e-5, `${opts.bits}-bit: differs from the dequantized f32 model by ${d}`);
      if (opts.bits === 8) {
        // KV-cached generation runs the same hook (decode steps are one-row matmul_q); int8 keeps the greedy tokens.
        const prompt = [1, 5, 9, 20];
        assert.deepEqual(
          await q.generate(prompt, { maxNewTokens: 6 }),
          await full.generate(prompt, { maxNewTokens: 6 }),
        );
      }
      ex2.dispose();
      deq.executor.dispose();
    }
    ex.dispose();
  });

  Deno.test(`quantize on ${exName}: QLoRA gradients and SGD steps on an NF4 base`, async () => {
    const model = await loadModel(dir, { executor: await make() });
    await quantizeModel(model, NF4);
    assert.ok(!model.executor.hasParam("model.layers.1.mlp.down_proj.weight"), "the f32 weight was dropped");
    const lora = await attachAdapter(model, { r: 4, alpha: 8, targets: "all", init: false }, { seed: 3 });
    const opts = { labels: g.labels, attentionMask: g.mask };
    // The same adapter on an f32 model holding the dequantized weights has the same loss and gradients.
    const deq = await loadModel(dir, { executor: await make() });
    for (const m of model.quantized!.modules.keys()) {
      const name = `${m}.weight`, shape = deq.params.get(name)!.shape;
      deq.executor.setParam(
        name,
        dequantizeWeight(quantizeWeight(await deq.executor.getParam(name), shape, quantSpecOf(NF4))),
        shape,
      );
    }
    await attachAdapter(deq, { r: 4, alpha: 8, targets: "all", init: false }, { seed: 3 });
    const a = await model.gradients(g.ids, opts);
    const b = await deq.gradients(g.ids, opts);
    assert.ok(Math.abs(a.loss - b.loss) < 1e-5 * b.loss, `loss ${a.loss} vs ${b.loss}`);
    for (const [name, want] of b.grads) {
      const rel = relNorm(a.grads.get(name)!, want);
      assert.ok(rel < 1e-4, `${name}: gradient differs by ${rel}`);
    }
    // A few SGD steps on the adapter lower the loss.
    const losses: number[] = [];
    for (let step = 0; step < 4; step++) {
      const { loss, grads } = await model.gradients(g.ids, opts);
      losses.push(loss);
      for (const [name, gr] of grads) {
        const p = await model.executor.getParam(name);
        const shape = lora.params.get(name)!.shape;
        model.executor.setParam(name, Float32Array.from(p, (v, i) => v - 0.5 * gr[i]), shape);
      }
    }
    losses.push(await model.loss(g.ids, opts));
    for (let i = 1; i < losses.length; i++) assert.ok(losses[i] < losses[i - 1], `losses ${losses.join(", ")}`);
    model.executor.dispose();
    deq.executor.dispose();
  });
}
