/**
 * Bench "model": forward and forward+backward tokens/s of a ~20M-parameter Llama (hidden 256,
 * intermediate 688, 4 layers, 4 heads, 2 KV heads, vocab 32000, batch 4 × 256) on the WebGPU
 * executor, its planned peak arena, and — where a Python with torch is configured (bench/torch_python.ts) — the same
 * measured with PyTorch in the same run (a separate process, bench/torch_llama.py), with the ratio.
 * The loss uses the fused LM head (no [N, V] logits), the backward computes every parameter's gradient. Then the
 * mixture-of-experts rows of bench/model_moe.ts (a Qwen3-MoE shape; LoRA on the fused experts too).
 * @module
 */
import type { Bench, Measurement } from "./report.ts";
import { backward, Graph, linearCrossEntropy, reshape } from "../engine/graph/mod.ts";
import { WebGpuExecutor } from "../engine/exec/webgpu.ts";
import type { CompiledGraph } from "../engine/exec/executor.ts";
import { mulberry32 as rng } from "../engine/util/rng.ts";
import { type DecoderConfig, decoderConfig } from "../engine/nn/config.ts";
import { decoderParams, traceDecoder } from "../engine/nn/decoder.ts";
import { torchPython } from "./torch_python.ts";
import { moeModelRows } from "./model_moe.ts";

/** The ~20M Llama of the issue. */
export const LLAMA_20M = {
  vocab: 32000,
  hidden: 256,
  intermediate: 688,
  layers: 4,
  heads: 4,
  kvHeads: 2,
  batch: 4,
  seq: 256,
};

async function msPerStep(step: CompiledGraph, feeds: Record<string, ArrayLike<number>>, reps = 5): Promise<number> {
  await step.run(feeds, ["loss"]);
  const t0 = performance.now();
  const runs: Promise<unknown>[] = [];
  for (let i = 0; i < reps; i++) runs.push(step.run(feeds, ["loss"]));
  await Promise.all(runs);
  return (performance.now() - t0) / reps;
}

/**
 * Runs `bench/<script>` with the baseline's Python (bench/torch_python.ts: `WHETSTONE_TORCH_PYTHON`, else the
 * project's `.venv`) on `config` (default the 20M one); its last stdout line parsed as JSON, or `{ absent: reason }`
 * when there is no such Python or the script fails.
 */
export async function venvBaseline<T>(script: string, config: object = LLAMA_20M): Promise<T | { absent: string }> {
  const py = await torchPython();
  if (!py.ok) return { absent: py.reason };
  const path = new URL(`./${script}`, import.meta.url).pathname;
  const out = await new Deno.Command(py.python, { args: [path, JSON.stringify(config)], stderr: "piped" }).output();
  if (!out.success) {
    return { absent: `${script} failed: ${new TextDecoder().decode(out.stderr).trim().split("\n").pop()}` };
  }
  return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!);
}

/** A bench Llama's shape: {@link LLAMA_20M}'s fields, and optionally tied embeddings (SmolLM2's). */
export type LlamaShape = typeof LLAMA_20M & { tie?: boolean };

/** The decoder config of {@link LLAMA_20M} (or another config of that shape). */
export function llama20m(c: LlamaShape = LLAMA_20M): DecoderConfig {
  return decoderConfig({
    model_type: "llama",
    vocab_size: c.vocab,
    hidden_size: c.hidden,
    intermediate_size: c.intermediate,
    num_hidden_layers: c.layers,
    num_attention_heads: c.heads,
    num_key_value_heads: c.kvHeads,
    rms_norm_eps: 1e-6,
    tie_word_embeddings: c.tie ?? false,
  });
}

/** The model bench. */
export const modelBench: Bench = {
  name: "model",
  description: "~20M Llama (4 × 256 tokens) forward and forward+backward tokens/s on WebGPU vs PyTorch (CPU)",
  async *run(): AsyncIterable<Measurement> {
    const c = LLAMA_20M;
    const cfg = llama20m();
    const ex = await WebGpuExecutor.create();
    const r = rng(3);
    const shapes = decoderParams(cfg);
    let nParams = 0;
    for (const [name, shape] of shapes) {
      const n = shape.reduce((a, b) => a * b, 1);
      nParams += n;
      ex.setParam(name, Float32Array.from({ length: n }, () => (r() - 0.5) * 0.04), shape);
    }
    const { batch: B, seq: L } = c;
    const tokens = B * L;
    const feeds = {
      ids: Int32Array.from({ length: tokens }, () => Math.floor(r() * c.vocab)),
      positions: Int32Array.from({ length: tokens }, (_, i) => i % L),
      segments: new Int32Array(tokens).fill(1),
      labels: Int32Array.from({ length: tokens }, () => Math.floor(r() * c.vocab)),
    };
    const params = { model: "llama-20M", batch: B, seq: L, params_m: Math.round(nParams / 1e5) / 10 };
    const results: Record<string, number> = {};
    for (const pass of ["forward", "forward+backward"] as const) {
      const g = new Graph();
      const inp = {
        ids: g.input("ids", [B, L], "i32"),
        positions: g.input("positions", [B, L], "i32"),
        segments: g.input("segments", [B, L], "i32"),
      };
      const names = [...shapes.keys()];
      const ws = new Map(names.map((n) => [n, g.param(n, shapes.get(n)!)]));
      const out = traceDecoder(cfg, inp, { weight: (n) => ws.get(n)! });
      const labels = g.input("labels", [tokens], "i32");
      const loss = linearCrossEntropy(reshape(out.hidden, [tokens, c.hidden]), out.head, labels);
      g.output("loss", loss);
      if (pass !== "forward") backward(loss, names.map((n) => ws.get(n)!)).forEach((d, i) => g.output(names[i], d));
      const step = await ex.compile(g);
      const ms = await msPerStep(step, feeds);
      results[pass] = tokens / (ms / 1000);
      yield {
        bench: "model",
        ...params,
        pass,
        executor: "webgpu",
        metric: "tokens_per_s",
        value: results[pass],
        unit: "tok/s",
      };
      yield {
        bench: "model",
        ...params,
        pass,
        metric: "arena_peak",
        value: step.stats.arenaBytes / 2 ** 20,
        unit: "MiB",
      };
      yield { bench: "model", ...params, pass, metric: "dispatches", value: step.stats.dispatches, unit: "count" };
    }
    ex.dispose();
    const torch = await venvBaseline<{ forward_s: number; forward_backward_s: number }>("torch_llama.py");
    if ("absent" in torch) {
      yield { bench: "model", ...params, metric: "torch_baseline", value: 0, unit: "absent", note: torch.absent };
      yield* moeModelRows(venvBaseline);
      return;
    }
    const tf = tokens / torch.forward_s, tb = tokens / torch.forward_backward_s;
    yield {
      bench: "model",
      ...params,
      pass: "forward",
      executor: "pytorch",
      metric: "tokens_per_s",
      value: tf,
      unit: "tok/s",
    };
    yield {
      bench: "model",
      ...params,
      pass: "forward+backward",
      executor: "pytorch",
      metric: "tokens_per_s",
      value: tb,
      unit: "tok/s",
    };
    yield {
      bench: "model",
      ...params,
      pass: "forward",
      metric: "ratio_vs_pytorch",
      value: results.forward / tf,
      unit: "x",
    };
    yield {
      bench: "model",
      ...params,
      pass: "forward+backward",
      metric: "ratio_vs_pytorch",
      value: results["forward+backward"] / tb,
      unit: "x",
    };
    yield* moeModelRows(venvBaseline);
  },
};
