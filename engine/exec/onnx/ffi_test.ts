import assert from "node:assert/strict";
import { loadOrt } from "../../../deps.ts";
import { OnnxBuilder } from "./builder.ts";
import { OrtFfi } from "./ffi.ts";
import { OnnxExecutor, type OnnxExecutorOptions } from "./executor.ts";
import { backward, Graph, matmul, mul, sum } from "../../graph/mod.ts";
import { adamw } from "../../graph/ops/optim.ts";
import { encodeModel, ONNX_TYPE } from "./proto.ts";

/** w' = w + x (into w's own array), y = sum(w') (allocated by ONNX Runtime), n = shape of an empty input. */
function model(): Uint8Array {
  const b = new OnnxBuilder();
  const x = b.input("x", ONNX_TYPE.FLOAT, [2, 3]);
  const w = b.input("w", ONNX_TYPE.FLOAT, [2, 3]);
  const e = b.input("e", ONNX_TYPE.INT32, [0]);
  const s = b.input("s", ONNX_TYPE.INT64, []);
  const w2 = b.op1("Add", [w, x]);
  b.output(w2, "w_out", ONNX_TYPE.FLOAT, [2, 3]);
  b.output(b.op1("ReduceSum", [w2], { keepdims: { i: 0 } }), "y", ONNX_TYPE.FLOAT, []);
  b.output(b.op1("Shape", [e]), "n", ONNX_TYPE.INT64, [1]);
  b.output(b.op1("Mul", [s, s]), "s2", ONNX_TYPE.INT64, []);
  return encodeModel(b.model("ffi_test"));
}

Deno.test("ffi: a run reads host arrays, writes a preallocated output in place, copies the others out", async () => {
  await loadOrt();
  const ort = OrtFfi.open();
  assert.ok(ort, "the ONNX Runtime library onnxruntime-node loaded is reachable over FFI");
  const s = await ort.createSession(model(), { graphOptimizationLevel: "basic", enableCpuMemArena: false });
  const w = Float32Array.of(1, 2, 3, 4, 5, 6);
  const x = Float32Array.of(10, 20, 30, 40, 50, 60);
  for (let k = 1; k <= 2; k++) {
    const [wo, y, n, s2] = await s.run(
      [
        { name: "x", data: x, shape: [2, 3] },
        { name: "w", data: w, shape: [2, 3] },
        { name: "e", data: new Int32Array(0), shape: [0] },
        { name: "s", data: BigInt64Array.of(7n), shape: [] },
      ],
      [{ name: "w_out", into: { data: w, shape: [2, 3] } }, { name: "y" }, { name: "n" }, { name: "s2" }],
    );
    assert.equal(wo, undefined);
    assert.deepEqual([...w], [1, 2, 3, 4, 5, 6].map((v, i) => v + k * x[i]), `step ${k}: w written in place`);
    assert.deepEqual(y, { data: Float32Array.of(w.reduce((a, b) => a + b)), dims: [] });
    assert.deepEqual(n, { data: BigInt64Array.of(0n), dims: [1] });
    assert.deepEqual(s2, { data: BigInt64Array.of(49n), dims: [] });
  }
  s.release();
  await assert.rejects(() => s.run([], []), /released/);
});

Deno.test("ffi: ONNX Runtime's errors come back as messages; unknown options are refused by name", async () => {
  await loadOrt();
  const ort = OrtFfi.open()!;
  await assert.rejects(() => ort.createSession(new Uint8Array([1, 2, 3])), /ONNX Runtime: /);
  await assert.rejects(() => ort.createSession(model(), { bogus: 1 } as never), /"bogus"/);
  const s = await ort.createSession(model());
  await assert.rejects(
    () => s.run([{ name: "x", data: new Float32Array(5), shape: [5] }], [{ name: "y" }]),
    /ONNX Runtime: .*x/,
  );
  s.release();
});

/** Three AdamW steps of loss = Σ(x·W)² on an executor: the losses, then W and its states. */
async function adamwRun(opts: OnnxExecutorOptions): Promise<number[][]> {
  const ex = await OnnxExecutor.create(opts);
  const g = new Graph();
  const x = g.input("x", [4, 8]), lr = g.input("lr", []), step = g.input("step", []);
  const w = g.param("w", [8, 8]), m = g.param("w.m", [8, 8]), v = g.param("w.v", [8, 8]);
  const y = matmul(x, w);
  const loss = sum(mul(y, y));
  g.output("loss", loss);
  adamw(w, backward(loss, [w])[0], m, v, lr, step, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 });
  ex.setParam("w", Array.from({ length: 64 }, (_, i) => Math.sin(i)), [8, 8]);
  ex.setParam("w.m", new Float32Array(64), [8, 8]);
  ex.setParam("w.v", new Float32Array(64), [8, 8]);
  const run = await ex.compile(g);
  const xs = Array.from({ length: 32 }, (_, i) => Math.cos(i));
  const out: number[][] = [];
  for (let t = 1; t <= 3; t++) out.push(Array.from((await run.run({ x: xs, lr: [0.01], step: [t] })).loss));
  for (const name of ["w", "w.m", "w.v"]) out.push(Array.from(await ex.getParam(name)));
  assert.equal(ex.usesFfi, opts.ffi !== false);
  return out;
}

Deno.test("ffi: the executor's training steps over FFI are onnxruntime-node's, bit for bit", async () => {
  assert.deepEqual(await adamwRun({ ffi: true }), await adamwRun({ ffi: false }));
  // Without the arena (as full tuning's steps run) the default takes FFI too.
  assert.deepEqual(await adamwRun({ cpuArena: false }), await adamwRun({ ffi: false, cpuArena: false }));
});
