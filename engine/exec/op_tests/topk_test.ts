/**
 * The `topk` contract against hand-written answers on every executor (the conformance cases compare executors with
 * the reference; these pin the reference's rule itself): largest first, ties to the lower index (-0 equals 0), k = E,
 * the values' gradient scattered to the chosen entries and none elsewhere; and the op's refusals.
 */
import assert from "node:assert/strict";
import { backward, cast, Graph, mul, sum, topk } from "../../graph/mod.ts";
import { ReferenceExecutor } from "../reference.ts";
import { WebGpuExecutor } from "../webgpu.ts";
import { OnnxExecutor } from "../onnx/executor.ts";
import { hasGpu } from "../../gpu/device.ts";
import type { Executor } from "../executor.ts";

const makers: [string, () => Promise<Executor>][] = [["reference", () => Promise.resolve(new ReferenceExecutor())]];
if (await hasGpu()) makers.push(["webgpu", () => WebGpuExecutor.create()]);
makers.push(["onnx", () => OnnxExecutor.create({ threads: 1 })]);

const ROWS = [
  [0.1, 0.5, 0.2, 0.5],
  [3, 1, 2, 0],
  [-1, -1, -1, -1],
  [1, 2, 2, 2],
  [0, -0, 0, 7],
];

for (const [name, make] of makers) {
  Deno.test(`topk on ${name}: largest first, ties to the lower index; the gradient lands on the chosen entries`, async () => {
    const ex = await make();
    const g = new Graph();
    const x = g.param("x", [5, 4]);
    const two = topk(x, 2), all = topk(x, 4);
    g.output("v2", two.values);
    g.output("i2", two.indices);
    g.output("i4", all.indices);
    // loss = Σ_j (j + 1) · values[:, j]: d/dx is j + 1 at the j-th chosen entry, 0 elsewhere.
    const loss = sum(mul(two.values, g.constant([1, 2], [1, 2])));
    g.output("dx", backward(loss, [x])[0]);
    ex.setParam("x", ROWS.flat(), [5, 4]);
    const out = await (await ex.compile(g)).run({});
    assert.deepEqual(Array.from(out.i2), [1, 3, 0, 2, 0, 1, 1, 2, 3, 0], "indices, k 2");
    assert.deepEqual(Array.from(out.v2), [0.5, 0.5, 3, 2, -1, -1, 2, 2, 7, 0].map(Math.fround), "values");
    assert.deepEqual(Array.from(out.i4), [1, 3, 2, 0, 0, 2, 1, 3, 0, 1, 2, 3, 1, 2, 3, 0, 3, 0, 1, 2], "k = E");
    const dx = [0, 1, 0, 2, 1, 0, 2, 0, 1, 2, 0, 0, 0, 1, 2, 0, 2, 0, 0, 1];
    assert.deepEqual(Array.from(out.dx), dx, "gradient");
    ex.dispose();
  });
}

Deno.test("topk refuses k outside [1, E] and a non-f32 input, naming them", () => {
  const g = new Graph();
  const x = g.input("x", [2, 4]);
  assert.throws(() => topk(x, 5), /k must be an integer in \[1, 4\], got 5/);
  assert.throws(() => topk(x, 0), /k must be an integer in \[1, 4\], got 0/);
  assert.throws(() => topk(cast(x, "bf16"), 2), /x must be f32/);
});
