/**
 * Bench "moe": one mixture-of-experts layer's routed experts (router softmax, top-k, SwiGLU experts), forward and
 * forward+backward tokens/s, sparse dispatch (engine/nn/moe.ts `routedExperts`) beside the dense one it replaced
 * (engine/nn/moe_dense.ts), on WebGPU (when there is an adapter) and ONNX Runtime. The shape keeps Qwen3-30B-A3B's
 * ratios scaled down: 128 experts, 8 per token, expert intermediate 3/8 of hidden. `WHETSTONE_BENCH_MOE` overrides
 * the sizes as JSON (e.g. `{"tokens":128,"hidden":64}`; `"executors": ["onnx"]` picks executors).
 * @module
 */
import type { Bench, Measurement } from "./report.ts";
import { backward, Graph, matmul, mul, softmax, sum } from "../engine/graph/mod.ts";
import { WebGpuExecutor } from "../engine/exec/webgpu.ts";
import { OnnxExecutor } from "../engine/exec/onnx/executor.ts";
import type { Executor } from "../engine/exec/executor.ts";
import { hasGpu } from "../engine/gpu/device.ts";
import { mulberry32 } from "../engine/util/rng.ts";
import { routedExperts, topkSelect } from "../engine/nn/moe.ts";
import { denseExperts } from "../engine/nn/moe_dense.ts";

/** The default layer: Qwen3-30B-A3B's expert count, top-k and intermediate : hidden ratio, at a small hidden size. */
export const MOE_LAYER = { tokens: 512, hidden: 128, intermediate: 48, experts: 128, topK: 8 };

function layerGraph(c: typeof MOE_LAYER, sparse: boolean, train: boolean): Graph {
  const { tokens: N, hidden: H, intermediate: I, experts: E, topK: k } = c;
  const g = new Graph();
  const x = g.input("x", [N, H]);
  const ws = [
    g.param("router", [E, H]),
    g.param("gate", [E, I, H]),
    g.param("up", [E, I, H]),
    g.param("down", [E, H, I]),
  ];
  const [router, gate, up, down] = ws;
  const probs = softmax(matmul(x, router, { transB: true }), -1);
  const { idx, weight } = topkSelect(probs, probs, k);
  const y = sparse ? routedExperts(x, idx, weight, { gate, up, down }) : denseExperts(x, idx, weight, gate, up, down);
  const loss = sum(mul(y, y));
  g.output("loss", loss);
  if (train) backward(loss, ws).forEach((d, i) => g.output(`d${i}`, d));
  return g;
}

/** The MoE layer bench. */
export const moeBench: Bench = {
  name: "moe",
  description: "MoE layer (128 experts, top-8) tokens/s: sparse vs dense expert dispatch on WebGPU and ONNX Runtime",
  async *run(): AsyncIterable<Measurement> {
    const { executors: only, ...c } = { ...MOE_LAYER, ...JSON.parse(Deno.env.get("WHETSTONE_BENCH_MOE") ?? "{}") };
    const r = mulberry32(5);
    const rand = (n: number, s: number) => Float32Array.from({ length: n }, () => (r() * 2 - 1) * s);
    const { tokens: N, hidden: H, intermediate: I, experts: E } = c;
    const params: [string, Float32Array, number[]][] = [
      ["router", rand(E * H, 0.5), [E, H]],
      ["gate", rand(E * I * H, 0.1), [E, I, H]],
      ["up", rand(E * I * H, 0.1), [E, I, H]],
      ["down", rand(E * H * I, 0.1), [E, H, I]],
    ];
    const feeds = { x: rand(N * H, 1) };
    const makers: [string, () => Promise<Executor>][] = [];
    if (await hasGpu()) makers.push(["webgpu", () => WebGpuExecutor.create()]);
    makers.push(["onnx", () => OnnxExecutor.create()]);
    for (const [exName, make] of makers.filter(([n]) => !only || only.includes(n))) {
      for (const pass of ["forward", "forward+backward"] as const) {
        for (const dispatch of ["dense", "sparse"] as const) {
          const ex = await make();
          for (const [n, d, s] of params) ex.setParam(n, d, s);
          const step = await ex.compile(layerGraph(c, dispatch === "sparse", pass !== "forward"));
          await step.run(feeds);
          const reps = 3, t0 = performance.now();
          for (let i = 0; i < reps; i++) await step.run(feeds);
          const ms = (performance.now() - t0) / reps;
          ex.dispose();
          yield {
            bench: "moe",
            ...c,
            executor: exName,
            pass,
            dispatch,
            metric: "tokens_per_s",
            value: N / (ms / 1000),
            unit: "tok/s",
          };
        }
      }
    }
  },
};
