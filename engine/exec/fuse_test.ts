import assert from "node:assert/strict";
import { add, assign, exp, Graph, matmul, mul, sum, tanh } from "../graph/mod.ts";
import { planGraph } from "./plan.ts";
import { fuseSteps, type Fusion, fusionDefault } from "./fuse.ts";
import { cases } from "./fusion_cases.ts";
import { checkAgainstReference, traceCase } from "./testing/harness.ts";
import { ADAPTER_KIND_KEY } from "../../kernels/matmul.ts";
import { hasGpu } from "../gpu/device.ts";
import { WebGpuExecutor } from "./webgpu.ts";

/** Plans `g` with fusion (bindings limit `maxBindings`); the plan and the fused units' kinds in step order. */
function fused(g: Graph, maxBindings = 16, maxBindingBytes?: number) {
  let fusion: Fusion | undefined;
  const plan = planGraph(g, undefined, 16, (gr, order, root, outs) => {
    fusion = fuseSteps(gr, order, root, outs, { maxBindings, maxBindingBytes });
    return fusion.steps;
  });
  const kinds = plan.steps.flatMap((s) => {
    const u = fusion!.units.get(s);
    if (!u) return [];
    return [`${u.spec.prologue ? "pro+" : ""}${u.spec.anchor?.op ?? "ew"}:${u.nodes.length}`];
  });
  return { plan, kinds, fusion: fusion! };
}

Deno.test("fuse: a chain of elementwise ops becomes one unit whose intermediates get no storage", () => {
  const g = new Graph();
  const x = g.input("x", [64, 64]), y = g.input("y", [64, 64]);
  g.output("z", tanh(mul(exp(add(x, y)), 0.5)));
  const { plan, kinds } = fused(g);
  assert.deepEqual(kinds, ["ew:4"]);
  assert.equal(plan.offsets.size, 1); // only z is stored
  assert.ok(plan.arenaBytes < planGraph(g, undefined, 16).arenaBytes);
});

Deno.test("fuse: matmul epilogue, reduction prologue and epilogue", () => {
  const g = new Graph();
  const x = g.input("x", [8, 16]), w = g.param("w", [16, 4]), b = g.param("b", [4]);
  const y = add(mul(matmul(x, w), 2), b);
  g.output("y", y);
  g.output("n", mul(sum(mul(y, y)), 0.5));
  const { kinds } = fused(g);
  assert.deepEqual(kinds, ["matmul:3", "pro+sum:3"]);
});

Deno.test("fuse: nodes over a value past one storage binding (segmented) are not fused", () => {
  const g = new Graph();
  const x = g.input("x", [8, 16]), w = g.param("w", [16, 4]), b = g.param("b", [4]);
  const big = g.input("big", [64, 64]); // 16 KiB: segmented under an 8 KiB binding limit
  const y = add(mul(matmul(x, w), 2), b);
  g.output("y", y);
  g.output("z", tanh(mul(exp(add(big, 1)), 0.5)));
  assert.deepEqual(fused(g).kinds, ["matmul:3", "ew:4"]);
  // Under 8 KiB bindings every node of the chain over `big` keeps its own kernel; the small matmul still fuses.
  assert.deepEqual(fused(g, 16, 8 * 1024).kinds, ["matmul:3"]);
});

Deno.test("fuse: a value read outside the group before the group ends is not fused", () => {
  const g = new Graph();
  const x = g.input("x", [4, 4]), w = g.param("w", [4, 4]);
  const t = add(x, 1);
  const m = matmul(t, w); // reads t between the two elementwise ops
  g.output("z", mul(t, m));
  const { kinds, plan } = fused(g);
  // mul(t, m) takes the matmul as its anchor; add stays alone (its result is read by the matmul first).
  assert.deepEqual(kinds, ["matmul:2"]);
  const order = plan.steps.flatMap((s) => s.nodes);
  assert.ok(order.indexOf(0) < order.indexOf(1), "the add still runs before the matmul that reads it");
});

