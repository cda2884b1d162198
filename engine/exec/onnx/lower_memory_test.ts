/**
 * What the ONNX lowering does for memory: a tied embedding's gradient is one scatter into the LM head's gradient (no
 * zeroed [V, D] buffer, no separate sum), and the result is the reference executor's; the nodes computing AdamW's new
 * param and states write the outputs themselves (no Identity copying a value the rest of the update still reads).
 */
import assert from "node:assert/strict";
import { backward, embedding, Graph, matmul, mul, reshape, sum, transpose } from "../../graph/mod.ts";
import { adamw } from "../../graph/ops/optim.ts";
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

/** W looked up twice (two batches' ids): dW = add(scatter, scatter), both of them embedding gradients. */
function twice(): Graph {
  const g = new Graph();
  const ids = g.input("ids", [T], "i32"), ids2 = g.input("ids2", [T], "i32"), c = g.input("c", [T, D]);
  const w = g.param("w", [V, D]);
  const loss = sum(mul(mul(embedding(w, ids), embedding(w, ids2)), c));
  g.output("dw", backward(loss, [w])[0]);
  return g;
}

Deno.test("onnx lowering: a weight's gradients from two lookups sum as the reference's", async () => {
  const r = rng(5);
  const w = Array.from({ length: V * D }, () => r() - 0.5);
  const feeds = {
    ids: [3, 0, 3, 9, -1, 12],
    ids2: [1, 1, 2, 5, 9, 0],
    c: Array.from({ length: T * D }, () => r() - 0.5),
  };
  const run = async (ex: Executor) => {
    ex.setParam("w", w, [V, D]);
    return (await (await ex.compile(twice())).run(feeds)).dw;
  };
  const want = await run(new ReferenceExecutor()), got = await run(await OnnxExecutor.create());
  got.forEach((v, i) => assert.ok(Math.abs(v - want[i]) < 1e-4, `dw[${i}]: ${v}, reference ${want[i]}`));
});

Deno.test("onnx lowering: AdamW's new param and states are written by the nodes computing them, in place", () => {
  const g = new Graph();
  const x = g.input("x", [4, 8]), lr = g.input("lr", []), step = g.input("step", []);
  const w = g.param("w", [8, 8]), m = g.param("w.m", [8, 8]), v = g.param("w.v", [8, 8]);
  const loss = sum(mul(matmul(x, w), matmul(x, w)));
  adamw(w, backward(loss, [w])[0], m, v, lr, step, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 });
  const l = lowerGraph(g, { inPlaceStates: true });
  assert.deepEqual(l.states.map((s) => [s.name, s.inPlace]), [["w", true], ["w.m", true], ["w.v", true]]);
  const writers = l.model.graph.nodes.filter((n) => n.outputs.some((o) => o.startsWith("state/")));
  assert.deepEqual(writers.map((n) => n.opType).sort(), ["Add", "Add", "Sub"]);
  // m' and v' are read on by the param's update: from the output buffers themselves.
  const readers = l.model.graph.nodes.filter((n) => n.inputs.some((i) => i === "state/w.m" || i === "state/w.v"));
  assert.ok(readers.length >= 2, readers.map((n) => n.opType).join());
});

/** loss = Σ c ⊙ relu-free MLP (x·W1)² · W2, the first layer checkpointed (or not); outputs dW1 and dW2. */
function mlp(checkpoint: boolean): Graph {
  const g = new Graph();
  const x = g.input("x", [4, 8]), c = g.input("c", [4, 8]);
  const w1 = g.param("w1", [8, 8]), w2 = g.param("w2", [8, 8]);
  const x2 = reshape(mul(x, x), [4, 8]); // the segment's input: made by an op (a view)
  const layer = () => {
    const y = matmul(x2, w1);
    return mul(y, y);
  };
  const h = checkpoint ? g.checkpoint(layer) : layer();
  const loss = sum(mul(matmul(h, w2), c));
  const [d1, d2] = backward(loss, [w1, w2]);
  g.output("d1", d1);
  g.output("d2", d2);
  return g;
}

Deno.test("onnx lowering: a checkpointed segment is recomputed, not merged back into the forward", async () => {
  const matmuls = (g: Graph) => lowerGraph(g).model.graph.nodes.filter((n) => n.opType === "MatMul").length;
  assert.equal(matmuls(mlp(true)), matmuls(mlp(false)) + 1, "the recomputed x·W1 is a node of its own");
  const r = rng(9);
  const w1 = Array.from({ length: 64 }, () => r() - 0.5), w2 = Array.from({ length: 64 }, () => r() - 0.5);
  const feeds = { x: Array.from({ length: 32 }, () => r() - 0.5), c: Array.from({ length: 32 }, () => r() - 0.5) };
  const run = async (ex: Executor, checkpoint: boolean) => {
    ex.setParam("w1", w1, [8, 8]);
    ex.setParam("w2", w2, [8, 8]);
    return await (await ex.compile(mlp(checkpoint))).run(feeds);
  };
  const want = await run(new ReferenceExecutor(), false), got = await run(await OnnxExecutor.create(), true);
  for (const k of ["d1", "d2"]) {
    got[k].forEach((v, i) => assert.ok(Math.abs(v - want[k][i]) < 1e-5, `${k}[${i}]: ${v}, reference ${want[k][i]}`));
  }
});
