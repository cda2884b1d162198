/**
 * PEFT 0.21's OFT variants against PEFT on the tiny llama (fixtures/methods/make_oft_variants.py): `block_share`,
 * `coft` and both. The adapters PEFT saved (unprojected) load; the loss and the oft_R gradients match PEFT's forward
 * (which projects constrained OFT's weights first); the in-place projection before a training step gives PEFT's
 * projected weights; saving writes PEFT's config; merging gives what the adapter computes.
 */
import assert from "node:assert/strict";
import { backward, crossEntropy, Graph, reshape } from "../graph/mod.ts";
import { loadModel } from "./model.ts";
import { traceDecoder } from "./decoder.ts";
import { attachOft, COFT_EPS, coftProjectHost, oftKey, saveOft } from "./oft.ts";
import { openSafetensors } from "../io/safetensors.ts";
import { mergeAdapter } from "./export.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const MODEL = `${ROOT}fixtures/models/llama`;
const golden = JSON.parse(await Deno.readTextFile(`${ROOT}fixtures/methods/oft_variants_golden.json`));
const VARIANTS = ["share", "coft", "share_coft"] as const;
const adapterDir = (v: string) => `${ROOT}fixtures/methods/oft_${v}`;

async function lossAndGrads(executor: "reference" | "onnx" | "webgpu", variant: string) {
  const model = await loadModel(MODEL, { executor, dtype: "f32" });
  await attachOft(model, adapterDir(variant));
  const want = golden.variants[variant], { B, L } = golden, c = model.config, V = c.vocab;
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
  const names = Object.keys(want.grads);
  backward(loss, names.map((n) => w.weight(n))).forEach((t, i) => g.output(`grad:${names[i]}`, t));
  const o = await (await model.executor.compile(g)).run({
    ids: Array.from({ length: B * L }, (_, i) => (i * 37) % V),
    positions: Array.from({ length: B * L }, (_, i) => i % L),
    segments: new Array(B * L).fill(1),
    labels: Array.from({ length: B * L }, (_, i) => (i * 11 + 3) % V),
  });
  return { o, names, want };
}

for (const executor of ["reference", "onnx", "webgpu"] as const) {
  Deno.test(`OFT variants on ${executor}: PEFT's block_share / coft adapters give PEFT's loss and gradients`, async () => {
    for (const v of VARIANTS) {
      const { o, names, want } = await lossAndGrads(executor, v);
      assert.ok(Math.abs(o.loss[0] - want.loss) < 1e-5, `${v}: loss ${o.loss[0]} vs ${want.loss}`);
      for (const n of names) {
        const w: number[] = want.grads[n], got = o[`grad:${n}`];
        assert.equal(got.length, w.length, `${v} ${n}`);
        w.forEach((x, i) =>
          assert.ok(Math.abs(got[i] - x) < 1e-6 + 1e-4 * Math.abs(x), `${v} ${n}[${i}] ${got[i]} vs ${x}`)
        );
      }
    }
  });
}

Deno.test("OFT coft: the projection before a step (device and host) gives PEFT's projected weights", async () => {
  for (const v of ["coft", "share_coft"] as const) {
    const model = await loadModel(MODEL, { executor: "reference", dtype: "f32" });
    const ad = await attachOft(model, adapterDir(v));
    assert.equal(ad.config.coft, true);
    const [key, want] = Object.entries(golden.variants[v].projected)[0] as [string, number[]];
    const shape = ad.params.get(key)!.shape;
    const saved = Float32Array.from(await model.executor.getParam(key));
    assert.ok(saved.some((x, i) => Math.abs(x - want[i]) > 1e-6), `${v}: the saved weights are not projected yet`);
    const host = coftProjectHost(Float32Array.from(saved), shape[0], ad.config.eps ?? COFT_EPS);
    await ad.beforeStep(model);
    const device = await model.executor.getParam(key);
    want.forEach((x, i) => {
      assert.ok(Math.abs(host[i] - x) <= 1e-6 * Math.abs(x) + 1e-12, `${v} host [${i}] ${host[i]} vs ${x}`);
      assert.ok(Math.abs(device[i] - x) <= 1e-6 * Math.abs(x) + 1e-12, `${v} device [${i}] ${device[i]} vs ${x}`);
    });
    // Projected weights are a fixed point (up to rounding): a second step's projection keeps them.
    await ad.beforeStep(model);
    const again = await model.executor.getParam(key);
    again.forEach((x, i) => assert.ok(Math.abs(x - device[i]) <= 1e-6 * Math.abs(device[i]) + 1e-12, `${v} [${i}]`));
  }
});

Deno.test("OFT variants: saving writes PEFT's config and tensors; merging gives what the adapter computes", async () => {
  const ids = [[1, 5, 9, 30, 77, 2, 64, 100]];
  for (const v of VARIANTS) {
    const dir = await Deno.makeTempDir({ prefix: "whetstone-oft-variant-" });
    try {
      const m = await loadModel(MODEL, { executor: "reference" });
      await attachOft(m, adapterDir(v));
      await saveOft(m, dir, "fixtures/models/llama");
      const mine = JSON.parse(await Deno.readTextFile(`${dir}/adapter_config.json`));
      const peft = JSON.parse(await Deno.readTextFile(`${adapterDir(v)}/adapter_config.json`));
      delete peft.peft_version;
      mine.target_modules.sort(), peft.target_modules.sort();
      assert.deepEqual(mine, peft, v);
      using a = await openSafetensors(`${dir}/adapter_model.safetensors`);
      using b = await openSafetensors(`${adapterDir(v)}/adapter_model.safetensors`);
      for (const k of b.tensors.keys()) assert.deepEqual(await a.readF32(k), await b.readF32(k), k);
      assert.ok(b.tensors.has(oftKey("model.layers.0.self_attn.q_proj")));

      const want = (await m.forward(ids)).logits;
      const merged = await mergeAdapter(m);
      const plain = await loadModel(MODEL, { executor: "reference" });
      for (const [name, data] of merged) plain.executor.setParam(name, data, plain.params.get(name)!.shape, "f32");
      const got = (await plain.forward(ids)).logits;
      let worst = 0;
      got.forEach((x, i) => worst = Math.max(worst, Math.abs(x - want[i])));
      assert.ok(worst < 1e-4, `${v}: max |Δlogit| ${worst}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});