Deno.test("fuse: effects stay last and are never fused", () => {
  const g = new Graph();
  const p = g.param("p", [8]);
  const x = g.input("x", [8]);
  const s = add(mul(p, 0.9), x);
  assign(p, s);
  g.output("y", exp(p));
  const { plan, kinds } = fused(g);
  assert.deepEqual(kinds, ["ew:2"]);
  const last = plan.steps.at(-1)!.nodes;
  assert.equal(g.nodes[last[0]].op, "assign");
});

Deno.test("fuse: the bindings limit splits groups", () => {
  const g = new Graph();
  let acc = g.input("x0", [16]);
  for (let i = 1; i < 12; i++) acc = add(acc, g.input(`x${i}`, [16]));
  g.output("y", acc);
  const wide = fused(g, 16).kinds, narrow = fused(g, 4).kinds;
  assert.deepEqual(wide, ["ew:11"]);
  assert.ok(narrow.length > 1, `expected several units, got ${narrow.join(" ")}`);
  for (const k of narrow) assert.ok(Number(k.split(":")[1]) <= 3);
});

Deno.test("fuse: every conformance case of the fusion family fuses something", () => {
  for (const c of cases) {
    const { kinds } = fused(traceCase(c).graph);
    assert.ok(kinds.length > 0, `${c.name}: nothing fused`);
  }
  const anchors = cases.flatMap((c) => fused(traceCase(c).graph).kinds).join(" ");
  for (const k of ["ew:", "matmul:", "pro+sum:", "pro+mean:", "pro+max:"]) assert.ok(anchors.includes(k), k);
});

Deno.test("fuse: WHETSTONE_FUSE=off turns the default off", () => {
  const old = Deno.env.get("WHETSTONE_FUSE");
  try {
    Deno.env.set("WHETSTONE_FUSE", "off");
    assert.equal(fusionDefault(), false);
    Deno.env.set("WHETSTONE_FUSE", "on");
    assert.equal(fusionDefault(), true);
  } finally {
    if (old === undefined) Deno.env.delete("WHETSTONE_FUSE");
    else Deno.env.set("WHETSTONE_FUSE", old);
  }
});

Deno.test({
  name: "fuse: webgpu runs fewer dispatches with fusion and gets the same results",
  ignore: !(await hasGpu()),
  fn: async () => {
    const ex = await WebGpuExecutor.create();
    const c = cases.find((c) => c.name.startsWith("LoRA linear"))!;
    const tr = traceCase(c);
    for (const [name, p] of Object.entries(tr.params)) ex.setParam(name, p.data, p.shape, p.dtype);
    const on = await ex.compile(tr.graph, { fuse: true });
    const off = await ex.compile(tr.graph, { fuse: false });
    const names = [...tr.outputs, ...tr.grads];
    const [a, b] = [await on.run(tr.feeds, names), await off.run(tr.feeds, names)];
    assert.ok(on.stats.dispatches < off.stats.dispatches, `${on.stats.dispatches} vs ${off.stats.dispatches}`);
    for (const k of names) {
      for (let i = 0; i < b[k].length; i++) {
        assert.ok(Math.abs(a[k][i] - b[k][i]) <= 1e-5 * Math.max(1, Math.abs(b[k][i])), `${k}[${i}]`);
      }
    }
    ex.dispose();
  },
});

Deno.test({
  name: "fuse: the fusion cases on webgpu with the GPU kernel configs (workgroup-memory matmul tiles)",
  ignore: !(await hasGpu()),
  fn: async (t) => {
    const ex = await WebGpuExecutor.create();
    const saved = ex.ctx.tuned.get(ADAPTER_KIND_KEY);
    ex.ctx.tuned.set(ADAPTER_KIND_KEY, "gpu");
    try {
      for (const c of cases) await t.step(c.name, () => checkAgainstReference(ex, c));
    } finally {
      if (saved === undefined) ex.ctx.tuned.delete(ADAPTER_KIND_KEY);
      else ex.ctx.tuned.set(ADAPTER_KIND_KEY, saved);
      ex.dispose();
    }
  },
});
