/**
 * Bench "train": one optimizer step (forward, backward, clipping, AdamW) of the ~20M Llama of bench/model.ts
 * (batch 4 × 256) traced as the trainer traces it — LoRA (r 8, all linears), freeze (last 2 layers) and full —
 * tokens/s on WebGPU, the planned peak arena, dispatches and submits a step; and, when the project's `.venv`
 * has torch and peft, PyTorch + PEFT's step in the same run, with the ratio.
 * @module
 */
import type { Bench, Measurement } from "./report.ts";
import { WebGpuExecutor } from "../engine/exec/webgpu.ts";
import { mulberry32 as rng } from "../engine/util/rng.ts";
import { decoderParams } from "../engine/nn/decoder.ts";
import { type DType } from "../engine/graph/mod.ts";
import { Model } from "../engine/nn/model.ts";
import { attachAdapter } from "../engine/nn/lora.ts";
import { freezeTrainable } from "../engine/train/freeze.ts";
import { LOSS_SUM, stateNames, traceTrainStep } from "../engine/train/step.ts";
import { llama20m, LLAMA_20M, venvBaseline } from "./model.ts";

/** The train bench. */
export const trainBench: Bench = {
  name: "train",
  description: "~20M Llama optimizer step (4 × 256 tokens): LoRA, freeze, full on WebGPU vs PyTorch + PEFT (CPU)",
  async *run(): AsyncIterable<Measurement> {
    const c = LLAMA_20M;
    const cfg = llama20m();
    const { batch: B, seq: L } = c;
    const tokens = B * L;
    const r = rng(5);
    const feeds = {
      ids_0: Int32Array.from({ length: tokens }, () => Math.floor(r() * c.vocab)),
      positions_0: Int32Array.from({ length: tokens }, (_, i) => i % L),
      segments_0: new Int32Array(tokens).fill(1),
      labels_0: Int32Array.from({ length: tokens }, () => Math.floor(r() * c.vocab)),
      inv_targets: [1 / tokens],
      lr: [1e-4],
      step: [1],
    };
    const results: Record<string, number> = {};
    for (const method of ["lora", "freeze", "full"] as const) {
      const ex = await WebGpuExecutor.create();
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
      const g = traceTrainStep(model, {
        G: 1,
        B,
        L,
        trainable,
        optim: "adamw",
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weightDecay: 0,
        maxGradNorm: 1,
        loraplusRatio: 0,
        dropout: false,
      });
      const step = await ex.compile(g);
      await step.run(feeds, ["loss_sum"]);
      const reps = 3;
      const t0 = performance.now();
      const runs: Promise<unknown>[] = [];
      for (let i = 0; i < reps; i++) runs.push(step.run(feeds, i === reps - 1 ? ["loss_sum"] : []));
      await Promise.all(runs);
      const ms = (performance.now() - t0) / reps;
      results[method] = tokens / (ms / 1000);
      const p = { model: "llama-20M", batch: B, seq: L, method };
      yield { bench: "train", ...p, executor: "webgpu", metric: "tokens_per_s", value: results[method], unit: "tok/s" };
      yield { bench: "train", ...p, metric: "arena_peak", value: step.stats.arenaBytes / 2 ** 20, unit: "MiB" };
      yield { bench: "train", ...p, metric: "dispatches_per_step", value: step.stats.dispatches, unit: "count" };
      yield { bench: "train", ...p, metric: "submits_per_step", value: step.stats.submits, unit: "count" };
      ex.dispose();
    }
    const torch = await venvBaseline<{ lora_s: number; full_s: number }>("torch_train.py");
    if (!torch) {
      yield { bench: "train", metric: "torch_baseline", value: 0, unit: "absent", note: "no .venv with torch+peft" };
      return;
    }
    for (const [method, secs] of [["lora", torch.lora_s], ["full", torch.full_s]] as const) {
      const tps = tokens / secs;
      const p = { model: "llama-20M", batch: B, seq: L, method };
      yield { bench: "train", ...p, executor: "pytorch", metric: "tokens_per_s", value: tps, unit: "tok/s" };
      yield { bench: "train", ...p, metric: "ratio_vs_pytorch", value: results[method] / tps, unit: "x" };
    }
  },
};
