import assert from "node:assert/strict";
import { add, assign, Graph } from "../../graph/mod.ts";
import { ReferenceExecutor } from "../reference.ts";
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
