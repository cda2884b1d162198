/**
 * The value head: last-token selection (as LF's `attention_mask.sum(-1) - 1` under right padding), torch's
 * nn.Linear initialisation bounds, LF's value_head.safetensors round trip, and dropout before the head. The head's
 * values and gradients against TRL / LF goldens are in engine/train/step/pref_test.ts (stage rm).
 */
import assert from "node:assert/strict";
import { Graph } from "../graph/mod.ts";
import { ReferenceExecutor } from "../exec/reference.ts";
import { openSafetensors } from "../io/safetensors.ts";
import { loadModel } from "./model.ts";
import { traceDecoder } from "./decoder.ts";
import {
  initValueHead,
  lastTokenMask,
  lastTokenScores,
  loadValueHead,
  saveValueHead,
  traceValues,
  V_HEAD_BIAS,
  V_HEAD_WEIGHT,
  VALUE_HEAD_FILE,
  valueHeadParams,
} from "./value_head.ts";

const LLAMA = new URL("../../fixtures/models/llama/", import.meta.url).pathname;

Deno.test("lastTokenScores: the value at each row's last real token (right padding), 0 for an empty row", async () => {
  const g = new Graph();
  const values = g.input("v", [4, 5]);
  const seg = g.input("s", [4, 5], "i32");
  g.output("mask", lastTokenMask(seg));
  g.output("scores", lastTokenScores(values, seg));
  const out = await (await new ReferenceExecutor().compile(g)).run({
    v: Array.from({ length: 20 }, (_, i) => i + 1),
    s: [1, 1, 1, 0, 0, /**/ 1, 1, 1, 1, 1, /**/ 0, 0, 0, 0, 0, /**/ 1, 0, 0, 0, 0],
  });
  assert.deepEqual(Array.from(out.scores), [3, 10, 0, 16]);
  assert.deepEqual(Array.from(out.mask), [0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
});

Deno.test("value head: nn.Linear init bounds, LF's value_head.safetensors round trip", async () => {
  const model = await loadModel(LLAMA, { executor: "reference" });
  const H = model.config.hidden;
  assert.deepEqual([...valueHeadParams(H)], [[V_HEAD_WEIGHT, [1, H]], [V_HEAD_BIAS, [1]]]);
  initValueHead(model, { seed: 7 });
  const w = await model.executor.getParam(V_HEAD_WEIGHT), b = await model.executor.getParam(V_HEAD_BIAS);
  const bound = 1 / Math.sqrt(H);
  assert.ok([...w, ...b].every((v) => Math.abs(v) <= bound) && new Set(w).size === H);
  const dir = await Deno.makeTempDir();
  try {
    await saveValueHead(model, dir);
    const f = await openSafetensors(`${dir}/${VALUE_HEAD_FILE}`);
    assert.deepEqual([...f.tensors.keys()].sort(), [V_HEAD_BIAS, V_HEAD_WEIGHT]);
    assert.deepEqual(f.tensors.get(V_HEAD_WEIGHT)!.shape, [1, H]);
    assert.equal(f.metadata.format, "pt");
    f.close();
    initValueHead(model, { seed: 8 });
    await loadValueHead(model, dir);
    assert.deepEqual(Array.from(await model.executor.getParam(V_HEAD_WEIGHT)), Array.from(w));
    await assert.rejects(() => loadValueHead(model, `${dir}/missing`), /No such file|not found/i);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("traceValues: dropout before the head only with a seed, deterministic per seed", async () => {
  const model = await loadModel(LLAMA, { executor: "reference" });
  initValueHead(model);
  const g = new Graph();
  const inp = { ids: g.input("ids", [1, 6], "i32"), positions: g.input("pos", [1, 6], "i32") };
  const seed = g.input("seed", [], "u32");
  const { hidden } = traceDecoder(model.config, inp, model.weights(g));
  g.output("plain", traceValues(g, model, hidden));
  g.output("dropped", traceValues(g, model, hidden, { dropout: 0.5, seed }));
  g.output("unseeded", traceValues(g, model, hidden, { dropout: 0.5 }));
  const step = await model.executor.compile(g);
  const feeds = { ids: [5, 9, 2, 7, 1, 3], pos: [0, 1, 2, 3, 4, 5], seed: [11] };
  const a = await step.run(feeds), b = await step.run(feeds);
  assert.deepEqual(Array.from(a.unseeded), Array.from(a.plain));
  assert.notDeepEqual(Array.from(a.dropped), Array.from(a.plain));
  assert.deepEqual(Array.from(a.dropped), Array.from(b.dropped));
});
