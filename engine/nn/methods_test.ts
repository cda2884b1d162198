/**
 * NEFTune and LongLoRA's S²-attention on the tiny llama against fixtures/methods/golden.json (made by
 * fixtures/methods/make_methods.py with torch: transformers' NEFTune formula on the same mulberry32 draws, and LF's
 * longlora.py lines as a registered attention function): loss and sampled gradients of layer 0's q_proj.
 */
import assert from "node:assert/strict";
import { backward, crossEntropy, Graph, reshape } from "../graph/mod.ts";
import { ReferenceExecutor } from "../exec/reference.ts";
import { loadModel } from "./model.ts";
import { type DecoderWeights, traceDecoder } from "./decoder.ts";
import { neftuneMagnitude, neftuneNoise } from "./neftune.ts";
import { roll, s2AttendHook, s2GroupSize } from "./longlora.ts";

const golden = JSON.parse(
  await Deno.readTextFile(new URL("../../fixtures/methods/golden.json", import.meta.url)),
);
const MODEL = new URL("../../fixtures/models/llama", import.meta.url).pathname;

type Kind = "reference" | "onnx" | "webgpu";

async function lossAndGrad(mode: "plain" | "neftune" | "s2", executor: Kind) {
  const model = await loadModel(MODEL, { executor, dtype: "f32" });
  const { B, L } = golden, c = model.config, V = c.vocab, H = c.hidden;
  const g = new Graph();
  const inp = {
    ids: g.input("ids", [B, L], "i32"),
    positions: g.input("positions", [B, L], "i32"),
    segments: g.input("segments", [B, L], "i32"),
    ...(mode === "neftune" ? { noise: g.input("noise", [B, L, H]) } : {}),
  };
  const w: DecoderWeights = model.weights(g);
  const out = traceDecoder(c, inp, mode === "s2" ? { ...w, attend: s2AttendHook(c.attnScale) } : w);
  const labels = g.input("labels", [B * L], "i32");
  const loss = crossEntropy(reshape(out.logits, [B * L, V]), labels);
  g.output("loss", loss);
  g.output("grad", backward(loss, [w.weight(golden.grad_of)])[0]);
  const feeds: Record<string, ArrayLike<number>> = {
    ids: Array.from({ length: B * L }, (_, i) => (i * 37) % V),
    positions: Array.from({ length: B * L }, (_, i) => i % L),
    segments: new Array(B * L).fill(1),
    labels: Array.from({ length: B * L }, (_, i) => (i * 11 + 3) % V),
  };
  if (mode === "neftune") feeds.noise = neftuneNoise(golden.seed, B, L, H, golden.alpha);
  const o = await (await model.executor.compile(g)).run(feeds);
  return { loss: o.loss[0], grad: o.grad };
}

for (const executor of ["reference", "onnx", "webgpu"] as const) {
  // WebGPU (lavapipe here) compiles slowly: it checks the S²-attention graph, the one with new op patterns.
  for (const mode of executor === "webgpu" ? ["s2"] as const : ["plain", "neftune", "s2"] as const) {
    Deno.test(`methods golden (${mode}) on ${executor}: loss and q_proj gradient as torch computes them`, async () => {
      const want = golden[mode];
      const { loss, grad } = await lossAndGrad(mode, executor);
      assert.ok(Math.abs(loss - want.loss) < 1e-5, `loss ${loss} vs ${want.loss}`);
      let norm = 0;
      for (const x of grad) norm += x * x;
      assert.ok(Math.abs(Math.sqrt(norm) - want.grad_norm) < 1e-4 * want.grad_norm, "grad norm");
      want.grad_every7.forEach((x: number, j: number) => {
        assert.ok(Math.abs(grad[j * 7] - x) < 2e-5 + 1e-4 * Math.abs(x), `grad[${j * 7}] ${grad[j * 7]} vs ${x}`);
      });
    });
  }
}

Deno.test("the goldens differ: noise and S²-attention change the loss", () => {
  assert.notEqual(golden.neftune.loss, golden.plain.loss);
  assert.notEqual(golden.s2.loss, golden.plain.loss);
});

Deno.test("NEFTune noise: within ±alpha/√(L·H), uniform statistics, seeded", () => {
  const B = 4, L = 64, H = 32, alpha = 5;
  const m = neftuneMagnitude(alpha, L, H);
  assert.equal(m, 5 / Math.sqrt(64 * 32));
  const n = neftuneNoise(9, B, L, H, alpha);
  assert.equal(n.length, B * L * H);
  let sum = 0, sq = 0, max = 0;
  for (const x of n) {
    sum += x, sq += x * x, max = Math.max(max, Math.abs(x));
  }
  assert.ok(max <= m && max > 0.99 * m, `max ${max} vs bound ${m}`);
  const mean = sum / n.length, variance = sq / n.length - mean * mean;
  assert.ok(Math.abs(mean) < 0.02 * m, `mean ${mean}`);
  assert.ok(Math.abs(variance / (m * m / 3) - 1) < 0.03, `variance ${variance} vs m²/3 ${m * m / 3}`);
  assert.deepEqual(neftuneNoise(9, B, L, H, alpha), n, "same seed, same noise");
  assert.notDeepEqual(neftuneNoise(10, B, L, H, alpha), n, "another seed, other noise");
});

Deno.test("S²-attention: LF's group size and its divisibility assertion; roll is torch.roll", async () => {
  assert.equal(s2GroupSize(64), 16);
  assert.equal(s2GroupSize(16), 4);
  assert.throws(() => s2GroupSize(18), /shift_attn: q_len 18 should be divisible by group size 4\./);
  assert.throws(() => s2GroupSize(3), /q_len 3 should be divisible by group size 0/);
  const g = new Graph();
  const x = g.input("x", [1, 5]);
  g.output("a", roll(x, -3, 1));
  g.output("b", roll(x, 2, 1));
  const o = await (await new ReferenceExecutor().compile(g)).run({ x: [0, 1, 2, 3, 4] });
  assert.deepEqual([...o.a], [3, 4, 0, 1, 2]);
  assert.deepEqual([...o.b], [3, 4, 0, 1, 2]);
});
