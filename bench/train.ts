/**
 * Bench "train": one optimizer step (forward, backward, clipping, AdamW) traced as the trainer traces it — LoRA
 * (r 8, all linears), freeze (last 2 layers) and full — of the ~20M Llama of bench/model.ts and of a ~5M one
 * (vocab 8192), batch 4 × 256: tokens/s on the WebGPU and ONNX Runtime executors, the planned peak arena,
 * dispatches (and, compiled only to count them, dispatches without fusion and batching) and submits a step; and, where a Python with torch and peft is configured (bench/torch_python.ts),
 * PyTorch + PEFT's step on the same batch in a separate process (bench/torch_train.py), with the ratios.
 *
 * The two sides alternate: for each model and method, ROUNDS rounds (`WHETSTONE_BENCH_ROUNDS`, default 3) of
 * Whetstone (each executor in turn) then PyTorch, each round 1 warm-up step and STEPS timed steps
 * (`WHETSTONE_BENCH_STEPS`, default 5), so a change in the machine's load touches both sides alike. A figure is the
 * median over every timed step with its spread (min, p25, p75, max); the ratio is the median of the rounds' ratios
 * (Whetstone's round median over PyTorch's adjacent round median), with their min and max.
 * @module
 */
import type { Bench, Measurement } from "./report.ts";
import { WebGpuExecutor } from "../engine/exec/webgpu.ts";
import { OnnxExecutor } from "../engine/exec/onnx/executor.ts";
import type { CompiledGraph, Executor } from "../engine/exec/executor.ts";
import { hasGpu } from "../engine/gpu/device.ts";
import { mulberry32 as rng } from "../engine/util/rng.ts";
import { decoderParams } from "../engine/nn/decoder.ts";
import type { DType, Graph } from "../engine/graph/mod.ts";
import { Model } from "../engine/nn/model.ts";
import { attachAdapter } from "../engine/nn/lora.ts";
import { freezeTrainable } from "../engine/train/freeze.ts";
import { adamwStepPlan, LOSS_SUM, traceTrainStep } from "../engine/train/step/lm.ts";
import { stateNames } from "../engine/train/step/optimizer.ts";
import { llama20m, LLAMA_20M, type LlamaShape } from "./model.ts";
import { rateSpread, spread, spreadFields } from "./stats.ts";
import { TorchWorker } from "./torch_worker.ts";
import { torchThreads } from "./torch_python.ts";
import { benchRounds, benchSteps } from "./rounds.ts";

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
  return (await prepareTrainTrace(ex, c, method))(c.batch, c.seq);
}

/**
 * {@link prepareTrainStep}, giving the step's trace at any batch and length (the params are set once, for all).
 */
export async function prepareTrainTrace(
  ex: Executor,
  c: LlamaShape,
  method: Method,
): Promise<(B: number, L: number) => Graph> {
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
  return (B, L) => traceTrainStep(model, adamwStepPlan(B, L, trainable));
}

/** One batch of a bench (B × L random ids, every token real): feeds of the trainer's step and the HF batch. */
export function benchBatch(c: { batch: number; seq: number; vocab: number }) {
  const { batch: B, seq: L } = c;
  const tokens = B * L;
  const r = rng(6);
  const ids = Int32Array.from({ length: tokens }, () => Math.floor(r() * c.vocab));
  // The trainer's labels are shifted (the loss at i is against label i + 1); transformers shifts them itself.
  const shifted = Int32Array.from({ length: tokens }, (_, i) => i % L === L - 1 ? -100 : Math.floor(r() * c.vocab));
  const rows = (a: Int32Array) => Array.from({ length: B }, (_, b) => [...a.subarray(b * L, (b + 1) * L)]);
  const hfLabels = rows(shifted).map((row) => [-100, ...row.slice(0, -1)]);
  const feeds = {
    ids_0: ids,
    positions_0: Int32Array.from({ length: tokens }, (_, i) => i % L),
    segments_0: new Int32Array(tokens).fill(1),
    labels_0: shifted,
    inv_targets: [1 / (B * (L - 1))],
    lr: [1e-4],
    step: [1],
  };
  return { feeds, hf: { ids: rows(ids), labels: hfLabels } };
}

/** One round of Whetstone's compiled step: 1 untimed run, then `steps` timed ones (seconds each). */
async function ourRound(step: CompiledGraph, feeds: Record<string, ArrayLike<number>>, steps: number) {
  await step.run(feeds, ["loss_sum"]);
  const ts: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    await step.run(feeds, ["loss_sum"]);
    ts.push((performance.now() - t0) / 1000);
  }
  return ts;
}

