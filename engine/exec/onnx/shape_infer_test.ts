/**
 * shape_infer.ts: each op's rule on small graphs, and an unknown op leaving its outputs (and what depends on them)
 * out. Every value of a lowered training step is checked against ONNX Runtime in engine/train/shape_infer_step_test.ts.
 */
import assert from "node:assert/strict";
import { OnnxBuilder } from "./builder.ts";
import { ONNX_TYPE } from "./proto.ts";
import { inferShapes } from "./shape_infer.ts";

const F = ONNX_TYPE.FLOAT;

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
  const bc = b.mul(x, b.input("col", F, [5, 1])), bad = b.add(x, w); // [2, 5, 6] · [5, 1]; [2, 5, 6] + [4, 6]
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
  assert.deepEqual([at(bc), at(bad)], [[2, 5, 6], undefined]);
  assert.equal(at(mystery), undefined);
  assert.equal(at(after), undefined);
});
