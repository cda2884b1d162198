/**
 * Bench "train": one optimizer step (forward, backward, clipping, AdamW) traced as the trainer traces it — LoRA
 * (r 8, all linears), freeze (last 2 layers) and full — of the ~20M Llama of bench/model.ts and of a ~5M one
 * (vocab 8192), batch 4 × 256: tokens/s on the WebGPU and ONNX Runtime executors, the planned peak arena,
 * dispatches and submits a step; and, when the project's `.venv` has torch and peft, PyTorch + PEFT's step in the
 * same run, with the ratios. Each figure is the median of 3 timed steps after 2 warm-up steps.
 * @module
 */
import type { Bench, Measurement } from "./report.ts";
import { WebGpuExecutor } from "../engine/exec/webgpu.ts";
import { OnnxExecutor } from "../engine/exec/onnx/executor.ts";
import type { Executor } from "../engine/exec/executor.ts";
import { hasGpu } from "../engine/gpu/device.ts";
import { mulberry32 as rng } from "../engine/util/rng.ts";
import { decoderParams } from "../engine/nn/decoder.ts";
import type { DType, Graph } from "../engine/graph/mod.ts";
import { Model } from "../engine/nn/model.ts";
import { attachAdapter } from "../engine/nn/lora.ts";
import { freezeTrainable } from "../engine/train/freeze.ts";
import { adamwStepPlan, LOSS_SUM, traceTrainStep } from "../engine/train/step/lm.ts";
import { stateNames } from "../engine/train/step/optimizer.ts";
import { llama20m, LLAMA_20M, type LlamaShape, venvBaseline } from "./model.ts";

/** The models of the bench: the 20M Llama and a 5M one with a smaller vocabulary. */
export const TRAIN_MODELS = {
  "llama-20M": LLAMA_20M,
  "llama-5M": { ...LLAMA_20M, vocab: 8192 },
};

/** What trains in a bench step. */
export type Method = "lora" | "freeze" | "full";

/**
 * Stores random f32 weights of config `c` on `ex` (with a LoRA adapter r 8 on every linear, or the last 2 layers
 * trainable for freeze), zero AdamW states for what trains, and traces the trainer's step: batch c.batch × c.seq.
 */
export async function prepareTrainStep(ex: Executor, c: LlamaShape, method: Method): Promise<Graph> {
  const cfg = llama20m(c);
  const r = rng(5);
  const params = new Map<string, { shape: number[]; dtype: DType }>();
  for (const [name, shape] of decoderParams(cfg)) {
    const n = shape.reduce((a, b) => a * b, 1);
    ex.setParam(name, Float32Array.from({ length: n }, () => (r() - 0.5) * 0.04), shape);
    params.set(name, { shape, dtype: "f32" });
  }
  const model = new Model(cfg, ex, params);
  let trainable: string[];
  if (method === "lora") {
    trainable = [...(await attachAdapter(model, { r: 8, alpha: 16, targets: ["all"] })).params.keys()];
  } else if (method === "full") trainable = [...params.keys()];
  else trainable = freezeTrainable([...params.keys()], cfg, { layers: 2, modules: "all" });
  for (const name of trainable) {
    const shape = (params.get(name) ?? model.adapter!.params.get(name)!).shape;
    const zeros = new Float32Array(shape.reduce((a, b) => a * b, 1));
    ex.setParam(stateNames(name).m, zeros, shape);
    ex.setParam(stateNames(name).v, zeros, shape);
  }
  ex.setParam(LOSS_SUM, [0], [1]);
  return traceTrainStep(model, adamwStepPlan(c.batch, c.seq, trainable));
}

/** Median seconds of one step on `ex` for `method` on config `c`. */
async function stepSeconds(ex: Executor, c: typeof LLAMA_20M, method: Method) {
  const { batch: B, seq: L } = c;
  const tokens = B * L;
  const r = rng(6);
  const feeds = {
    ids_0: Int32Array.from({ length: tokens }, () => Math.floor(r() * c.vocab)),
    positions_0: Int32Array.from({ length: tokens }, (_, i) => i % L),
    segments_0: new Int32Array(tokens).fill(1),
    labels_0: Int32Array.from({ length: tokens }, () => Math.floor(r() * c.vocab)),
    inv_targets: [1 / tokens],
    lr: [1e-4],
    step: [1],
  };
  const step = await ex.compile(await prepareTrainStep(ex, c, method));
  for (let i = 0; i < 2; i++) await step.run(feeds, ["loss_sum"]);
  const ts: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    await step.run(feeds, ["loss_sum"]);
    ts.push((performance.now() - t0) / 1000);
  }
  ts.sort((a, b) => a - b);
  return { seconds: ts[1], stats: step.stats };
}

/** The train bench. */
export const trainBench: Bench = {
  name: "train",
  description: "Llama 20M / 5M optimizer step (4 × 256 tokens): LoRA, freeze, full on WebGPU and ONNX Runtime " +
    "vs PyTorch + PEFT (CPU)",
  async *run(): AsyncIterable<Measurement> {
    // WHETSTONE_BENCH_EXECUTORS=onnx (a comma list) limits the executors measured.
    const only = Deno.env.get("WHETSTONE_BENCH_EXECUTORS")?.split(",");
    const executors: [string, () => Promise<Executor>][] = [["onnx", () => OnnxExecutor.create()]];
    if (await hasGpu()) executors.unshift(["webgpu", () => WebGpuExecutor.create()]);
    if (only) executors.splice(0, executors.length, ...executors.filter(([n]) => only.includes(n)));
    for (const [model, c] of Object.entries(TRAIN_MODELS)) {
      const tokens = c.batch * c.seq;
      const p = { model, batch: c.batch, seq: c.seq };
      const ours: Record<string, number> = {};
      for (const method of ["lora", "freeze", "full"] as const) {
        for (const [name, make] of executors) {
          const ex = await make();
          const { seconds, stats } = await stepSeconds(ex, c, method);
          ex.dispose();
          const tps = tokens / seconds;
          ours[`${name}:${method}`] = tps;
          yield { bench: "train", ...p, method, executor: name, metric: "tokens_per_s", value: tps, unit: "tok/s" };
          if (name === "webgpu") {
            yield {
              bench: "train",
              ...p,
              method,
              metric: "arena_peak",
              value: stats.arenaBytes / 2 ** 20,
              unit: "MiB",
            };
            yield {
              bench: "train",
              ...p,
              method,
              metric: "dispatches_per_step",
              value: stats.dispatches,
              unit: "count",
            };
            yield { bench: "train", ...p, method, metric: "submits_per_step", value: stats.submits, unit: "count" };
          }
        }
      }
      const torch = await venvBaseline<{ lora_s: number; full_s: number }>("torch_train.py", c);
      if (!torch) {
        yield {
          bench: "train",
          ...p,
          metric: "torch_baseline",
          value: 0,
          unit: "absent",
          note: "no .venv with torch+peft",
        };
        continue;
      }
      for (const [method, secs] of [["lora", torch.lora_s], ["full", torch.full_s]] as const) {
        const tps = tokens / secs;
        yield { bench: "train", ...p, method, executor: "pytorch", metric: "tokens_per_s", value: tps, unit: "tok/s" };
        for (const [name] of executors) {
          const v = ours[`${name}:${method}`] / tps;
          yield { bench: "train", ...p, method, executor: name, metric: "ratio_vs_pytorch", value: v, unit: "x" };
        }
      }
    }
  },
};
