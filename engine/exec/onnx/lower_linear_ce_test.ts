/**
 * The fused LM head + cross-entropy lowered in chunks (lower_linear_ce.ts): at a vocabulary above 8,192 words the
 * forward makes the logits a row chunk at a time and the backward a vocabulary block at a time (not merged with the
 * forward's), each chunk used up before the next is made in every topological order; the loss and gradients are
 * the reference's (ignored and out-of-range labels, chunks past the last row, a tied embedding, and the op's
 * conformance cases forced into chunks), and one symbolic session serves every length.
 */
import assert from "node:assert/strict";
import { backward, embedding, Graph, linearCrossEntropy, mul, reshape } from "../../graph/mod.ts";
import { ReferenceExecutor } from "../reference.ts";
import type { Executor } from "../executor.ts";
import { checkAgainstReference, rng } from "../testing/harness.ts";
import { cases as linearCeCases } from "../../graph/ops/linear_ce_cases.ts";
import { OnnxExecutor } from "./executor.ts";
import { lowerGraph } from "./lower.ts";
import { ceBlocks } from "./lower_linear_ce.ts";

const V = 3 * 8192 + 1, D = 4; // 4 chunks (auto, the default)

/** loss of h [B, L, D] (as [B·L, D] rows) · Wᵀ against labels [B, L], with dh and dW. */
function head(B: number, L = 1, reduction: "mean" | "sum" = "mean"): Graph {
  const g = new Graph();
  const h = g.input("h", [B, L, D]), labels = g.input("labels", [B, L], "i32");
  const w = g.param("w", [V, D]);
  const loss = linearCrossEntropy(reshape(h, [B * L, D]), w, reshape(labels, [B * L]), { reduction });
  g.output("loss", loss);
  const [dh, dw] = backward(loss, [h, w]);
  g.output("dh", dh);
  g.output("dw", dw);
  return g;
}

const weights = (() => {
  const r = rng(11);
  return Array.from({ length: V * D }, () => (r() - 0.5) * 2);
})();

function feeds(N: number): Record<string, number[]> {
  const r = rng(N);
  return {
    h: Array.from({ length: N * D }, () => (r() - 0.5) * 2),
    // every third row ignored, one label past the vocabulary (counts as ignored)
    labels: Array.from({ length: N }, (_, i) => i % 3 === 1 ? -100 : i === 2 ? V + 5 : (i * 7919) % V),
  };
}

async function run(ex: Executor, g: Graph, f: Record<string, number[]>): Promise<Record<string, Float32Array>> {
  ex.setParam("w", weights, [V, D]);
  return await (await ex.compile(g)).run(f) as Record<string, Float32Array>;
}

function close(got: Record<string, ArrayLike<number>>, want: Record<string, ArrayLike<number>>, what: string) {
  for (const k of ["loss", "dh", "dw"]) {
    assert.equal(got[k].length, want[k].length, `${what} ${k}`);
    for (let i = 0; i < want[k].length; i++) {
      const tol = 1e-5 + 1e-4 * Math.abs(want[k][i]);
      assert.ok(Math.abs(got[k][i] - want[k][i]) < tol, `${what} ${k}[${i}]: ${got[k][i]}, reference ${want[k][i]}`);
    }
  }
}

Deno.test("ceBlocks: fixed by the vocabulary (not the rows), or as WHETSTONE_ONNX_CE_CHUNKS says", () => {
  assert.equal(ceBlocks(49152, "auto"), 6);
  assert.equal(ceBlocks(8192, "auto"), 1);
  assert.equal(ceBlocks(151936, "auto"), 16);
  assert.equal(ceBlocks(49152, "off"), 1);
  assert.equal(ceBlocks(37, "3"), 3);
  assert.throws(() => ceBlocks(37, "many"), /WHETSTONE_ONNX_CE_CHUNKS/);
});

Deno.test("onnx lowering: the caller chooses the head's chunking (the executor: whole unless states are large)", () => {
  const heads = (headChunks?: string) =>
    lowerGraph(head(12), { headChunks }).model.graph.nodes.filter((n) =>
      n.opType === "FusedMatMul" && n.inputs[1] === "param/w"
    ).length;
  if (Deno.env.get("WHETSTONE_ONNX_CE_CHUNKS") !== undefined) return; // the variable overrides the caller
  assert.equal(heads(), ceBlocks(V, "auto"));
  assert.equal(heads("auto"), ceBlocks(V, "auto"));
  assert.equal(heads("off"), 1);
  assert.equal(heads("2"), 2);
});

