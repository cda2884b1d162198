/**
 * node_order.ts: an optimized model's nodes sorted back into the lowered model's order where their dependencies
 * allow, new nodes after their inputs' producers, everything else byte for byte; and a session of the reordered
 * model computes what the original computes.
 */
import assert from "node:assert/strict";
import { loadOrt } from "../../../deps.ts";
import { encodeModel, type ModelDef, type NodeDef, ONNX_TYPE } from "./proto.ts";
import { reorderLike } from "./node_order.ts";

const F = ONNX_TYPE.FLOAT;
const node = (opType: string, inputs: string[], out: string): NodeDef => ({ opType, inputs, outputs: [out] });

function model(nodes: NodeDef[]): ModelDef {
  return {
    graph: {
      name: "g",
      nodes,
      inputs: [{ name: "x", dataType: F, dims: [3] }],
      outputs: [{ name: "y", dataType: F, dims: [3] }],
      initializers: [],
      valueInfo: [{ name: "a", dataType: F, dims: [3] }],
    },
  };
}

// y = (x + x)·(x·x) + sin(x): a, b independent; c uses both.
const lowered = [
  node("Add", ["x", "x"], "a"),
  node("Mul", ["x", "x"], "b"),
  node("Mul", ["a", "b"], "c"),
  node("Sin", ["x"], "s"),
  node("Add", ["c", "s"], "y"),
];

Deno.test("reorderLike: the lowered order back, a new node after its producers, other fields as they were", async () => {
  const ref = encodeModel(model(lowered));
  // As an optimizer might save it: Sin first, b before a.
  const shuffled = encodeModel(model([lowered[3], lowered[1], lowered[0], lowered[2], lowered[4]]));
  assert.deepEqual(reorderLike(shuffled, ref), ref);
  assert.equal(reorderLike(ref, ref), undefined); // already in order
  // A fused node the lowering never made ("ab" replaces a, b and c): after x, before y's Add, Sin where it was.
  const fused = node("Mul", ["x", "x"], "ab");
  const opt = encodeModel(model([lowered[3], fused, node("Add", ["ab", "s"], "y")]));
  const want = encodeModel(model([fused, lowered[3], node("Add", ["ab", "s"], "y")]));
  assert.deepEqual(reorderLike(opt, ref), want);
  assert.equal(reorderLike(new Uint8Array([1, 2, 3]), ref), undefined); // not a model
  const ort = await loadOrt();
  const x = new ort.Tensor("float32", Float32Array.from([0.5, -1, 2]), [3]);
  const run = async (
    b: Uint8Array,
  ) => [...(await (await ort.InferenceSession.create(b)).run({ x })).y.data as Float32Array];
  assert.deepEqual(await run(reorderLike(shuffled, ref)!), await run(ref));
});
