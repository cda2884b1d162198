import assert from "node:assert/strict";
import { add, Graph, matmul, mul, sum } from "../graph/mod.ts";
import { hasGpu } from "../gpu/device.ts";
import { WebGpuExecutor } from "./webgpu.ts";
import { ReferenceExecutor } from "./reference.ts";
import type { Executor } from "./executor.ts";

const gpu = await hasGpu();

function model() {
  const g = new Graph();
  const x = g.input("x", [3, 4]);
  const w = g.param("w", [4, 5]);
  const y = matmul(x, w);
  g.output("y", y);
  g.output("s", sum(mul(y, y)));
  return g;
}

Deno.test({
  name: "webgpu: a step is one submit; only the asked outputs are read back",
  ignore: !gpu,
  fn: async () => {
    const ex = await WebGpuExecutor.create();
    ex.setParam("w", Array.from({ length: 20 }, (_, i) => i / 10), [4, 5]);
    const c = await ex.compile(model(), { fuse: true });
    const out = await c.run({ x: Array(12).fill(1) }, ["s"]);
    assert.deepEqual(Object.keys(out), ["s"]);
    assert.equal(c.stats.submits, 1);
    assert.equal(c.stats.bytesReadBack, 4);
    assert.equal(c.stats.dispatches, 2); // the matmul, then Σ y² with the square fused into the sum (engine/exec/fuse.ts)
    assert.ok(c.stats.arenaBytes > 0);
    ex.dispose();
  },
});

Deno.test({
  name: "webgpu: steps issued without waiting resolve in order with their own results",
  ignore: !gpu,
  fn: async () => {
    const ex = await WebGpuExecutor.create();
    ex.setParam("w", Array.from({ length: 20 }, (_, i) => i / 10), [4, 5]);
    const c = await ex.compile(model());
    const ref = new ReferenceExecutor();
    ref.setParam("w", Array.from({ length: 20 }, (_, i) => i / 10), [4, 5]);
    const rc = await ref.compile(model());
    const pending = [0, 1, 2, 3, 4, 5].map((k) => c.run({ x: Array(12).fill(k) }, ["s"]));
    const got = await Promise.all(pending);
    for (let k = 0; k < 6; k++) {
      const want = (await rc.run({ x: Array(12).fill(k) }, ["s"])).s[0];
      assert.ok(Math.abs(got[k].s[0] - want) <= 1e-5 * Math.max(1, want), `step ${k}: ${got[k].s[0]} vs ${want}`);
    }
    ex.dispose();
  },
});

Deno.test({
  name: "webgpu: graphs compiled on one executor share its param store",
  ignore: !gpu,
  fn: async () => {
    const ex = await WebGpuExecutor.create();
    ex.setParam("w", Array(20).fill(1), [4, 5]);
    const a = await ex.compile(model());
    const g2 = new Graph();
    g2.output("w2", add(g2.param("w", [4, 5]), 1));
    const b = await ex.compile(g2);
    ex.setParam("w", Array(20).fill(2), [4, 5]); // same shape: written in place, both graphs see it
    assert.equal((await b.run({})).w2[0], 3);
    assert.equal((await a.run({ x: Array(12).fill(1) }, ["y"])).y[0], 8);
    ex.dispose();
  },
});

Deno.test({
  name: "webgpu: bf16 and f16 params round-trip through the store",
  ignore: !gpu,
  fn: async () => {
    const ex = await WebGpuExecutor.create();
    const vals = [1, -2.5, 0.1, 3.14159, 65504, 1e-3, 7];
    ex.setParam("a", vals, [7], "bf16");
    ex.setParam("b", vals, [7], "f16");
    const ref = new ReferenceExecutor();
    ref.setParam("a", vals, [7], "bf16");
    ref.setParam("b", vals, [7], "f16");
    assert.deepEqual(Array.from(await ex.getParam("a")), Array.from(await ref.getParam("a")));
    assert.deepEqual(Array.from(await ex.getParam("b")), Array.from(await ref.getParam("b")));
    ex.dispose();
  },
});

async function errorCases(ex: Executor) {
  const g = model();
  await assert.rejects(() => ex.compile(g).then((c) => c.run({ x: Array(12).fill(0) })), /param "w".*not in the store/);
  ex.setParam("w", Array(20).fill(0), [4, 5]);
  const c = await ex.compile(g);
  await assert.rejects(() => c.run({}), /missing feed "x" \(\[3, 4\] f32\)/);
  await assert.rejects(() => c.run({ x: [1, 2] }), /feed "x": expected 12 values for \[3, 4\] f32, got 2/);
  await assert.rejects(() => c.run({ x: Array(12).fill(0) }, ["nope"]), /"nope" is not an output/);
  assert.throws(() => ex.setParam("v", [1, 2, 3], [2, 2]), /param "v": 3 values for shape \[2, 2\] \(4\)/);
}

Deno.test("reference: bad feeds, params and fetches are errors that name them", () =>
  errorCases(new ReferenceExecutor()));
Deno.test({
  name: "webgpu: bad feeds, params and fetches are errors that name them",
  ignore: !gpu,
  fn: async () => errorCases(await WebGpuExecutor.create()),
});
