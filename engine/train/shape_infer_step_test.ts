/**
 * exec/onnx/shape_infer.ts on a whole lowered LoRA training step (checkpointed: its recompute ordering ties too):
 * every value's inferred dims against the dims ONNX Runtime gives when each value is made an output.
 */
import assert from "node:assert/strict";
import { encodeModel, ONNX_TYPE } from "../exec/onnx/proto.ts";
import { inferShapes } from "../exec/onnx/shape_infer.ts";
import { lowerGraph } from "../exec/onnx/lower.ts";
import { typesOf } from "../exec/onnx/symbolic_graph.ts";
import { OnnxExecutor } from "../exec/onnx/executor.ts";
import { loadOrt } from "../../deps.ts";
import { TINY_LLAMA } from "./testing.ts";
import { decoderParams } from "../nn/decoder.ts";
import { Model } from "../nn/model.ts";
import { attachAdapter } from "../nn/lora.ts";
import { adamwStepPlan, traceTrainStep } from "./step/lm.ts";
import type { DType } from "../graph/mod.ts";

const F = ONNX_TYPE.FLOAT;

const CFG = TINY_LLAMA;

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
