/**
 * Bench "onnx_compile": where the time of a new step graph goes on ONNX Runtime, for a LoRA step (r 8, all linears,
 * AdamW) of a random SmolLM2-135M-shaped Llama (hidden 576, 30 layers, 9 / 3 heads, intermediate 1536, vocab 49152,
 * tied embeddings), batch 4, at padded lengths 64, 128 and 256: lowering, `encodeModel`, the session's creation at
 * each graph optimization level, the first run and a warm run — and the loss of the first run, which must be the
 * same at every level (the trained state is restored between levels).
 *
 * `WHETSTONE_BENCH_LENGTHS` (e.g. `64`) and `WHETSTONE_BENCH_ORT_LEVELS` (e.g. `all,basic`) narrow the sweep.
 * @module
 */
import type { Bench, Measurement } from "./report.ts";
import { OnnxExecutor } from "../engine/exec/onnx/executor.ts";
import { lowerGraph } from "../engine/exec/onnx/lower.ts";
import { encodeModel } from "../engine/exec/onnx/proto.ts";
import type { HostArray } from "../engine/exec/executor.ts";
import { mulberry32 as rng } from "../engine/util/rng.ts";
import type { LlamaShape } from "./model.ts";
import { prepareTrainStep } from "./train.ts";

/** SmolLM2-135M's shape (batch 4; `seq` is set per measured length). */
export const SMOLLM2_135M: LlamaShape = {
  vocab: 49152,
  hidden: 576,
  intermediate: 1536,
  layers: 30,
  heads: 9,
  kvHeads: 3,
  batch: 4,
  seq: 256,
  tie: true,
};

const LEVELS = ["all", "extended", "basic", "disabled"];

function envList(name: string, fallback: string[]): string[] {
  return Deno.env.get(name)?.split(",").map((s) => s.trim()).filter(Boolean) ?? fallback;
}

/** Feeds of one LoRA step of batch B × L with random ids and labels. */
export function stepFeeds(B: number, L: number, vocab: number): Record<string, ArrayLike<number>> {
  const r = rng(6), tokens = B * L;
  return {
    ids_0: Int32Array.from({ length: tokens }, () => Math.floor(r() * vocab)),
    positions_0: Int32Array.from({ length: tokens }, (_, i) => i % L),
    segments_0: new Int32Array(tokens).fill(1),
    labels_0: Int32Array.from({ length: tokens }, () => Math.floor(r() * vocab)),
    inv_targets: [1 / tokens],
    lr: [1e-4],
    step: [1],
  };
}

const ms = (t0: number) => performance.now() - t0;

/** The onnx_compile bench. */
export const onnxCompileBench: Bench = {
  name: "onnx_compile",
  description: "ONNX Runtime: lowering, encoding, session creation per optimization level, first and warm step " +
    "of a SmolLM2-135M-shaped LoRA step (batch 4, L 64/128/256)",
  async *run(): AsyncIterable<Measurement> {
    const lengths = envList("WHETSTONE_BENCH_LENGTHS", ["64", "128", "256"]).map(Number);
    const levels = envList("WHETSTONE_BENCH_ORT_LEVELS", LEVELS);
    // The executor reads its session options at each compile: the bench changes the level between compiles.
    const sessionOptions: Record<string, unknown> = {};
    const ex = await OnnxExecutor.create({ sessionOptions });
    for (const L of lengths) {
      const c = { ...SMOLLM2_135M, seq: L };
      const p = { model: "smollm2-135M", method: "lora", batch: c.batch, seq: L };
      const graph = await prepareTrainStep(ex, c, "lora");
      let t0 = performance.now();
      const lowered = lowerGraph(graph, { hostScatter: true });
      const lowerMs = ms(t0);
      t0 = performance.now();
      const bytes = encodeModel(lowered.model);
      const encodeMs = ms(t0);
      yield { bench: "onnx_compile", ...p, metric: "lower_ms", value: lowerMs, unit: "ms" };
      yield { bench: "onnx_compile", ...p, metric: "encode_ms", value: encodeMs, unit: "ms" };
      yield { bench: "onnx_compile", ...p, metric: "model_bytes", value: bytes.byteLength / 2 ** 20, unit: "MiB" };
      yield { bench: "onnx_compile", ...p, metric: "nodes", value: lowered.model.graph.nodes.length, unit: "count" };
      // The step writes its states (LoRA weights, AdamW moments, the loss sum): restore them before each level.
      const saved = new Map<string, { data: HostArray; shape: readonly number[] }>();
      for (const s of lowered.states) saved.set(s.name, { data: await ex.getParam(s.name), shape: s.shape });
      const feeds = stepFeeds(c.batch, L, c.vocab);
      for (const level of levels) {
        for (const [name, s] of saved) ex.setParam(name, s.data, s.shape);
        sessionOptions.graphOptimizationLevel = level;
        const q = { ...p, level };
        t0 = performance.now();
        const step = await ex.compile(graph);
        const compileMs = ms(t0);
        t0 = performance.now();
        const first = await step.run(feeds, ["loss_sum"]);
        const firstMs = ms(t0);
        const warm: number[] = [];
        for (let i = 0; i < 2; i++) {
          t0 = performance.now();
          await step.run(feeds, ["loss_sum"]);
          warm.push(ms(t0));
        }
        yield { bench: "onnx_compile", ...q, metric: "compile_ms", value: compileMs, unit: "ms" };
        yield { bench: "onnx_compile", ...q, metric: "create_ms", value: compileMs - lowerMs - encodeMs, unit: "ms" };
        yield { bench: "onnx_compile", ...q, metric: "first_run_ms", value: firstMs, unit: "ms" };
        yield { bench: "onnx_compile", ...q, metric: "warm_run_ms", value: Math.min(...warm), unit: "ms" };
        yield { bench: "onnx_compile", ...q, metric: "first_loss_sum", value: first.loss_sum[0], unit: "nats" };
      }
    }
    ex.dispose();
  },
};
