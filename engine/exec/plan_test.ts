import assert from "node:assert/strict";
import { add, exp, Graph, matmul, mul, reshape, sum } from "../graph/mod.ts";
import { planGraph, valueBytes } from "./plan.ts";

function chain(n: number) {
  const g = new Graph();
  let x = g.input("x", [64, 64]);
  for (let i = 0; i < n; i++) x = exp(add(x, 1));
  g.output("y", sum(x));
  return g;
}

Deno.test("plan: intermediates whose lives do not overlap share arena bytes", () => {
  const g = chain(10);
  const p = planGraph(g, undefined, 256);
  const one = 64 * 64 * 4;
  const total = [...p.sizes.values()].reduce((a, b) => a + b, 0);
  assert.ok(total >= 20 * one, "20 intermediates were planned");
  // At most two 16 KiB values are live at once (an op's input and output) plus the scalar.
  assert.ok(p.arenaBytes <= 2 * one + 256, `peak ${p.arenaBytes} should be about two values`);
});

Deno.test("plan: no two simultaneously live values overlap in the arena", () => {
  const g = new Graph();
  const x = g.input("x", [8, 16]);
  const w = g.param("w", [16, 16]);
  const a = matmul(x, w), b = exp(a), c = mul(a, b), d = add(reshape(c, [16, 8]), 1);
  g.output("d", d);
  g.output("b", b);
  const p = planGraph(g, undefined, 16);
  const life = new Map<number, [number, number]>();
  p.order.forEach((ni, step) => {
    const n = g.nodes[ni];
    for (const v of [...n.inputs, ...n.outputs]) {
      const r = p.root[v];
      if (!p.offsets.has(r)) continue;
      const [s, e] = life.get(r) ?? [step, step];
      life.set(r, [Math.min(s, step), Math.max(e, step)]);
    }
  });
  for (const id of p.outputs.values()) life.get(p.root[id])![1] = Infinity;
  const ids = [...life.keys()];
  for (const i of ids) {
    for (const j of ids) {
      if (i >= j) continue;
      const [a0, a1] = life.get(i)!, [b0, b1] = life.get(j)!;
      if (a0 > b1 || b0 > a1) continue;
      const [oi, oj] = [p.offsets.get(i)!, p.offsets.get(j)!];
      const overlap = oi < oj + valueBytes(g.values[j]) && oj < oi + valueBytes(g.values[i]);
      assert.ok(!overlap, `values ${i} and ${j} are live together and overlap`);
    }
  }
  // The reshape is a view: it has no storage of its own.
  const view = g.nodes.find((n) => n.op === "reshape")!;
  assert.equal(p.root[view.outputs[0]], p.root[view.inputs[0]]);
});

Deno.test("plan: nodes that no output needs are dropped", () => {
  const g = new Graph();
  const x = g.input("x", [4]);
  exp(x); // dead
  g.output("y", add(x, 1));
  const p = planGraph(g);
  assert.deepEqual(p.order.map((n) => g.nodes[n].op), ["add"]);
});

Deno.test("plan: asking for an unknown output names the ones that exist", () => {
  const g = new Graph();
  g.output("y", add(g.input("x", [2]), 1));
  assert.throws(() => planGraph(g, ["z"]), /no graph output "z"; outputs are: y/);
});