const median = (xs: number[]) => spread(xs).median;

/** The train bench. */
export const trainBench: Bench = {
  name: "train",
  description: "Llama 20M / 5M optimizer step (4 × 256 tokens): LoRA, freeze, full on WebGPU and ONNX Runtime " +
    "vs PyTorch + PEFT (CPU), alternating rounds",
  async *run(): AsyncIterable<Measurement> {
    // WHETSTONE_BENCH_EXECUTORS=onnx (a comma list) limits the executors measured.
    const only = Deno.env.get("WHETSTONE_BENCH_EXECUTORS")?.split(",");
    const executors: [string, () => Promise<Executor>][] = [["onnx", () => OnnxExecutor.create()]];
    if (await hasGpu()) executors.unshift(["webgpu", () => WebGpuExecutor.create()]);
    if (only) executors.splice(0, executors.length, ...executors.filter(([n]) => only.includes(n)));
    const rounds = benchRounds(), steps = benchSteps();
    for (const [model, c] of Object.entries(TRAIN_MODELS)) {
      const tokens = c.batch * c.seq;
      const { feeds, hf } = benchBatch(c);
      for (const method of ["lora", "freeze", "full"] as const) {
        const p = { model, batch: c.batch, seq: c.seq, method, rounds, steps };
        const ours = [];
        for (const [name, make] of executors) {
          const ex = await make();
          const graph = await prepareTrainStep(ex, c, method);
          ours.push({ name, ex, graph, step: await ex.compile(graph), rounds: [] as number[][] });
        }
        const torch = await TorchWorker.start("torch_train.py", { ...c, method, ...hf, threads: torchThreads() });
        const theirs: number[][] = [];
        const load = Deno.loadavg()[0];
        for (let r = 0; r < rounds; r++) {
          for (const o of ours) o.rounds.push(await ourRound(o.step, feeds, steps));
          if (torch instanceof TorchWorker) {
            theirs.push((await torch.request<{ seconds: number[] }>({ warmup: 1, steps })).seconds);
          }
        }
        if (torch instanceof TorchWorker) await torch.close();
        const load1 = Number(((load + Deno.loadavg()[0]) / 2).toFixed(2));
        for (const o of ours) {
          const s = rateSpread(tokens, o.rounds.flat());
          yield {
            bench: "train",
            ...p,
            executor: o.name,
            metric: "tokens_per_s",
            value: s.median,
            unit: "tok/s",
            ...spreadFields(s),
            load1,
          };
          if (o.name === "webgpu") {
            const stats = o.step.stats;
            yield { bench: "train", ...p, metric: "arena_peak", value: stats.arenaBytes / 2 ** 20, unit: "MiB" };
            yield { bench: "train", ...p, metric: "dispatches_per_step", value: stats.dispatches, unit: "count" };
            // The same step without fusion and batching (engine/exec/fuse.ts, batch.ts), compiled only to count.
            const plain = await o.ex.compile(o.graph, { fuse: false });
            yield {
              bench: "train",
              ...p,
              metric: "dispatches_per_step_unfused",
              value: plain.stats.dispatches,
              unit: "count",
            };
            yield { bench: "train", ...p, metric: "submits_per_step", value: stats.submits, unit: "count" };
          }
          o.ex.dispose();
        }
        if (!(torch instanceof TorchWorker)) {
          yield { bench: "train", ...p, metric: "torch_baseline", value: 0, unit: "absent", note: torch.absent };
          continue;
        }
        const t = rateSpread(tokens, theirs.flat());
        yield {
          bench: "train",
          ...p,
          executor: "pytorch",
          metric: "tokens_per_s",
          value: t.median,
          unit: "tok/s",
          ...spreadFields(t),
          load1,
          threads: Number(torch.ready.threads),
        };
        for (const o of ours) {
          // Paired rounds: Whetstone's round r against PyTorch's round r (run right after it).
          const ratios = spread(o.rounds.map((ts, i) => median(theirs[i]) / median(ts)));
          yield {
            bench: "train",
            ...p,
            executor: o.name,
            metric: "ratio_vs_pytorch",
            value: ratios.median,
            unit: "x",
            ...spreadFields(ratios),
          };
        }
      }
    }
  },
};
