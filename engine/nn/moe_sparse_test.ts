/**
 * Sparse expert dispatch (routedExperts, engine/graph/ops/grouped.ts) against a dense reference that runs every
 * expert on every token: outputs and the gradients of x, every expert weight and the routing weights, on every
 * executor; the top-k selection; and that a traced MoE block has no dense [N, E·I] expert matmul left.
 */
import assert from "node:assert/strict";
import { backward, Graph, groupedMatmul, mul, sum } from "../graph/mod.ts";
import { routedExperts, topkSelect } from "./moe.ts";
import { denseExperts } from "./moe_dense.ts";
import { executors } from "./executors_testing.ts";
import { relErr } from "../exec/testing/harness.ts";
import { mulberry32 } from "../util/rng.ts";

const N = 7, H = 6, I = 5, E = 4, K = 2;

function build(sparse: boolean) {
  const g = new Graph();
  const x = g.param("x", [N, H]), wg = g.param("wg", [E, I, H]), wu = g.param("wu", [E, I, H]);
  const wd = g.param("wd", [E, H, I]), w = g.param("w", [N, K]);
  const idx = g.input("idx", [N, K], "i32");
  const out = sparse ? routedExperts(x, idx, w, { gate: wg, up: wu, down: wd }) : denseExperts(x, idx, w, wg, wu, wd);
  const r = mulberry32(7);
  const loss = sum(mul(out, g.constant(Array.from({ length: N * H }, () => r() * 2 - 1), [N, H])));
  g.output("out", out);
  const params = [x, wg, wu, wd, w];
  backward(loss, params).forEach((d, i) => g.output(`d${i}`, d));
  return g;
}

Deno.test("routedExperts: sparse dispatch matches dense experts, forward and backward, on every executor", async () => {
  const r = mulberry32(3);
  const rand = (n: number) => Array.from({ length: n }, () => r() * 2 - 1);
  const params: [string, number[], number[]][] = [
    ["x", rand(N * H), [N, H]],
    ["wg", rand(E * I * H), [E, I, H]],
    ["wu", rand(E * I * H), [E, I, H]],
    ["wd", rand(E * H * I), [E, H, I]],
    ["w", rand(N * K), [N, K]],
  ];
  // Expert 2 gets no token; token 6 picks an out-of-range expert in its second slot (contributes nothing).
  const idx = [0, 1, 1, 3, 3, 0, 1, 0, 3, 1, 0, 3, 1, 4];
  const names = ["out", "d0", "d1", "d2", "d3", "d4"];
  let want: Record<string, ArrayLike<number>> | undefined;
  for (const [name, make] of executors()) {
    const res: Record<string, ArrayLike<number>>[] = [];
    for (const sparse of [true, false]) {
      const ex = await make();
      for (const [n, d, s] of params) ex.setParam(n, d, s);
      res.push(await (await ex.compile(build(sparse))).run({ idx }));
      ex.dispose();
    }
    want ??= res[1];
    for (const n of names) {
      const tol = name === "reference" ? 1e-12 : 1e-5;
      assert.ok(relErr(res[0][n], res[1][n]) <= tol, `${name}: sparse vs dense ${n}: ${relErr(res[0][n], res[1][n])}`);
      assert.ok(relErr(res[0][n], want[n]) <= 1e-5, `${name}: ${n} vs the reference executor`);
    }
    // Expert 2 has no rows: its weights get exactly zero gradient.
    assert.ok(Array.from(res[0].d1).slice(2 * I * H, 3 * I * H).every((v) => v === 0), `${name}: expert 2's dW`);
  }
});

Deno.test("topkSelect: indices largest first (ties to the lower index) and the weights at them", async () => {
  const g = new Graph();
  const p = g.input("p", [3, 4]);
  const w = g.input("w", [3, 4]);
  const { idx, weight } = topkSelect(p, w, 2);
  g.output("idx", idx);
  g.output("weight", weight);
  for (const [name, make] of executors()) {
    const out = await (await (await make()).compile(g)).run({
      p: [0.1, 0.5, 0.2, 0.5, 3, 1, 2, 0, -1, -1, -1, -1],
      w: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
    });
    assert.deepEqual(Array.from(out.idx), [1, 3, 0, 2, 0, 1], name);
    assert.deepEqual(Array.from(out.weight), [2, 4, 5, 7, 9, 10], name);
  }
});

Deno.test("a traced sparse block multiplies N·k rows by grouped matmuls, never [N, E·I]", () => {
  const g = new Graph();
  const x = g.input("x", [N, H]), idx = g.input("idx", [N, K], "i32"), w = g.input("w", [N, K]);
  const wg = g.input("wg", [E, I, H]), wu = g.input("wu", [E, I, H]), wd = g.input("wd", [E, H, I]);
  g.output(
    "y",
    routedExperts(x, idx, w, {
      gate: wg,
      up: wu,
      down: (rows, o) => groupedMatmul(rows, wd, o.offsets, { transB: true }),
    }),
  );
  const ops = g.nodes.map((n) => n.op);
  assert.equal(ops.filter((o) => o === "grouped_matmul").length, 3);
  assert.ok(!ops.includes("matmul"));
  for (const n of g.nodes.filter((n) => n.op === "grouped_matmul")) {
    assert.equal(g.values[n.outputs[0]].shape[0], N * K);
  }
});
