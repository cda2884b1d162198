/**
 * What the ONNX lowering does for memory: a tied embedding's gradient is one scatter into the LM head's gradient (no
 * zeroed [V, D] buffer, no separate sum), and the result is the reference executor's.
 */
import assert from "node:assert/strict";
import { backward, embedding, Graph, matmul, mul, sum, transpose } from "../../graph/mod.ts";
import { ReferenceExecutor } from "../reference.ts";
import type { Executor } from "../executor.ts";
import { rng } from "../testing/harness.ts";
import { OnnxExecutor } from "./executor.ts";
import { lowerGraph } from "./lower.ts";

const V = 10, D = 4, T = 6;

/** loss = Σ c ⊙ (embedding(W, ids) · Wᵀ): W is both the embedding and the head (tied); outputs dW. */
function tied(): Graph {
  const g = new Graph();
  const ids = g.input("ids", [T], "i32"), c = g.input("c", [T, V]);
  const w = g.param("w", [V, D]);
  const loss = sum(mul(matmul(embedding(w, ids), transpose(w)), c));
  g.output("loss", loss);
  g.output("dw", backward(loss, [w])[0]);
  return g;
}

Deno.test("onnx lowering: a tied embedding's gradient is scattered into the head's, as the reference sums them", async () => {
  const ops = lowerGraph(tied()).model.graph.nodes.map((n) => n.opType);
  assert.equal(ops.filter((o) => o === "ScatterND").length, 1);
  assert.ok(!ops.includes("ConstantOfShape"), "no zeroed [V, D] buffer for the scatter");
  const r = rng(3);
  const w = Array.from({ length: V * D }, () => r() - 0.5);
  // Ids repeat and two fall outside [0, V) (they add nothing).
  const feeds = { ids: [3, 0, 3, 9, -1, 12], c: Array.from({ length: T * V }, () => r() - 0.5) };
  const run = async (ex: Executor) => {
    ex.setParam("w", w, [V, D]);
    return await (await ex.compile(tied())).run(feeds);
  };
  const want = await run(new ReferenceExecutor()), got = await run(await OnnxExecutor.create());
  for (const k of ["loss", "dw"]) {
    assert.equal(got[k].length, want[k].length);
    got[k].forEach((v, i) => assert.ok(Math.abs(v - want[k][i]) < 1e-5, `${k}[${i}]: ${v}, reference ${want[k][i]}`));
  }
});
