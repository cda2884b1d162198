/**
 * Bench "moe": one mixture-of-experts layer's routed experts (router softmax, top-k, SwiGLU experts), forward and
 * forward+backward tokens/s, sparse dispatch (engine/nn/moe.ts `routedExperts`) beside the dense one it replaced
 * (engine/nn/moe_dense.ts), on WebGPU (when there is an adapter) and ONNX Runtime. The shape keeps Qwen3-30B-A3B's
 * ratios scaled down: 128 experts, 8 per token, expert intermediate 3/8 of hidden. `WHETSTONE_BENCH_MOE` overrides
 * the sizes as JSON (e.g. `{"tokens":128,"hidden":64}`; `"executors": ["onnx"]` picks executors; `"family": "gpt_oss"`
 * benches gpt_oss's block instead: router with bias, fused interleaved gate_up [E, H, 2I] and down [E, I, H] with their
 * biases, clamped SwiGLU (engine/nn/moe_gpt_oss.ts `gptOssExperts` beside moe_dense.ts `denseGptOssExperts`)).
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
import { denseExperts, denseGptOssExperts } from "../engine/nn/moe_dense.ts";
import { gptOssExperts, gptOssMoeConfig, traceGptOssMoe } from "../engine/nn/moe_gpt_oss.ts";

/** The default layer: Qwen3-30B-A3B's expert count, top-k and intermediate : hidden ratio, at a small hidden size. */
export const MOE_LAYER = { tokens: 512, hidden: 128, intermediate: 48, experts: 128, topK: 8, family: "qwen3_moe" };

/** The layer's parameters: name, shape and init scale (gpt_oss: its checkpoint names and fused layout). */
function layerParams(c: typeof MOE_LAYER): [string, number[], number][] {
  const { hidden: H, intermediate: I, experts: E } = c;
  if (c.family !== "gpt_oss") {
    return [["router", [E, H], 0.5], ["gate", [E, I, H], 0.1], ["up", [E, I, H], 0.1], ["down", [E, H, I], 0.1]];
  }
  const b = "model.layers.0.mlp";
  return [
    [`${b}.router.weight`, [E, H], 0.5],
    [`${b}.router.bias`, [E], 0.1],
    [`${b}.experts.gate_up_proj`, [E, H, 2 * I], 0.1],
    [`${b}.experts.gate_up_proj_bias`, [E, 2 * I], 0.1],
    [`${b}.experts.down_proj`, [E, I, H], 0.1],
    [`${b}.experts.down_proj_bias`, [E, H], 0.1],
  ];
}

function layerGraph(c: typeof MOE_LAYER, sparse: boolean, train: boolean): Graph {
  const { tokens: N, hidden: H, intermediate: I, experts: E, topK: k } = c;
  if (c.family === "gpt_oss") {
    const g = new Graph();
    const x = g.input("x", [N, H]);
    const ws = new Map(layerParams(c).map(([n, s]) => [n, g.param(n, s)]));
    const m = gptOssMoeConfig({ num_local_experts: E, num_experts_per_tok: k, intermediate_size: I }, 1);
    const experts = sparse ? gptOssExperts : denseGptOssExperts;
    const y = traceGptOssMoe(m, 0, x, (n) => ws.get(n)!, undefined, experts).out;
    const loss = sum(mul(y, y));
    g.output("loss", loss);
    if (train) backward(loss, [...ws.values()]).forEach((d, i) => g.output(`d${i}`, d));
    return g;
  }
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
    const { tokens: N, hidden: H } = c;
    const params = layerParams(c).map(([n, s, scale]) => [n, rand(s.reduce((a, b) => a * b, 1), scale), s] as const);
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
