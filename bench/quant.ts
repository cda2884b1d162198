/**
 * Bench "quant": quantized base weights (QLoRA). Bytes a parameter of each stored format, and the throughput of
 * `matmul_q` (the weight dequantized inside the kernel) against the f32 matmul on the same shapes, on the WebGPU and
 * ONNX Runtime executors: M = 256 rows (tokens) times a square weight D×D, forward `x·Wᵀ` and the input gradient
 * `x·W`. Each step replays a graph of 4 chained matmuls (one submit / session run) and reads back one value; the
 * best of several steps counts (other work on a shared machine only slows a run down).
 *
 * `WHETSTONE_BENCH_EXECUTORS=onnx` (or `webgpu`) limits the executors measured.
 * @module
 */
import type { Bench, Measurement } from "./report.ts";
import { Graph, matmul, slice, type Tensor } from "../engine/graph/mod.ts";
import { matmulQ, qweightParams } from "../engine/graph/ops/matmul_q.ts";
import { WebGpuExecutor } from "../engine/exec/webgpu.ts";
import { OnnxExecutor } from "../engine/exec/onnx/executor.ts";
import type { Executor } from "../engine/exec/executor.ts";
import { hasGpu } from "../engine/gpu/device.ts";
import { quantBytes, quantizeWeight, quantParams, type QuantSpec } from "../engine/quant/weight.ts";
import { mulberry32 } from "../engine/util/rng.ts";

const M = 256, CHAIN = 4;
const SIZES = [1024, 2048];
const FORMATS: [string, QuantSpec | undefined][] = [
  ["f32", undefined],
  ["nf4", { kind: "nf4", blocksize: 64, doubleQuant: false }],
  ["nf4+dq", { kind: "nf4", blocksize: 64, doubleQuant: true }],
  ["fp4", { kind: "fp4", blocksize: 64, doubleQuant: false }],
  ["int8", { kind: "int8", blocksize: 64, doubleQuant: false }],
];

/** Best and median ms of `n` steps of a compiled graph. */
async function stepMs(run: () => Promise<unknown>, n: number): Promise<{ best: number; median: number }> {
  await run();
  const ts: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await run();
    ts.push(performance.now() - t0);
  }
  ts.sort((a, b) => a - b);
  return { best: ts[0], median: ts[Math.floor(n / 2)] };
}

async function executors(): Promise<[string, () => Promise<Executor>][]> {
  const only = Deno.env.get("WHETSTONE_BENCH_EXECUTORS")?.split(",");
  const list: [string, () => Promise<Executor>][] = [];
  if (await hasGpu()) list.push(["webgpu", () => WebGpuExecutor.create()]);
  list.push(["onnx", () => OnnxExecutor.create()]);
  return list.filter(([n]) => !only || only.includes(n));
}

/** The quant bench. */
export const quantBench: Bench = {
  name: "quant",
  description: `quantized weights: bytes/param; matmul_q vs f32 matmul GFLOPS (${M}×D · D×D, D = ${SIZES.join(", ")})`,
  async *run(): AsyncIterable<Measurement> {
    for (const [format, spec] of FORMATS) {
      const D = 4096;
      const bytes = spec ? quantBytes(spec, [D, D]) : 4 * D * D;
      yield { bench: "quant", metric: "bytes/param", value: bytes / (D * D), unit: "B", format, weight: `${D}x${D}` };
    }
    const r = mulberry32(1);
    for (const [exName, make] of await executors()) {
      for (const D of SIZES) {
        const w = Float32Array.from({ length: D * D }, () => (r() + r() + r() - 1.5) * 0.05);
        const x = Float32Array.from({ length: M * D }, () => r() * 2 - 1);
        const base: Record<string, number> = {};
        for (const pass of ["x·Wᵀ", "x·W"] as const) {
          for (const [format, spec] of FORMATS) {
            const ex = await make();
            try {
              ex.setParam("x", x, [M, D]);
              if (spec) {
                for (const p of quantParams(quantizeWeight(w, [D, D], spec))) {
                  ex.setParam(`w${p.suffix}`, p.data, p.shape, p.dtype);
                }
              } else ex.setParam("w", w, [D, D]);
              const g = new Graph();
              let y: Tensor = g.param("x", [M, D]);
              const trans = pass === "x·W";
              const qw = spec && qweightParams(g, "w", spec, [D, D]);
              const wf = spec ? undefined : g.param("w", [D, D]);
              for (let i = 0; i < CHAIN; i++) y = qw ? matmulQ(y, qw, { trans }) : matmul(y, wf!, { transB: !trans });
              g.output("y", slice(slice(y, 0, 0, 1), 1, 0, 1));
              const step = await ex.compile(g);
              const t = await stepMs(() => step.run({}, ["y"]), D >= 2048 ? 3 : 5);
              const gflops = (2 * M * D * D * CHAIN) / t.best / 1e6;
              const params = { executor: exName, format, pass, M, D, ms: Math.round(t.best * 10) / 10 };
              yield { bench: "quant", metric: "gflops", value: gflops, unit: "GFLOPS", ...params };
              if (!spec) base[pass] = gflops;
              else yield { bench: "quant", metric: "vs f32", value: gflops / base[pass], unit: "x", ...params };
            } finally {
              ex.dispose();
            }
          }
        }
      }
    }
  },
};
