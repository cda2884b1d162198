/**
 * Regressions of shader size on software adapters: lavapipe compiles a kernel with LLVM at its first dispatch, in time
 * that grows faster than the kernel's code. A fused epilogue inlined once per accumulator of a large register block,
 * and large matmul kernels merged into one dispatch, made the first step of a 256-wide Llama compile for minutes
 * (`deno task bench model` seemed to hang). These tests force the software adapters' 32×32 register block on small
 * problems, so they reach the same code paths in a few seconds.
 */
import assert from "node:assert/strict";
import { add, Graph, matmul, mul, silu } from "../../graph/mod.ts";
import { hasGpu } from "../../gpu/device.ts";
import { WebGpuExecutor } from "../webgpu.ts";
import { batchLaunches, MAX_BATCH_CODE, type PendingLaunch } from "../batch.ts";
import { generateMatmul, type MatmulConfig, matmulShapeClass } from "../../../kernels/matmul.ts";
import { softwareKernelContext } from "../testing/kernel_context.ts";

const BIG: MatmulConfig = { wgX: 8, wgY: 1, tm: 32, tn: 32, tk: 0, vec: true };
const NN = { transA: false, transB: false };

/** Call sites of the fused epilogue function in a kernel (its declaration excluded). */
const epilogueCalls = (code: string) => (code.match(/(?<!fn )\bepi\(/g) ?? []).length;

Deno.test("compile size: large matmul kernels are not merged into one dispatch", () => {
  const ctx = softwareKernelContext();
  const t = (shape: number[]) => ({ shape, dtype: "f32" as const });
  const [l] = generateMatmul([t([6, 12]), t([12, 20])], t([6, 20]), NN, BIG, ctx).launches;
  assert.ok(l.code.length > MAX_BATCH_CODE, `a 32×32 block is ${l.code.length} characters`);
  const buf = {};
  const r = (offset: number, size: number) => ({ buffer: buf, offset, size });
  // Two independent products (same A and B, different C): mergeable but for their size.
  const launch = (c: number): PendingLaunch<object> => ({
    code: l.code,
    workgroups: l.workgroups,
    ranges: [r(0, 288), r(512, 960), r(2048 + c * 512, 480)],
    written: [false, false, true],
  });
  const lim = { maxBindings: 16, maxWorkgroupStorage: 16384, maxWorkgroupsPerDim: 65535 };
  assert.equal(batchLaunches([launch(0), launch(1)], lim).length, 2);
  assert.equal(batchLaunches([launch(0), launch(1)], { ...lim, maxCode: 2 * l.code.length }).length, 1);
});

Deno.test({
  name: "compile size: a fused epilogue of a large register block is emitted once, and computes right",
  ignore: !(await hasGpu()),
  fn: async () => {
    const ex = await WebGpuExecutor.create();
    const M = 6, K = 12, N = 20;
    const a = { shape: [M, K], dtype: "f32" as const }, b = { shape: [K, N], dtype: "f32" as const };
    ex.ctx.tuned.set(matmulShapeClass(a, b, NN), BIG);
    const codes: string[] = [];
    const pipeline = ex.pipeline.bind(ex);
    ex.pipeline = (code, entry) => (codes.push(code), pipeline(code, entry));
    const g = new Graph();
    const x = g.input("x", [M, K], "f32"), w = g.input("w", [K, N], "f32"), res = g.input("r", [M, N], "f32");
    const y = matmul(x, w);
    g.output("sum", add(y, res));
    g.output("gated", mul(silu(add(y, res)), res));
    const step = await ex.compile(g);
    assert.ok(codes.some((c) => c.includes("fn epi(")), "the epilogue is fused");
    for (const c of codes) assert.ok(epilogueCalls(c) <= 1, `a kernel calls its epilogue ${epilogueCalls(c)} times`);
    const xs = Float32Array.from({ length: M * K }, (_, i) => Math.sin(i) / 2);
    const ws = Float32Array.from({ length: K * N }, (_, i) => Math.cos(i * 0.7) / 3);
    const rs = Float32Array.from({ length: M * N }, (_, i) => (i % 7) / 7 - 0.4);
    const got = await step.run({ x: xs, w: ws, r: rs });
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += xs[i * K + k] * ws[k * N + j];
        const v = s + rs[i * N + j], gated = (v / (1 + Math.exp(-v))) * rs[i * N + j];
        assert.ok(Math.abs(got.sum[i * N + j] - v) < 1e-5, `sum[${i}, ${j}]: ${got.sum[i * N + j]} vs ${v}`);
        assert.ok(Math.abs(got.gated[i * N + j] - gated) < 1e-5, `gated[${i}, ${j}]`);
      }
    }
    ex.dispose();
  },
});