Deno.test("onnx lowering: the fused head's logits are made a chunk at a time, forward and backward", () => {
  const K = ceBlocks(V, "auto");
  assert.equal(K, 4);
  const nodes = lowerGraph(head(12)).model.graph.nodes;
  const made = new Map(nodes.flatMap((n, i) => n.outputs.map((o) => [o, i] as const)));
  const from = (x: string) => nodes[made.get(x)!]?.opType;
  const readers = (i: number) => nodes.flatMap((n, k) => n.inputs.includes(nodes[i].outputs[0]) ? [k] : []);
  // forward: K row chunks against the whole W; backward: K vocabulary blocks (z − lse by one Gemm each)
  const fwd = nodes.flatMap((n, i) => n.opType === "FusedMatMul" && n.inputs[1] === "param/w" ? [i] : []);
  const bwd = nodes.flatMap((n, i) => n.opType === "Gemm" && n.attrs?.transB ? [i] : []);
  assert.equal(fwd.length, K, "K forward chunks");
  assert.equal(bwd.length, K, "K backward blocks");
  assert.ok(fwd.every((i) => from(nodes[i].inputs[0]) === "Slice"), "rows sliced");
  assert.ok(bwd.every((i) => from(nodes[i].inputs[1]) === "Slice"), "W sliced");
  // Each chunk is used up before the next is made — in the order listed and in every topological order: the next
  // chunk's input depends on the current chunk's last results.
  const deps = (i: number): Set<number> => {
    const seen = new Set<number>(), todo = [i];
    while (todo.length) {
      for (const x of nodes[todo.pop()!].inputs) {
        const j = made.get(x);
        if (j !== undefined && !seen.has(j)) seen.add(j), todo.push(j);
      }
    }
    return seen;
  };
  const exps = bwd.map((i) => readers(i)[0]);
  for (const [chunks, what] of [[fwd, "forward"], [exps, "backward"]] as const) {
    for (let j = 0; j + 1 < chunks.length; j++) {
      const before = deps(chunks[j + 1]);
      for (const r of readers(chunks[j])) assert.ok(before.has(r), `${what} chunk ${j} read after the next is made`);
    }
  }
  // nothing [N, V]-sized: no Softmax, no Concat of chunk logits
  assert.ok(!nodes.some((n) => n.opType === "Softmax"));
  assert.ok(!nodes.some((n) => n.opType === "Concat" && n.inputs.some((x) => fwd.includes(made.get(x)!))));
});

Deno.test("onnx lowering: the chunked fused head gives the reference's loss and gradients", async () => {
  for (const [N, reduction] of [[13, "mean"], [5, "sum"], [1, "mean"]] as const) {
    // 13 rows: chunks of 4 with a short last one; 5 and 1: chunks past the last row are empty
    const f = feeds(N);
    const want = await run(new ReferenceExecutor(), head(N, 1, reduction), f);
    const got = await run(await OnnxExecutor.create({ modelCache: false }), head(N, 1, reduction), f);
    close(got, want, `N=${N} ${reduction}`);
  }
});

Deno.test("onnx lowering: one symbolic session serves the chunked fused head at every length", async () => {
  const trace = (s: Record<string, number>) => head(s.B, s.L);
  const ex = await OnnxExecutor.create({ symbolic: true, modelCache: false });
  ex.setParam("w", weights, [V, D]);
  for (const [B, L] of [[2, 5], [1, 9], [3, 7]]) {
    const f = feeds(B * L);
    const c = await ex.compile(trace({ B, L }), { symbolic: { sizes: { B, L }, trace } });
    close(await c.run(f), await run(new ReferenceExecutor(), trace({ B, L }), f), `B=${B} L=${L}`);
  }
  assert.deepEqual(ex.sessions, { created: 1, reused: 2, fallbacks: [] });
});

/** W both the embedding of ids and the fused head (tied): dW sums both gradients. */
function tied(N: number): Graph {
  const g = new Graph();
  const ids = g.input("ids", [N], "i32"), labels = g.input("labels", [N], "i32");
  const w = g.param("w", [V, D]);
  const loss = linearCrossEntropy(mul(embedding(w, ids), embedding(w, ids)), w, labels);
  g.output("loss", loss);
  g.output("dw", backward(loss, [w])[0]);
  return g;
}

Deno.test("onnx lowering: a tied embedding's gradient lands in the chunked head's, as the reference's", async () => {
  const N = 9, f = { ids: [3, 0, 3, V - 1, 8192, 12, 5, 7, 9], labels: feeds(N).labels };
  const want = await run(new ReferenceExecutor(), tied(N), f);
  const got = await run(await OnnxExecutor.create({ modelCache: false }), tied(N), f);
  for (const k of ["loss", "dw"]) {
    for (let i = 0; i < want[k].length; i++) {
      const tol = 1e-5 + 1e-4 * Math.abs(want[k][i]);
      assert.ok(Math.abs(got[k][i] - want[k][i]) < tol, `${k}[${i}]: ${got[k][i]}, reference ${want[k][i]}`);
    }
  }
});

Deno.test("onnx lowering: the fused head's conformance cases, forced into 2 to 7 chunks on their small vocabularies", async (t) => {
  const saved = Deno.env.get("WHETSTONE_ONNX_CE_CHUNKS");
  try {
    for (const k of [2, 3, 7]) {
      Deno.env.set("WHETSTONE_ONNX_CE_CHUNKS", String(k));
      const ex = await OnnxExecutor.create({ threads: 1, modelCache: false });
      for (const c of linearCeCases) await t.step(`${k} chunks: ${c.name}`, () => checkAgainstReference(ex, c));
      ex.dispose();
    }
  } finally {
    if (saved === undefined) Deno.env.delete("WHETSTONE_ONNX_CE_CHUNKS");
    else Deno.env.set("WHETSTONE_ONNX_CE_CHUNKS", saved);
  }
});
