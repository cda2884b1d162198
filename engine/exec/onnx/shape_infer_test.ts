/**
 * shape_infer.ts: each op's rule on small graphs, an unknown op leaving its outputs (and what depends on them) out,
 * and every value of a lowered LoRA training step (checkpointed: its ordering ties too) against the shapes ONNX
 * Runtime gives when each value is made an output.
 */
import assert from "node:assert/strict";
import { OnnxBuilder } from "./builder.ts";
import { encodeModel, ONNX_TYPE } from "./proto.ts";
import { broadcastDims, inferShapes } from "./shape_infer.ts";
import { lowerGraph } from "./lower.ts";
import { typesOf } from "./symbolic_graph.ts";
import { loadOrt } from "../../../deps.ts";
import { decoderConfig } from "../../nn/config.ts";
import { decoderParams } from "../../nn/decoder.ts";
import { Model } from "../../nn/model.ts";
import { attachAdapter } from "../../nn/lora.ts";
import { adamwStepPlan, traceTrainStep } from "../../train/step/lm.ts";
import { OnnxExecutor } from "./executor.ts";
import type { DType } from "../../graph/mod.ts";

const F = ONNX_TYPE.FLOAT;

Deno.test("broadcastDims: numpy's rules, undefined where the dims disagree", () => {
  assert.deepEqual(broadcastDims([[4, 1, 3], [5, 1], []]), [4, 5, 3]);
  assert.deepEqual(broadcastDims([[2, 3], [3]]), [2, 3]);
  assert.equal(broadcastDims([[2, 3], [4]]), undefined);
});

Deno.test("inferShapes: the lowerings' ops, small int values followed through shape arithmetic", () => {
  const b = new OnnxBuilder();
  const x = b.input("x", F, [2, 5, 6]), w = b.input("w", F, [4, 6]);
  const mm = b.op1("FusedMatMul", [x, w], { transA: { i: 0 }, transB: { i: 1 }, alpha: { f: 1 } }, "com.microsoft");
  const mmA = b.op1("FusedMatMul", [x, x], { transA: { i: 1 }, transB: { i: 0 } }, "com.microsoft");
  const r = b.reshape(mm, [0, -1]); // [2, 20]
  const t = b.transpose(x, [2, 0, 1]);
  const s = b.reduce("Sum", x, [-1], true), m = b.reduce("Mean", x, [0, 2], false);
  const sl = b.op1("Slice", [x, b.i64([1, -1]), b.i64([100, 0]), b.i64([1, 2]), b.i64([2, -2])]);
  const u = b.op1("Unsqueeze", [x, b.i64([0, -1])]), q = b.op1("Squeeze", [u, b.i64([0])]);
  // a shape computed at run time: Shape, Concat with a constant, then a tie choosing between two equal shapes
  const dims = b.op1("Concat", [b.op1("Shape", [x], { start: { i: 0 }, end: { i: 2 } }), b.i64([3, 2])], {
    axis: { i: 0 },
  });
  const tie = b.op1("Where", [b.op1("Cast", [b.i64s(1)], { to: { i: ONNX_TYPE.BOOL } }), dims, dims]);
  const rs = b.op1("Reshape", [x, tie]);
  const e = b.op1("Expand", [b.reduce("Max", x, [1], true), b.i64([3, 1, 1, 1])]);
  const g = b.op1("Gather", [w, b.i64([0, 3, 1])], { axis: { i: 0 } });
  const rg = b.op1("Range", [b.i64s(2), b.i64s(11), b.i64s(3)]);
  const tk = b.op("TopK", [mm, b.i64([2])], { axis: { i: -1 } }, 2);
  const mystery = b.op1("NotAnOp", [x]), after = b.add(mystery, x);
  const shapes = inferShapes(b.model("m").graph);
  const at = (v: string) => shapes.get(v);
  assert.deepEqual(at(mm), [2, 5, 4]);
  assert.deepEqual(at(mmA), [2, 6, 6]);
  assert.deepEqual(at(r), [2, 20]);
  assert.deepEqual(at(t), [6, 2, 5]);
  assert.deepEqual([at(s), at(m)], [[2, 5, 1], [5]]);
  assert.deepEqual(at(sl), [2, 2, 3]); // axis 1: 1 and 3; axis 2: 5, 3, 1
  assert.deepEqual([at(u), at(q)], [[1, 2, 5, 6, 1], [2, 5, 6, 1]]);
  assert.deepEqual(at(rs), [2, 5, 3, 2]);
  assert.deepEqual(at(e), [3, 2, 1, 6]);
  assert.deepEqual([at(g), at(rg)], [[3, 6], [3]]);
  assert.deepEqual([at(tk[0]), at(tk[1])], [[2, 5, 2], [2, 5, 2]]);
  assert.equal(at(mystery), undefined);
  assert.equal(at(after), undefined);
});

