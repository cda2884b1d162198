/**
 * Tensors over the storage binding limit (forced down to 64 KiB here) on the WebGPU executor: a weight read by
 * a matmul in segments gives the bits of the unforced run, both as Bᵀ (an LM head's logits) and as B (split
 * along K), in f32 and bf16, and so do elementwise ops, a reduction and casts over it; an operand no kernel reads in segments fails at compile time, naming it.
 */
import assert from "node:assert/strict";
import { add, cast, embedding, Graph, matmul, mul, sum } from "../graph/mod.ts";
import { hasGpu } from "../gpu/device.ts";
import { WebGpuExecutor, type WebGpuOptions } from "./webgpu.ts";
import type { HostArray } from "./executor.ts";
import type { DType } from "../graph/types.ts";
import { mulberry32 } from "../util/rng.ts";

const gpu = await hasGpu();
const FORCED: WebGpuOptions = { limits: { maxStorageBufferBindingSize: 64 * 1024, maxBufferSize: 256 * 1024 } };

function graph(dtype: DType) {
  const g = new Graph();
  const x = g.input("x", [2, 5, 64]);
  const head = g.param("head", [1024, 64], dtype); // 256 KiB in f32: 4 segments of 256 rows
  const x2 = g.input("x2", [6, 1024]);
  const w2 = g.param("w2", [1024, 40], dtype); // 160 KiB in f32: 3 segments along K
  const logits = matmul(x, head, { transB: true });
  g.output("logits", logits);
  g.output("rows", embedding(head, g.input("ids", [3, 7], "i32"))); // a gather across the segments
  g.output("y2", matmul(x2, w2));
  // Elementwise ops and a reduction over the segmented weight (WebGPU stores f32 results only); casts between
  // segmented tensors, and from a segmented one (128 KiB f32) to one that is not (64 KiB bf16); segmented outputs.
  if (dtype === "f32") {
    g.output("s", sum(mul(add(head, 1), head)));
    g.output("round", cast(cast(head, "bf16"), "f32"));
    g.output("half", cast(g.param("p", [512, 64]), "bf16"));
  } else g.output("wide", cast(head, "f32"));
  return g;
}

async function run(dtype: DType, opts: WebGpuOptions) {
  const ex = await WebGpuExecutor.create(opts);
  const r = mulberry32(5);
  const rand = (n: number) => Float32Array.from({ length: n }, () => r() - 0.5);
  ex.setParam("head", rand(1024 * 64), [1024, 64], dtype);
  ex.setParam("w2", rand(1024 * 40), [1024, 40], dtype);
  ex.setParam("p", rand(512 * 64), [512, 64]);
  const c = await ex.compile(graph(dtype));
  const ids = Int32Array.from({ length: 21 }, (_, i) => (i * 331 + 17) % 1024);
  const out = await c.run({ x: rand(2 * 5 * 64), x2: rand(6 * 1024), ids });
  const segments = ex.store.get("head")!.buffers.length;
  ex.dispose();
  return { out, segments };
}

function same(a: HostArray, b: HostArray, what: string) {
  assert.equal(a.length, b.length, what);
  for (let i = 0; i < a.length; i++) assert.equal(a[i], b[i], `${what}[${i}]: ${a[i]} vs ${b[i]}`);
}

for (const dtype of ["f32", "bf16"] as const) {
  Deno.test({
    name: `webgpu segments: ${dtype} weights over a 64 KiB binding give the unforced run's bits`,
    ignore: !gpu,
    fn: async () => {
      const free = await run(dtype, {});
      const forced = await run(dtype, FORCED);
      assert.equal(free.segments, 1);
      assert.equal(forced.segments, 4, "the head is kept in 4 segments of 256 rows (4 bytes an element)");
      assert.deepEqual(Object.keys(forced.out).sort(), Object.keys(free.out).sort());
      for (const k of Object.keys(free.out)) same(forced.out[k], free.out[k], k);
    },
  });
}

Deno.test({
  name: "webgpu segments: an operand no kernel reads in segments fails at compile time, naming it and the limit",
  ignore: !gpu,
  fn: async () => {
    const ex = await WebGpuExecutor.create(FORCED);
    ex.setParam("w", new Float32Array(128 * 16), [128, 16]);
    const g = new Graph();
    g.output("y", matmul(g.input("x", [256, 128]), g.param("w", [128, 16])));
    await assert.rejects(
      () => ex.compile(g),
      /node \d+ "matmul" binds input 0 "x" \(\[256, 128\] f32\) whole: 131072 bytes, over this adapter's storage binding limit of 65536 bytes/,
    );
    ex.dispose();
  },
});
