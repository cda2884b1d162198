/**
 * The quantized matmul kernel under every config family (the software-adapter default, the GPU defaults, odd
 * blocks that fall back to the per-element path), forward and transposed, against the reference executor.
 */
import assert from "node:assert/strict";
import { hasGpu } from "../../gpu/device.ts";
import { Graph } from "../../graph/mod.ts";
import { matmulQ, qweightParams } from "../../graph/ops/matmul_q.ts";
import { ReferenceExecutor } from "../reference.ts";
import { WebGpuExecutor } from "../webgpu.ts";
import type { Executor } from "../executor.ts";
import { relErr } from "../testing/harness.ts";
import { quantizeWeight, quantParams, type QuantSpec } from "../../quant/weight.ts";
import { mulberry32 } from "../../util/rng.ts";
import { defaultMatmulQConfig, type MatmulQConfig } from "../../../kernels/matmul_q.ts";

const gpu = await hasGpu();

const CONFIGS: MatmulQConfig[] = [
  defaultMatmulQConfig("cpu", 64, 64),
  defaultMatmulQConfig("gpu", 64, 64),
  defaultMatmulQConfig("gpu", 1, 64),
  { wgX: 4, wgY: 2, tm: 3, tn: 4 }, // tn not a multiple of 8: the transposed 4-bit path decodes per element
  { wgX: 2, wgY: 4, tm: 5, tn: 16 }, // two word groups a thread, rows not a power of two
];

const SPECS: QuantSpec[] = [
  { kind: "nf4", blocksize: 64, doubleQuant: true },
  { kind: "fp4", blocksize: 32, doubleQuant: false },
  { kind: "int8", blocksize: 64, doubleQuant: false },
];

async function run(ex: Executor, spec: QuantSpec, M: number, N: number, K: number, trans: boolean) {
  const r = mulberry32(7);
  const w = Float32Array.from({ length: N * K }, () => r() * 2 - 1);
  for (const p of quantParams(quantizeWeight(w, [N, K], spec))) ex.setParam(`w${p.suffix}`, p.data, p.shape, p.dtype);
  const g = new Graph();
  const x = g.input("x", [M, trans ? N : K]);
  g.output("y", matmulQ(x, qweightParams(g, "w", spec, [N, K]), { trans }));
  const xs = Float32Array.from({ length: M * (trans ? N : K) }, () => r() * 2 - 1);
  return (await (await ex.compile(g)).run({ x: xs })).y;
}

Deno.test({
  name: "matmul_q kernel: every config family matches the reference, x·Wᵀ and x·W",
  ignore: !gpu,
  fn: async () => {
    const ex = await WebGpuExecutor.create();
    const ref = new ReferenceExecutor();
    const [M, N, K] = [37, 48, 64];
    for (const spec of SPECS) {
      for (const trans of [false, true]) {
        const want = await run(ref, spec, M, N, K, trans);
        for (const cfg of CONFIGS) {
          ex.ctx.tuned.set(`matmul_q:${M}x${trans ? K : N}`, cfg);
          const got = await run(ex, spec, M, N, K, trans);
          const err = relErr(got, want);
          assert.ok(err < 1e-5, `${spec.kind} trans=${trans} ${JSON.stringify(cfg)}: error ${err}`);
        }
      }
    }
    ex.dispose();
  },
});
