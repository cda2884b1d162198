/**
 * Symbolic sizes on a small graph: the polynomials of symbolic_fit.ts, the model buildSymbolic makes (dim_params,
 * run-time shapes, named Reshape dims) and one session serving several sizes with the per-shape session's results.
 * The training step, eval and generation graphs are checked in engine/train/symbolic_steps_test.ts.
 */
import assert from "node:assert/strict";
import { Graph, matmul, reshape } from "../../graph/mod.ts";
import { OnnxExecutor } from "./executor.ts";
import { buildSymbolic } from "./symbolic.ts";
import { fitPoly, iotaAxis, polyAt, polyName, probeGrid } from "./symbolic_fit.ts";

/** x [B, L, 4] → rows [B·L, 4] · w [4, 3] → [B, L, 3]. */
function trace(s: Record<string, number>): Graph {
  const g = new Graph();
  const x = g.input("x", [s.B, s.L, 4]);
  g.output("y", reshape(matmul(reshape(x, [s.B * s.L, 4]), g.param("w", [4, 3])), [s.B, s.L, 3]));
  return g;
}

Deno.test("symbolic_fit: polynomials of the sizes, and constants that count along an axis", () => {
  const grid = probeGrid(["B", "L"]);
  const f = (b: number, l: number) => 9 * b * l - l + 3;
  const p = fitPoly(grid.points.map(([b, l]) => f(b, l)), grid)!;
  assert.equal(polyAt(p, [4, 128]), f(4, 128));
  assert.equal(polyName(p, grid.symbols), "-L+9*B*L+3");
  assert.equal(fitPoly(grid.points.map(([b, l]) => (b * l) / 2), grid), undefined);
  assert.equal(iotaAxis([0, 1, 2, 0, 1, 2], [2, 3]), 1);
  assert.equal(iotaAxis([0, 0, 1, 1], [2, 2]), 0);
  assert.equal(iotaAxis([0, 2, 1], [3]), -1);
});

Deno.test("buildSymbolic: dim_params on inputs and outputs, the Reshape to [B·L, 4] named", () => {
  const sm = buildSymbolic(trace({ B: 2, L: 5 }), { sizes: { B: 2, L: 5 }, trace }, {});
  if ("why" in sm) throw new Error(sm.why);
  assert.deepEqual(sm.model.graph.inputs.find((v) => v.name === "x")?.dims, ["B", "L", 4]);
  assert.deepEqual(sm.model.graph.outputs.find((v) => v.name === "y")?.dims, ["B", "L", 3]);
  assert.ok(sm.model.graph.valueInfo!.some((v) => v.dims.join() === "B*L,4"));
});

Deno.test("OnnxExecutor: one session for every size of a symbolic graph, equal to per-shape sessions", async () => {
  const run = async (symbolic: boolean) => {
    const ex = await OnnxExecutor.create({ symbolic, modelCache: false });
    ex.setParam("w", Array.from({ length: 12 }, (_, i) => i / 7 - 0.5), [4, 3]);
    const ys: number[][] = [];
    for (const [B, L] of [[2, 5], [1, 9], [3, 64]]) {
      const c = await ex.compile(trace({ B, L }), { symbolic: { sizes: { B, L }, trace } });
      ys.push([...(await c.run({ x: Array.from({ length: B * L * 4 }, (_, i) => Math.sin(i)) })).y]);
    }
    return { ys, sessions: ex.sessions };
  };
  const sym = await run(true), fixed = await run(false);
  assert.deepEqual(sym.sessions, { created: 1, reused: 2, fallbacks: [] });
  assert.equal(fixed.sessions.created, 3);
  assert.deepEqual(sym.ys, fixed.ys);
});
