/**
 * Bench "decode": KV-cached greedy decode tokens/s on the WebGPU and ONNX Runtime executors for batch 1 and 4
 * (`generateBatch`, one decode graph per step for all rows), on the built-in tiny model (fixtures/tiny/model)
 * and on the ~20M Llama of bench/model.ts with random weights. Counts only decode steps: the clock starts when
 * the prefill's token arrives; every row decodes all `maxNewTokens` (no stop ids). A first run plans the graphs.
 * @module
 */
import type { Bench, Measurement } from "./report.ts";
import { WebGpuExecutor } from "../engine/exec/webgpu.ts";
import { OnnxExecutor } from "../engine/exec/onnx/executor.ts";
import type { Executor } from "../engine/exec/executor.ts";
import { mulberry32 as rng } from "../engine/util/rng.ts";
import { loadModel, Model } from "../engine/nn/model.ts";
import { decoderParams } from "../engine/nn/decoder.ts";
import type { DType } from "../engine/graph/types.ts";
import { llama20m } from "./model.ts";

const PROMPT = 16, NEW_TOKENS = 32, BATCHES = [1, 4];

/** Decode tokens/s of `model` for a batch of B prompts of {@link PROMPT} tokens (median of `reps` runs). */
async function decodeRate(model: Model, B: number, reps = 3): Promise<{ tokPerS: number; msPerStep: number }> {
  const r = rng(11 + B);
  const prompts = Array.from(
    { length: B },
    () => Array.from({ length: PROMPT }, () => Math.floor(r() * model.config.vocab)),
  );
  const once = async () => {
    let t0 = 0, t1 = 0, steps = 0;
    await model.generateBatch(prompts, {
      maxNewTokens: NEW_TOKENS,
      onToken: (_, row) => {
        if (row) return;
        if (!steps++) t0 = performance.now();
        t1 = performance.now();
      },
    });
    return (t1 - t0) / (steps - 1);
  };
  await once();
  const ms: number[] = [];
  for (let i = 0; i < reps; i++) ms.push(await once());
  const msPerStep = ms.sort((a, b) => a - b)[Math.floor(reps / 2)];
  return { tokPerS: (B * 1000) / msPerStep, msPerStep };
}

/** The decode bench. */
export const decodeBench: Bench = {
  name: "decode",
  description: "KV-cached greedy decode tokens/s, batch 1 and 4, tiny and ~20M Llama (random weights), WebGPU and ONNX",
  async *run(): AsyncIterable<Measurement> {
    const executors: [string, () => Promise<Executor>][] = [
      ["webgpu", () => WebGpuExecutor.create()],
      ["onnx", () => OnnxExecutor.create()],
    ];
    for (const [name, make] of executors) {
      const ex = await make();
      const tiny = await loadModel(new URL("../fixtures/tiny/model", import.meta.url).pathname, { executor: ex });
      const cfg = llama20m();
      const params = new Map<string, { shape: number[]; dtype: DType }>();
      const r = rng(3);
      for (const [name, shape] of decoderParams(cfg)) {
        const n = shape.reduce((a, b) => a * b, 1);
        ex.setParam(`l20m.${name}`, Float32Array.from({ length: n }, () => (r() - 0.5) * 0.04), shape);
        params.set(name, { shape, dtype: "f32" });
      }
      const big = new Model(cfg, ex, params, "l20m.");
      for (const [label, model] of [["tiny", tiny], ["llama-20M", big]] as const) {
        for (const batch of BATCHES) {
          const { tokPerS, msPerStep } = await decodeRate(model, batch);
          const p = { bench: "decode", model: label, batch, prompt: PROMPT, new_tokens: NEW_TOKENS, executor: name };
          yield { ...p, metric: "tokens_per_s", value: tokPerS, unit: "tok/s" };
          yield { ...p, metric: "ms_per_step", value: msPerStep, unit: "ms" };
        }
      }
      ex.dispose();
    }
  },
};
