/**
 * The ONNX Runtime model cache: a session loaded from a cached optimized model computes bit for bit what a session
 * built from the lowered model computes, over several training steps; entries are written once, reused, rebuilt
 * when unreadable and pruned least recently used first; the directory follows `WHETSTONE_CACHE` and
 * `WHETSTONE_ONNX_CACHE=off` turns it off.
 */
import assert from "node:assert/strict";
import { add, backward, Graph, matmul, mul, sum } from "../../graph/mod.ts";
import { adamw } from "../../graph/ops/optim.ts";
import { OnnxExecutor, type OnnxExecutorOptions } from "./executor.ts";
import { commitModel, modelCacheDir, pendingPath } from "./model_cache.ts";
import { rng } from "../testing/harness.ts";

const SHAPES: Record<string, number[]> = { w1: [16, 32], w2: [32, 16], b: [16] };

/** A two-layer MLP step: loss Σ((x·W1)·W2 + b)², its gradients, AdamW on every param. */
function mlpStep(): Graph {
  const g = new Graph();
  const x = g.input("x", [8, 16]), lr = g.input("lr", []), step = g.input("step", []);
  const w1 = g.param("w1", [16, 32]), w2 = g.param("w2", [32, 16]), b = g.param("b", [16]);
  const y = add(matmul(matmul(x, w1), w2), b);
  const loss = sum(mul(y, y));
  g.output("loss", loss);
  const ps = [w1, w2, b];
  const grads = backward(loss, ps);
  Object.keys(SHAPES).forEach((name, i) => {
    const p = ps[i], m = g.param(`${name}.m`, p.shape), v = g.param(`${name}.v`, p.shape);
    adamw(p, grads[i], m, v, lr, step, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 });
  });
  return g;
}

/** The losses and final params of 3 steps of {@link mlpStep} on a fresh executor with `opts`. */
async function train(opts: OnnxExecutorOptions): Promise<number[][]> {
  const ex = await OnnxExecutor.create(opts);
  const r = rng(7);
  for (const [name, shape] of Object.entries(SHAPES)) {
    const n = shape.reduce((a, b) => a * b, 1);
    ex.setParam(name, Array.from({ length: n }, () => r() - 0.5), shape);
    ex.setParam(`${name}.m`, new Float32Array(n), shape);
    ex.setParam(`${name}.v`, new Float32Array(n), shape);
  }
  const step = await ex.compile(mlpStep());
  const x = Array.from({ length: 8 * 16 }, () => r() - 0.5);
  const out: number[][] = [];
  for (let t = 1; t <= 3; t++) out.push(Array.from((await step.run({ x, lr: [0.01], step: [t] })).loss));
  for (const name of Object.keys(SHAPES)) out.push(Array.from(await ex.getParam(name)));
  ex.dispose();
  return out;
}

async function entries(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

Deno.test("onnx model cache: a cached optimized model computes what the built session computes, bit for bit", async () => {
  const dir = await Deno.makeTempDir();
  try {
    // The cache holds what ONNX Runtime optimized: sessions at level "basic" (the default, "disabled", has nothing).
    const basic = { sessionOptions: { graphOptimizationLevel: "basic" } };
    const want = await train({ ...basic, modelCache: false });
    const cache = { dir, minNodes: 0 };
    assert.deepEqual(await train({ modelCache: cache }), want, "level disabled: the same numbers");
    assert.deepEqual(await entries(dir), [], "level disabled: nothing to cache");
    assert.deepEqual(await train({ ...basic, modelCache: cache }), want, "cold cache (the optimized model is saved)");
    const files = await entries(dir);
    assert.equal(files.length, 1, `one entry, no temporary left: ${files}`);
    assert.match(files[0], /^[0-9a-f]{64}\.onnx$/);
    const path = `${dir}/${files[0]}`;
    const old = new Date(0);
    await Deno.utime(path, old, old);
    assert.deepEqual(await train({ ...basic, modelCache: cache }), want, "warm cache (the saved model is loaded)");
    assert.deepEqual(await entries(dir), files, "a hit writes nothing");
    assert.ok((await Deno.stat(path)).mtime!.getTime() > 0, "a hit marks the entry as recently used");
    // Another level is another model: its own entry (at "all" the saved graph may hold fused ops).
    const all = { modelCache: cache, sessionOptions: { graphOptimizationLevel: "all" } };
    assert.deepEqual(await train(all), await train({ ...all, modelCache: false }), "level all");
    assert.equal((await entries(dir)).length, 2);
    // An unreadable entry is rebuilt, and the run does not notice.
    await Deno.writeTextFile(path, "not a model");
    assert.deepEqual(await train({ ...basic, modelCache: cache }), want, "corrupt entry");
    assert.notEqual(await Deno.readTextFile(path).catch(() => ""), "not a model", "the entry was rebuilt");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("onnx model cache: models under minNodes and runs with the cache off write nothing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const basic = { graphOptimizationLevel: "basic" };
    await train({ modelCache: { dir, minNodes: 1e6 }, sessionOptions: basic });
    await train({ modelCache: false, sessionOptions: basic });
    assert.deepEqual(await entries(dir), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("onnx model cache: committing prunes the least recently used entries past maxEntries", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (const [i, key] of ["a", "b", "c"].entries()) {
      const tmp = await pendingPath(dir, key);
      await Deno.writeTextFile(tmp, key);
      const t = new Date(1000 * (i + 1));
      await commitModel(dir, key, tmp, 2);
      await Deno.utime(`${dir}/${key}.onnx`, t, t);
    }
    assert.deepEqual(await entries(dir), ["b.onnx", "c.onnx"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("onnx model cache: the directory follows WHETSTONE_CACHE; WHETSTONE_ONNX_CACHE=off turns it off", () => {
  const saved = { c: Deno.env.get("WHETSTONE_CACHE"), o: Deno.env.get("WHETSTONE_ONNX_CACHE") };
  const restore = (k: string, v: string | undefined) => v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
  try {
    Deno.env.delete("WHETSTONE_CACHE");
    Deno.env.delete("WHETSTONE_ONNX_CACHE");
    assert.match(modelCacheDir()!, /\/\.cache\/whetstone\/onnx$/);
    Deno.env.set("WHETSTONE_CACHE", "/tmp/wc/");
    assert.equal(modelCacheDir(), "/tmp/wc/onnx");
    Deno.env.set("WHETSTONE_ONNX_CACHE", "off");
    assert.equal(modelCacheDir(), undefined);
  } finally {
    restore("WHETSTONE_CACHE", saved.c);
    restore("WHETSTONE_ONNX_CACHE", saved.o);
  }
});
