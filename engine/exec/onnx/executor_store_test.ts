/**
 * The ONNX executor's store beyond setParam: zeros stored without a caller's array (`setParamZeros`, the optimizers'
 * fresh states) and the store lent for writing a checkpoint (`getParamView`: the stored array itself, after the runs
 * issued before it).
 */
import assert from "node:assert/strict";
import { assign, Graph, mul } from "../../graph/mod.ts";
import { OnnxExecutor } from "./executor.ts";

Deno.test("OnnxExecutor.setParamZeros: zeros of the shape and dtype, as setParam with zeros stores them", async () => {
  const ex = await OnnxExecutor.create({ threads: 1 });
  try {
    ex.setParamZeros("m", [2, 3]);
    ex.setParamZeros("codes", [4], "i32");
    assert.deepEqual([...await ex.getParam("m")], [0, 0, 0, 0, 0, 0]);
    assert.ok((await ex.getParam("codes")) instanceof Int32Array);
    assert.equal((await ex.getParam("codes")).length, 4);
  } finally {
    ex.dispose();
  }
});

Deno.test("OnnxExecutor.getParamView: the stored values after the runs issued before, without a copy", async () => {
  const ex = await OnnxExecutor.create({ threads: 1, symbolic: false, modelCache: false });
  try {
    ex.setParam("w", [1, 2, 3], [3]);
    const g = new Graph();
    const w = g.param("w", [3]);
    assign(w, mul(w, g.input("k", [3])));
    const c = await ex.compile(g);
    const run = c.run({ k: [2, 2, 2] }); // not awaited: the view waits for it
    const view = await ex.getParamView("w");
    await run;
    assert.deepEqual([...view], [2, 4, 6]);
    assert.strictEqual(await ex.getParamView("w"), view, "the store's own array, not a copy");
    assert.notStrictEqual(await ex.getParam("w"), view);
  } finally {
    ex.dispose();
  }
});
