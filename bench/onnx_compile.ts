/**
 * Bench "onnx_compile": where the time of a new step graph goes on ONNX Runtime, for a LoRA step (r 8, all linears,
 * AdamW) of a random SmolLM2-135M-shaped Llama (hidden 576, 30 layers, 9 / 3 heads, intermediate 1536, vocab 49152,
 * tied embeddings), batch 4, at padded lengths 64, 128 and 256: lowering, `encodeModel`, the session's creation at
 * each graph optimization level, at the executor's former defaults (level "all", ONNX Runtime's memory pattern on)
 * and from the on-disk model cache (cold: optimized and saved; hit: loaded), the first, second and a warm run — and
 * the loss of the first run, which must be the same everywhere (the trained state is restored before each).
 * `create_ms` is the compile time less the lowering and encoding measured once. Level `symbolic`: the lengths in order
 * on one executor with symbolic sizes (exec/onnx/symbolic.ts): one session for all, its compile time at each length
 * (the first pays the probe traces and the session), the runs, the loss and the sessions created so far.
 *
 * `WHETSTONE_BENCH_LENGTHS` (e.g. `64`) and `WHETSTONE_BENCH_ORT_LEVELS` (e.g. `all,basic`; also `all+mem_pattern`,
 * `cache-cold`, `cache-hit`, `symbolic`; default every one) narrow the sweep.
 * @module
 */
import type { Bench, Measurement } from "./report.ts";
import { OnnxExecutor } from "../engine/exec/onnx/executor.ts";
import { lowerGraph } from "../engine/exec/onnx/lower.ts";
import { encodeModel } from "../engine/exec/onnx/proto.ts";
import type { CompileOptions, Executor, HostArray } from "../engine/exec/executor.ts";
import type { Graph } from "../engine/graph/mod.ts";
import { mulberry32 as rng } from "../engine/util/rng.ts";
import type { LlamaShape } from "./model.ts";
import { prepareTrainStep, prepareTrainTrace } from "./train.ts";

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

const LEVELS = ["all", "extended", "basic", "disabled", "all+mem_pattern", "cache-cold", "cache-hit", "symbolic"];

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

/** Restores the states a step wrote (LoRA weights, AdamW moments, the loss sum), so every first run starts alike. */
async function snapshot(ex: Executor, names: readonly { name: string; shape: readonly number[] }[]) {
  const saved = new Map<string, { data: HostArray; shape: readonly number[] }>();
  for (const s of names) saved.set(s.name, { data: await ex.getParam(s.name), shape: s.shape });
  return () => {
    for (const [name, s] of saved) ex.setParam(name, s.data, s.shape);
  };
}

/** Compiles `graph` on `ex`, runs it once and then twice more: the times and the first run's loss. */
async function measure(
  ex: Executor,
  graph: Graph,
  feeds: Record<string, ArrayLike<number>>,
  opts: CompileOptions = {},
) {
  let t0 = performance.now();
  const step = await ex.compile(graph, opts);
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
  return { compileMs, firstMs, secondMs: warm[0], warmMs: warm[1], loss: first.loss_sum[0] };
}