const CFG = decoderConfig({
  model_type: "llama",
  vocab_size: 96,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: true,
});

Deno.test("inferShapes: every value of a lowered LoRA step (checkpointed) has the shape ONNX Runtime gives it", async () => {
  const ex = await OnnxExecutor.create({ modelCache: false });
  const params = new Map<string, { shape: number[]; dtype: DType }>();
  for (const [name, shape] of decoderParams(CFG)) params.set(name, { shape, dtype: "f32" });
  const model = new Model(CFG, ex, params);
  const trainable = [...(await attachAdapter(model, { r: 4, alpha: 8, targets: ["all"] })).params.keys()];
  const B = 2, L = 7;
  const graph = traceTrainStep(model, adamwStepPlan(B, L, trainable, { checkpoint: true }));
  const { model: m } = lowerGraph(graph, {});
  const g = m.graph;
  const shapes = inferShapes(g);
  const declared = new Set([...g.inputs, ...g.outputs, ...g.initializers].map((v) => v.name));
  const computed = g.nodes.flatMap((n) => n.outputs).filter((o) => o && !declared.has(o));
  const known = computed.filter((o) => shapes.has(o));
  // Every value is told (the lowerings emit no op it does not know).
  assert.deepEqual(computed.filter((o) => !shapes.has(o)), []);
  assert.ok(known.length > 500, `${known.length} values`);
  // Each value made an output of its own: ONNX Runtime's shapes.
  const types = typesOf(g);
  // Outputs of the inferred rank, every dim a name of its own: what ONNX Runtime returns is what is compared.
  const outputs = known.map((name) => ({
    name,
    dataType: types.get(name)!,
    dims: shapes.get(name)!.map((_, a) => `${name}_${a}`),
  }));
  assert.deepEqual(outputs.filter((o) => o.dataType === undefined), []);
  const probe = { ...m, graph: { ...g, outputs } };
  const ort = await loadOrt();
  const session = await ort.InferenceSession.create(encodeModel(probe), {
    graphOptimizationLevel: "disabled",
    logSeverityLevel: 3,
  });
  const feeds: Record<string, InstanceType<typeof ort.Tensor>> = {};
  for (const v of g.inputs) {
    const dims = v.dims as number[], n = dims.reduce((p, q) => p * q, 1);
    feeds[v.name] = v.dataType === F
      ? new ort.Tensor("float32", Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 0.1), dims)
      : v.dataType === ONNX_TYPE.INT32
      ? new ort.Tensor("int32", new Int32Array(n).fill(1), dims)
      : new ort.Tensor("int64", new BigInt64Array(n).fill(1n), dims);
  }
  const out = await session.run(feeds);
  const wrong = known.filter((o) => out[o].dims.join() !== shapes.get(o)!.join());
  assert.deepEqual(wrong.map((o) => `${o}: ${shapes.get(o)} vs ${out[o].dims}`), []);
  await session.release();
});
