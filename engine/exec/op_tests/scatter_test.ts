/**
 * `scatter_rows` on every executor (an effect op has no output the conformance harness could compare, so its
 * cases live here): the param after a run against plain loops, readers seeing the old value, skipped
 * out-of-range indices, i32 targets, a many-workgroup case, and shape errors.
 */
import assert from "node:assert/strict";
import { add, Graph, scatterRows } from "../../graph/mod.ts";
import { ReferenceExecutor } from "../reference.ts";
import { WebGpuExecutor } from "../webgpu.ts";
import { OnnxExecutor } from "../onnx/executor.ts";
import { hasGpu } from "../../gpu/device.ts";
import { mulberry32 } from "../../util/rng.ts";
import type { DType } from "../../graph/types.ts";
import type { Executor } from "../executor.ts";

interface Case {
  name: string;
  shape: number[]; // target [N, C, ...R]
  index: number[][]; // [N][L]
  dtype?: DType;
}

const CASES: Case[] = [
  { name: "one row per sequence (a decode step)", shape: [3, 5, 2, 2], index: [[0], [4], [2]] },
  { name: "several rows, out-of-range skipped", shape: [2, 6, 3], index: [[5, 0, -1], [6, 1, 3]] },
  { name: "i32 target", shape: [2, 4], index: [[3, 1], [0, 2]], dtype: "i32" },
  {
    name: "many workgroups (a prefill)",
    shape: [4, 96, 2, 16],
    index: Array.from({ length: 4 }, (_, n) => Array.from({ length: 80 }, (_, l) => (l * 7 + n) % 96)),
  },
];

async function check(ex: Executor, c: Case) {
  const dtype = c.dtype ?? "f32";
  const [N, C, ...rest] = c.shape;
  const L = c.index[0].length, R = rest.reduce((a, b) => a * b, 1);
  const r = mulberry32(N * 131 + C);
  const val = (n: number) => Array.from({ length: n }, () => (dtype === "f32" ? r() * 2 - 1 : Math.floor(r() * 1000)));
  const init = val(N * C * R), rows = val(N * L * R);
  const want = init.slice();
  for (let n = 0; n < N; n++) {
    for (let l = 0; l < L; l++) {
      const at = c.index[n][l];
      if (at < 0 || at >= C) continue;
      for (let k = 0; k < R; k++) want[(n * C + at) * R + k] = rows[(n * L + l) * R + k];
    }
  }
  const g = new Graph();
  const t = g.param("t", c.shape, dtype);
  g.output("old", add(t, 0)); // a reader: runs before the write
  scatterRows(t, g.input("index", [N, L], "i32"), g.input("rows", [N, L, ...rest], dtype));
  ex.setParam("t", init, c.shape, dtype);
  const out = await (await ex.compile(g)).run({ index: c.index.flat(), rows });
  const close = (a: ArrayLike<number>, b: number[], what: string) =>
    b.forEach((x, i) => assert.ok(Math.abs(a[i] - x) <= 1e-6, `${c.name}: ${what}[${i}] = ${a[i]}, want ${x}`));
  close(out.old, init, "old");
  close(await ex.getParam("t"), want, "target");
}

const executors: [string, () => Promise<Executor>][] = [["reference", () => Promise.resolve(new ReferenceExecutor())]];
if (await hasGpu()) executors.push(["webgpu", () => WebGpuExecutor.create()]);
executors.push(["onnx", () => OnnxExecutor.create()]);
for (const [name, make] of executors) {
  Deno.test(`scatter_rows on ${name}`, async (t) => {
    const ex = await make();
    for (const c of CASES) await t.step(c.name, () => check(ex, c));
    ex.dispose();
  });
}

Deno.test("scatter_rows: shape errors say what was expected", () => {
  const g = new Graph();
  const t = g.param("t", [2, 8, 4]);
  assert.throws(() => scatterRows(t, g.input("i", [2, 1]), g.input("v", [2, 1, 4])), /index must be \[2, L\] i32/);
  assert.throws(
    () => scatterRows(t, g.input("j", [2, 3], "i32"), g.input("w", [2, 1, 4])),
    /value must be \[2, 3, 4\] f32/,
  );
  assert.throws(() => scatterRows(add(t, 0), g.input("k", [2, 1], "i32"), g.input("x", [2, 1, 4])), /must be a param/);
});