/** The onnx_compile bench. */
export const onnxCompileBench: Bench = {
  name: "onnx_compile",
  description: "ONNX Runtime: lowering, encoding, session creation per optimization level and from the model " +
    "cache, first and warm step of a SmolLM2-135M-shaped LoRA step (batch 4, L 64/128/256)",
  async *run(): AsyncIterable<Measurement> {
    const lengths = envList("WHETSTONE_BENCH_LENGTHS", ["64", "128", "256"]).map(Number);
    const levels = envList("WHETSTONE_BENCH_ORT_LEVELS", LEVELS);
    // The executor reads its session options at each compile: the bench changes them between compiles.
    const sessionOptions: Record<string, unknown> = {};
    const ex = await OnnxExecutor.create({ sessionOptions, modelCache: false });
    const dir = await Deno.makeTempDir({ prefix: "whetstone-onnx-cache-" });
    const cached = await OnnxExecutor.create({ modelCache: { dir } });
    let states: readonly { name: string; shape: readonly number[] }[] | undefined;
    try {
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
        const feeds = stepFeeds(c.batch, L, c.vocab);
        const restore = await snapshot(ex, lowered.states);
        // Each level at the executor's defaults, then the executor's defaults before the bench was written (level
        // "all" with ONNX Runtime's memory pattern on).
        const runs: [string, Executor, Record<string, unknown>][] = levels.filter((l) => LEVELS.indexOf(l) < 4).map((
          level,
        ) => [level, ex, { graphOptimizationLevel: level }]);
        if (levels.includes("all+mem_pattern")) {
          runs.push(["all+mem_pattern", ex, { graphOptimizationLevel: "all", enableMemPattern: true }]);
        }
        // The model cache at the default level: cold (optimize and save), then a hit (load, optimization off).
        await prepareTrainStep(cached, c, "lora");
        const restoreCached = await snapshot(cached, lowered.states);
        for (const level of ["cache-cold", "cache-hit"]) if (levels.includes(level)) runs.push([level, cached, {}]);
        if (!states) states = lowered.states;
        for (const [level, on, options] of runs) {
          (on === ex ? restore : restoreCached)();
          for (const k of Object.keys(sessionOptions)) delete sessionOptions[k];
          Object.assign(sessionOptions, options);
          const r = await measure(on, graph, feeds);
          const q = { bench: "onnx_compile", ...p, level };
          yield { ...q, metric: "compile_ms", value: r.compileMs, unit: "ms" };
          yield { ...q, metric: "create_ms", value: r.compileMs - lowerMs - encodeMs, unit: "ms" };
          yield { ...q, metric: "first_run_ms", value: r.firstMs, unit: "ms" };
          yield { ...q, metric: "second_run_ms", value: r.secondMs, unit: "ms" };
          yield { ...q, metric: "warm_run_ms", value: r.warmMs, unit: "ms" };
          yield { ...q, metric: "first_loss_sum", value: r.loss, unit: "nats" };
        }
      }
      // One session for every length (symbolic sizes, the executor's default where the caller gives them): the lengths
      // in order on a fresh executor; the first pays the probe traces and the session, the others reuse it.
      if (levels.includes("symbolic") && states) {
        const sym = await OnnxExecutor.create({ modelCache: false });
        try {
          const c0 = { ...SMOLLM2_135M, seq: lengths[0] };
          const trace = await prepareTrainTrace(sym, c0, "lora");
          const restore = await snapshot(sym, states);
          for (const L of lengths) {
            restore();
            // The trainer's sizes: the padded length (its batch is fixed for a run).
            const B = c0.batch, symbolic = { sizes: { L }, trace: (z: Record<string, number>) => trace(B, z.L) };
            const r = await measure(sym, trace(B, L), stepFeeds(B, L, c0.vocab), { symbolic });
            const q = {
              bench: "onnx_compile",
              model: "smollm2-135M",
              method: "lora",
              batch: B,
              seq: L,
              level: "symbolic",
            };
            yield { ...q, metric: "compile_ms", value: r.compileMs, unit: "ms" };
            yield { ...q, metric: "first_run_ms", value: r.firstMs, unit: "ms" };
            yield { ...q, metric: "second_run_ms", value: r.secondMs, unit: "ms" };
            yield { ...q, metric: "warm_run_ms", value: r.warmMs, unit: "ms" };
            yield { ...q, metric: "first_loss_sum", value: r.loss, unit: "nats" };
            yield { ...q, metric: "sessions_created", value: sym.sessions.created, unit: "count" };
          }
        } finally {
          sym.dispose();
        }
      }
    } finally {
      ex.dispose();
      cached.dispose();
      await Deno.remove(dir, { recursive: true });
    }
  },
};
