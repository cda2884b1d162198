/**
 * OFT against PEFT 0.21 on the tiny llama (fixtures/methods/make_oft.py): the adapter PEFT saved loads, the loss and
 * the gradients of two oft_R weights match PEFT's; a new adapter is the identity; a saved adapter has PEFT's config
 * and tensors; PEFT's r / oft_block_size rules.
 */
import assert from "node:assert/strict";
import { backward, crossEntropy, Graph, reshape } from "../graph/mod.ts";
import { loadModel } from "./model.ts";
import { traceDecoder } from "./decoder.ts";
import { attachOft, checkOftConfig, oftBlocks, oftConfigFromArgs, saveOft } from "./oft.ts";
import { openSafetensors } from "../io/safetensors.ts";
import { mergeAdapter } from "./export.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const MODEL = `${ROOT}fixtures/models/llama`, ADAPTER = `${ROOT}fixtures/methods/oft`;
const golden = JSON.parse(await Deno.readTextFile(`${ROOT}fixtures/methods/oft_golden.json`));

async function lossAndGrads(executor: "reference" | "onnx" | "webgpu") {
  const model = await loadModel(MODEL, { executor, dtype: "f32" });
  await attachOft(model, ADAPTER);
  const { B, L } = golden, c = model.config, V = c.vocab;
  const g = new Graph();
  const inp = {
    ids: g.input("ids", [B, L], "i32"),
    positions: g.input("positions", [B, L], "i32"),
    segments: g.input("segments", [B, L], "i32"),
  };
  const w = model.weights(g);
  const out = traceDecoder(c, inp, w);
  const labels = g.input("labels", [B * L], "i32");
  const loss = crossEntropy(reshape(out.logits, [B * L, V]), labels);
  g.output("loss", loss);
  const names = Object.keys(golden.grads);
  backward(loss, names.map((n) => w.weight(n))).forEach((t, i) => g.output(`grad:${names[i]}`, t));
  const o = await (await model.executor.compile(g)).run({
    ids: Array.from({ length: B * L }, (_, i) => (i * 37) % V),
    positions: Array.from({ length: B * L }, (_, i) => i % L),
    segments: new Array(B * L).fill(1),
    labels: Array.from({ length: B * L }, (_, i) => (i * 11 + 3) % V),
  });
  return { o, names, model };
}

for (const executor of ["reference", "onnx", "webgpu"] as const) {
  Deno.test(`OFT on ${executor}: PEFT's saved adapter gives PEFT's loss and oft_R gradients`, async () => {
    const { o, names } = await lossAndGrads(executor);
    assert.ok(Math.abs(o.loss[0] - golden.loss) < 1e-5, `loss ${o.loss[0]} vs ${golden.loss}`);
    for (const n of names) {
      const want: number[] = golden.grads[n], got = o[`grad:${n}`];
      assert.equal(got.length, want.length, n);
      want.forEach((x, i) =>
        assert.ok(Math.abs(got[i] - x) < 1e-6 + 1e-4 * Math.abs(x), `${n}[${i}] ${got[i]} vs ${x}`)
      );
    }
  });
}

Deno.test("OFT: a new adapter is the identity; saving writes PEFT's config and tensors", async () => {
  const base = await loadModel(MODEL, { executor: "reference" });
  const ids = [[1, 5, 9, 30, 77, 2]];
  const want = (await base.forward(ids)).logits;
  const cfg = oftConfigFromArgs({ oft_rank: 0, oft_block_size: 8, oft_target: "all", module_dropout: 0 });
  await attachOft(base, cfg);
  const got = (await base.forward(ids)).logits;
  assert.ok(got.every((v, i) => Math.abs(v - want[i]) < 1e-5), "zero weights: R = I");
  const dir = await Deno.makeTempDir({ prefix: "whetstone-oft-" });
  try {
    const m = await loadModel(MODEL, { executor: "reference" });
    await attachOft(m, ADAPTER);
    await saveOft(m, dir, "fixtures/models/llama");
    const mine = JSON.parse(await Deno.readTextFile(`${dir}/adapter_config.json`));
    const peft = JSON.parse(await Deno.readTextFile(`${ADAPTER}/adapter_config.json`));
    delete peft.peft_version;
    mine.target_modules.sort(), peft.target_modules.sort();
    assert.deepEqual(mine, peft);
    const a = await openSafetensors(`${dir}/adapter_model.safetensors`),
      b = await openSafetensors(`${ADAPTER}/adapter_model.safetensors`);
    assert.deepEqual([...a.tensors.keys()].sort(), [...b.tensors.keys()].sort());
    for (const k of b.tensors.keys()) assert.deepEqual(await a.readF32(k), await b.readF32(k), k);
    a.close(), b.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("OFT: PEFT's r / oft_block_size rules and adjustments", () => {
  assert.throws(() => checkOftConfig({ r: 0, blockSize: 0 }), /Either `r` or `oft_block_size` must be non-zero/);
  assert.throws(
    () => checkOftConfig({ r: 4, blockSize: 32 }),
    /You can only specify either r \(4\) or oft_block_size \(32\)/,
  );
  assert.deepEqual(oftBlocks(64, { r: 0, blockSize: 32 }), { r: 2, b: 32 });
  assert.deepEqual(oftBlocks(64, { r: 8, blockSize: 0 }), { r: 8, b: 8 });
  assert.deepEqual(oftBlocks(60, { r: 0, blockSize: 32 }), { r: 2, b: 30 }, "adjusted to the nearest divisor");
  assert.deepEqual(oftBlocks(16, { r: 0, blockSize: 32 }), { r: 1, b: 16 });
});

Deno.test("OFT: merging gives the weights the adapter computes (W · Rᵀ per block)", async () => {
  const ids = [[1, 5, 9, 30, 77, 2, 64, 100]];
  const withOft = await loadModel(MODEL, { executor: "reference" });
  await attachOft(withOft, ADAPTER);
  const want = (await withOft.forward(ids)).logits;
  const merged = await mergeAdapter(withOft);
  const plain = await loadModel(MODEL, { executor: "reference" });
  for (const [name, data] of merged) plain.executor.setParam(name, data, plain.params.get(name)!.shape, "f32");
  const got = (await plain.forward(ids)).logits;
  let worst = 0;
  got.forEach((v, i) => worst = Math.max(worst, Math.abs(v - want[i])));
  assert.ok(worst < 1e-4, `max |Δlogit| ${worst}`);
});
