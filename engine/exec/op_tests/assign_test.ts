import assert from "node:assert/strict";
import { add, assign, Graph, matmul, mul } from "../../graph/mod.ts";
import { transpose } from "../../graph/ops/shape.ts";
import { ReferenceExecutor } from "../reference.ts";
import { OnnxExecutor } from "../onnx/executor.ts";
import { lowerGraph } from "../onnx/lower.ts";
import { WebGpuExecutor } from "../webgpu.ts";
import { hasGpu } from "../../gpu/device.ts";
import type { Executor } from "../executor.ts";

async function runningSum(ex: Executor) {
  const g = new Graph();
  const acc = g.param("acc", [2]);
  const x = g.input("x", [2]);
  const next = add(acc, x);
  g.output("seen", add(acc, 0)); // reads the old value: must see it before the write
  g.output("sum", next);
  assign(acc, next);
  ex.setParam("acc", [0, 0], [2]);
  const c = await ex.compile(g);
  for (let k = 1; k <= 3; k++) await c.run({ x: [k, 10 * k] });
  const last = await c.run({ x: [4, 40] });
  assert.deepEqual(Array.from(last.seen), [6, 60]);
  assert.deepEqual(Array.from(last.sum), [10, 100]);
  assert.deepEqual(Array.from(await ex.getParam("acc")), [10, 100]);
}

Deno.test("assign: a running sum kept in a param, readers see the old value", () =>
  runningSum(new ReferenceExecutor()));
Deno.test({
  name: "assign: the same on WebGPU",
  ignore: !(await hasGpu()),
  fn: async () => runningSum(await WebGpuExecutor.create()),
});

Deno.test("assign: the same on ONNX Runtime, the param written in place", async () => {
  await runningSum(await OnnxExecutor.create());
});

/** acc [2, 2] ← accᵀ · 2 + x, with `seen` = acc · 3 and `prod` = acc · accᵀ read beside the write. */
function transposed(): Graph {
  const g = new Graph();
  const acc = g.param("acc", [2, 2]);
  const x = g.input("x", [2, 2]);
  g.output("seen", mul(acc, 3));
  g.output("prod", matmul(acc, acc, { transB: true }));
  assign(acc, add(mul(transpose(acc), 2), x));
  return g;
}

Deno.test("in-place states: a writer reading the old buffer out of place keeps its own output buffer", () => {
  const g = new Graph();
  const acc = g.param("acc", [2, 2]);
  assign(acc, transpose(acc)); // Transpose reads other elements than the one it writes
  const l = lowerGraph(g, { inPlaceStates: true });
  assert.equal(l.states[0].inPlace, false);
  const sum = new Graph();
  const s = sum.param("s", [2]);
  assign(s, add(s, sum.input("x", [2]))); // Add reads the element it writes, first
  assert.equal(lowerGraph(sum, { inPlaceStates: true }).states[0].inPlace, true);
});

Deno.test("in-place states: readers that are no ancestor of the write are ordered before it", async () => {
  const l = lowerGraph(transposed(), { inPlaceStates: true });
  assert.equal(l.states[0].inPlace, true);
  // `seen` and `prod` do not feed the new value: each is tied to its writer by one Where on the shape.
  const ties = l.model.graph.nodes.filter((n) => n.opType === "Where");
  assert.equal(ties.length, 2);
  const ref = new ReferenceExecutor(), ort = await OnnxExecutor.create();
  for (const ex of [ref, ort]) ex.setParam("acc", [1, 2, 3, 4], [2, 2]);
  const [cr, co] = [await ref.compile(transposed()), await ort.compile(transposed())];
  for (let k = 0; k < 4; k++) {
    const x = [k, -k, 2 * k, 0.5];
    const [a, b] = [await cr.run({ x }), await co.run({ x })];
    assert.deepEqual(Array.from(b.seen), Array.from(a.seen));
    assert.deepEqual(Array.from(b.prod), Array.from(a.prod));
  }
  assert.deepEqual(Array.from(await ort.getParam("acc")), Array.from(await ref.getParam("acc")));
});
