import assert from "node:assert/strict";
import { hasGpu, openGpu } from "../../gpu/device.ts";
import { gpuContext, matmulError, type MatmulProblem, matmulProblem, matmulRun, problemInfo } from "../tuner.ts";
import {
  ADAPTER_KIND_KEY,
  configLabel,
  defaultMatmulConfig,
  generateMatmul,
  type MatmulConfig,
  matmulShapeClass,
  pickMatmulConfig,
} from "../../../kernels/matmul.ts";
import type { KernelContext } from "../../../kernels/kernel.ts";

const gpu = await hasGpu();

const ctxOf = (kind: "cpu" | "gpu"): KernelContext => ({
  f16: false,
  maxWorkgroupsPerDim: 65535,
  maxWorkgroupStorage: 16384,
  maxInvocations: 256,
  tuned: new Map([[ADAPTER_KIND_KEY, kind]]),
});

Deno.test("matmul: shape classes", () => {
  const cls = (p: MatmulProblem) => matmulShapeClass(p.a, p.b, p.attrs);
  assert.equal(cls(matmulProblem(1024, 1024, 1024)), "matmul:l:nn:f32.f32:a4");
  assert.equal(cls(matmulProblem(1, 4096, 4096, { transB: true, dtypeB: "bf16" })), "matmul:rows:nt:f32.bf16:a4");
  assert.equal(cls(matmulProblem(33, 3, 65, { transA: true })), "matmul:cols:tn:f32.f32:a1");
  assert.equal(cls(matmulProblem(64, 64, 64, { batch: [4] })), "matmul:s:nn:f32.f32:a4");
  assert.equal(cls(matmulProblem(256, 256, 256)), "matmul:m:nn:f32.f32:a4");
});

Deno.test("matmul: the tuned entry wins, unusable entries fall back to the adapter default", () => {
  const p = matmulProblem(512, 512, 512);
  const ctx = ctxOf("cpu");
  const cls = matmulShapeClass(p.a, p.b, p.attrs);
  const dims = { batch: [], M: 512, N: 512, K: 512 };
  assert.deepEqual(pickMatmulConfig(p.a, p.b, p.attrs, ctx), defaultMatmulConfig("cpu", dims));
  const mine: MatmulConfig = { wgX: 4, wgY: 2, tm: 2, tn: 8, tk: 0, vec: true };
  ctx.tuned.set(cls, mine);
  assert.deepEqual(pickMatmulConfig(p.a, p.b, p.attrs, ctx), mine);
  ctx.tuned.set(cls, { ...mine, wgX: 1024 }); // more threads than the adapter allows
  assert.deepEqual(pickMatmulConfig(p.a, p.b, p.attrs, ctx), defaultMatmulConfig("cpu", dims));
  const g = ctxOf("gpu");
  assert.deepEqual(pickMatmulConfig(p.a, p.b, p.attrs, g), defaultMatmulConfig("gpu", dims));
});

Deno.test("matmul: cpu defaults shrink the block to the problem and keep several workgroups", () => {
  const d = (M: number, N: number, batch: number[] = []) => defaultMatmulConfig("cpu", { batch, M, N, K: 64 });
  assert.deepEqual([d(1024, 1024).tm, d(1024, 1024).tn], [32, 32]);
  assert.deepEqual([d(1, 4096).tm, d(1, 4096).tn], [1, 32]);
  assert.deepEqual([d(64, 64).tm, d(64, 64).tn], [16, 8]);
  assert.deepEqual([d(37, 3).wgX, d(37, 3).tn], [1, 3]);
  const small = d(16, 16, [2]);
  assert.ok(Math.ceil(16 / small.tm) * Math.ceil(16 / (8 * small.tn)) * 2 >= 4);
});

Deno.test("matmul: configs the adapter cannot run are refused with the reason", () => {
  const p = matmulProblem(8, 8, 8);
  const big: MatmulConfig = { wgX: 16, wgY: 16, tm: 4, tn: 4, tk: 64, vec: false };
  assert.throws(() => generateMatmul([p.a, p.b], problemInfo(p).out, p.attrs, big, ctxOf("gpu")), /workgroup memory/);
  const huge: MatmulConfig = { wgX: 8, wgY: 1, tm: 64, tn: 64, tk: 0, vec: true };
  assert.throws(() => generateMatmul([p.a, p.b], problemInfo(p).out, p.attrs, huge, ctxOf("cpu")), /register block/);
});

// Operands of different stored dtypes (the graph op takes one dtype; the kernel reads each its own).
const mixed: [string, MatmulProblem][] = [
  ["f32 · bf16ᵀ weight, aligned", matmulProblem(12, 20, 24, { transB: true, dtypeB: "bf16" })],
  ["f32 · bf16ᵀ weight, odd", matmulProblem(7, 9, 13, { transB: true, dtypeB: "bf16" })],
  [
    "f16ᵀ · f32, aligned, batched B broadcast",
    matmulProblem(16, 8, 12, { transA: true, dtypeA: "f16", batch: [3], bBatch: false }),
  ],
  [
    "bf16ᵀ · f16ᵀ, odd, batched",
    matmulProblem(5, 11, 6, { transA: true, transB: true, dtypeA: "bf16", dtypeB: "f16", batch: [2] }),
  ],
  ["f16 · f16, aligned", matmulProblem(20, 16, 8, { dtypeA: "f16", dtypeB: "f16" })],
];
const configs: MatmulConfig[] = [
  { wgX: 8, wgY: 1, tm: 8, tn: 8, tk: 0, vec: true },
  { wgX: 4, wgY: 2, tm: 4, tn: 4, tk: 0, vec: false },
  { wgX: 4, wgY: 4, tm: 4, tn: 4, tk: 4, vec: false },
];

Deno.test({
  name: "matmul: mixed stored dtypes match a CPU matmul for several configs",
  ignore: !gpu,
  fn: async (t) => {
    const g = await openGpu();
    const ctx = gpuContext(g);
    for (const [name, p] of mixed) {
      for (const cfg of configs) {
        await t.step(`${name}, ${configLabel(cfg)}`, async () => {
          const run = await matmulRun(g, p, generateMatmul([p.a, p.b], problemInfo(p).out, p.attrs, cfg, ctx));
          await run.run(1);
          const e = await matmulError(run, p);
          run.destroy();
          assert.ok(e <= 1e-5, `${problemInfo(p).label}: error ${e}`);
        });
      }
    }
  },
});
