/**
 * Bench "attention": fused causal attention on the WebGPU executor, forward and forward+backward, at
 * B = 1, Hq = 8, Hkv = 2, D = 64 and L = 128..1024. Each step replays a compiled graph (one submit)
 * and reads back only a tiny slice; steps are issued back to back and the last one awaited.
 *
 * GFLOPS are nominal: the forward counts 2 matmuls over the L(L+1)/2 visible pairs (4·D flops a
 * pair per head), the backward 2.5 times that (FlashAttention's convention), whatever is recomputed.
 * @module
 */
import type { Bench, Measurement } from "./report.ts";
import { attention, backward, Graph, mul, slice, type Tensor } from "../engine/graph/mod.ts";
import { WebGpuExecutor } from "../engine/exec/webgpu.ts";
import type { CompiledGraph } from "../engine/exec/executor.ts";
import { mulberry32 as rng } from "../engine/util/rng.ts";
import process from "node:process";

const B = 1, HQ = 8, HKV = 2, D = 64;

/**
 * Wall and process CPU milliseconds per step of `step`: n back-to-back runs, n chosen to fill about
 * `budgetMs`. On a software adapter the kernels run on this process's threads, so CPU time is the
 * steadier number when other processes share the cores.
 */
async function msPerStep(
  step: CompiledGraph,
  fetch: string[],
  budgetMs = 1500,
): Promise<{ wall: number; cpu: number }> {
  await step.run({}, fetch);
  let t0 = performance.now();
  await step.run({}, fetch);
  const one = performance.now() - t0;
  const n = Math.max(3, Math.min(50, Math.ceil(budgetMs / Math.max(one, 1e-3))));
  t0 = performance.now();
  const c0 = process.cpuUsage();
  const runs: Promise<unknown>[] = [];
  for (let i = 0; i < n; i++) runs.push(step.run({}, fetch));
  await Promise.all(runs);
  const c = process.cpuUsage(c0);
  return { wall: (performance.now() - t0) / n, cpu: (c.user + c.system) / 1000 / n };
}

/** The attention bench. */
export const attentionBench: Bench = {
  name: "attention",
  description: `fused causal attention (B=${B}, Hq=${HQ}, Hkv=${HKV}, D=${D}) on WebGPU: ms a step, nominal GFLOPS`,
  async *run(): AsyncIterable<Measurement> {
    const ex = await WebGpuExecutor.create();
    const r = rng(1);
    try {
      for (const L of [128, 256, 512, 1024]) {
        const shapes = { q: [B, L, HQ, D], k: [B, L, HKV, D], v: [B, L, HKV, D] };
        for (const [name, shape] of Object.entries(shapes)) {
          ex.setParam(name, Array.from({ length: shape.reduce((a, b) => a * b) }, () => r() * 2 - 1), shape);
        }
        const fwdFlops = 4 * B * HQ * D * (L * (L + 1)) / 2;
        const tiny = (t: Tensor) => slice(slice(t, 1, 0, 1), 2, 0, 1);
        for (const pass of ["forward", "forward+backward"] as const) {
          const g = new Graph();
          const [q, k, v] = (["q", "k", "v"] as const).map((n) => g.param(n, shapes[n]));
          const { o } = attention(q, k, v);
          const fetch: string[] = ["o"];
          g.output("o", tiny(o));
          if (pass !== "forward") {
            const seed = mul(o, 0.5); // some dO that is not constant
            const grads = backward(o, [q, k, v], seed);
            grads.forEach((d, i) => g.output(`d${"qkv"[i]}`, tiny(d)));
            fetch.push("dq", "dk", "dv");
          }
          const step = await ex.compile(g);
          const { wall, cpu } = await msPerStep(step, fetch);
          const flops = pass === "forward" ? fwdFlops : 3.5 * fwdFlops;
          const params = { pass, L, B, Hq: HQ, Hkv: HKV, D, causal: true };
          yield { bench: "attention", metric: "time", value: wall, unit: "ms", ...params };
          yield { bench: "attention", metric: "throughput", value: flops / wall / 1e6, unit: "GFLOPS", ...params };
          yield { bench: "attention", metric: "process cpu time", value: cpu, unit: "ms", ...params };
        }
      }
    } finally {
      ex.dispose();
    }
  },
};
