/**
 * Bench "model", mixture-of-experts rows: a ~24M-parameter Qwen3-MoE shape ({@link MOE_BENCH}: hidden 256, 4 layers,
 * 8 routed experts of 256, top-2, vocab 32000; batch 4 × 256) on WebGPU (where there is an adapter) and ONNX Runtime
 * (`WHETSTONE_BENCH_EXECUTORS` limits them) — forward, forward+backward of
 * every parameter, and forward+backward of a LoRA adapter (rank 8) on every linear plus the routed experts' fused
 * parameters (PEFT's target_parameters, engine/nn/lora_experts.ts) — in tokens/s, beside PyTorch (+ PEFT) on the same
 * config in the same run (bench/torch_moe.py) and the ratio. `WHETSTONE_MOE_TOKENS` ("BxL", e.g. "1x64") sets
 * a smaller batch for a quick run; "off" skips the rows.
 * @module
 */
import type { Measurement } from "./report.ts";
import { backward, Graph, linearCrossEntropy, reshape, type Tensor } from "../engine/graph/mod.ts";
import { WebGpuExecutor } from "../engine/exec/webgpu.ts";
import { OnnxExecutor } from "../engine/exec/onnx/executor.ts";
import type { CompiledGraph, Executor } from "../engine/exec/executor.ts";
import { hasGpu } from "../engine/gpu/device.ts";
import { mulberry32 as rng } from "../engine/util/rng.ts";
import { decoderConfig } from "../engine/nn/config.ts";
import { decoderParams, traceDecoder } from "../engine/nn/decoder.ts";
import { Model } from "../engine/nn/model.ts";
import { attachAdapter } from "../engine/nn/lora.ts";

/** The MoE shape of the rows (HF config.json keys). */
export const MOE_BENCH = {
  model_type: "qwen3_moe",
  vocab_size: 32000,
  hidden_size: 256,
  intermediate_size: 688,
  moe_intermediate_size: 256,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 64,
  num_experts: 8,
  num_experts_per_tok: 2,
  norm_topk_prob: true,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: false,
};
const RANK = 8;
const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
const EXPERT_PARAMS = ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"];

function tokens(): { batch: number; seq: number } | undefined {
  const v = Deno.env.get("WHETSTONE_MOE_TOKENS");
  if (v === "off") return undefined;
  if (!v) return { batch: 4, seq: 256 };
  const m = /^(\d+)x(\d+)$/.exec(v);
  if (!m || +m[1] < 1 || +m[2] < 2) throw new Error(`WHETSTONE_MOE_TOKENS: expected off or BxL, got "${v}"`);
  return { batch: +m[1], seq: +m[2] };
}

async function msPerStep(step: CompiledGraph, feeds: Record<string, ArrayLike<number>>, reps = 3): Promise<number> {
  await step.run(feeds, ["loss"]);
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) await step.run(feeds, ["loss"]);
  return (performance.now() - t0) / reps;
}

type Pass = "forward" | "forward+backward" | "lora_experts forward+backward";

/** The executors measured: WebGPU where there is an adapter, and ONNX Runtime; `WHETSTONE_BENCH_EXECUTORS` limits. */
async function executors(): Promise<[string, () => Promise<Executor>][]> {
  const only = Deno.env.get("WHETSTONE_BENCH_EXECUTORS")?.split(",");
  const list: [string, () => Promise<Executor>][] = [["onnx", () => OnnxExecutor.create()]];
  if (await hasGpu()) list.unshift(["webgpu", () => WebGpuExecutor.create()]);
  return only ? list.filter(([n]) => only.includes(n)) : list;
}

const PASSES: Pass[] = ["forward", "forward+backward", "lora_experts forward+backward"];

/** One executor's tokens/s and arena per pass. */
async function* ourRows(
  name: string,
  ex: Executor,
  size: { batch: number; seq: number },
  row: { bench: string } & Record<string, string | number>,
  ours: Map<string, number>,
): AsyncIterable<Measurement> {
  const cfg = decoderConfig(MOE_BENCH);
  const r = rng(5);
  const params = new Map<string, { shape: number[]; dtype: "f32" }>();
  for (const [name, shape] of decoderParams(cfg)) {
    ex.setParam(name, Float32Array.from({ length: numel(shape) }, () => (r() - 0.5) * 0.04), shape);
    params.set(name, { shape, dtype: "f32" });
  }
  const model = new Model(cfg, ex, params);
  const { batch: B, seq: L } = size, N = B * L;
  const feeds = {
    ids: Int32Array.from({ length: N }, () => Math.floor(r() * cfg.vocab)),
    positions: Int32Array.from({ length: N }, (_, i) => i % L),
    segments: new Int32Array(N).fill(1),
    labels: Int32Array.from({ length: N }, () => Math.floor(r() * cfg.vocab)),
  };
  for (const pass of PASSES) {
    if (pass.startsWith("lora")) {
      const ad = await attachAdapter(model, { r: RANK, targets: ["all"], targetParameters: EXPERT_PARAMS });
      for (const [k, p] of ad.params) { // B ≠ 0, as a trained adapter's
        if (k.includes("lora_B")) {
          ex.setParam(
            k,
            Float32Array.from({ length: numel(p.shape) }, () => r() - 0.5),
            p.shape,
          );
        }
      }
    }
    const g = new Graph();
    const inp = {
      ids: g.input("ids", [B, L], "i32"),
      positions: g.input("positions", [B, L], "i32"),
      segments: g.input("segments", [B, L], "i32"),
    };
    const w = model.weights(g);
    const out = traceDecoder(cfg, inp, w);
    const labels = g.input("labels", [N], "i32");
    const loss = linearCrossEntropy(reshape(out.hidden, [N, cfg.hidden]), out.head, labels);
    g.output("loss", loss);
    if (pass !== "forward") {
      const names = pass.startsWith("lora") ? [...model.adapter!.params.keys()] : [...params.keys()];
      const ts: Tensor[] = names.map((n) => w.weight(n));
      backward(loss, ts).forEach((d, i) => g.output(names[i], d));
    }
    const step = await ex.compile(g);
    const tps = N / ((await msPerStep(step, feeds)) / 1000);
    ours.set(`${name}:${pass}`, tps);
    yield { ...row, pass, executor: name, metric: "tokens_per_s", value: tps, unit: "tok/s" };
    if (step.stats.arenaBytes) {
      yield { ...row, pass, executor: name, metric: "arena_peak", value: step.stats.arenaBytes / 2 ** 20, unit: "MiB" };
    }
  }
}

/** How the model bench runs a PyTorch script (bench/model.ts's `venvBaseline`, passed in: no import circle). */
export type Baseline = <T>(script: string, config: object) => Promise<T | { absent: string }>;

/** The MoE rows of the model bench (Whetstone on each executor, then PyTorch via `baseline`, then the ratios). */
export async function* moeModelRows(baseline: Baseline): AsyncIterable<Measurement> {
  const size = tokens();
  if (!size) return;
  const nParams = [...decoderParams(decoderConfig(MOE_BENCH)).values()].reduce((a, s) => a + numel(s), 0);
  const row = {
    bench: "model",
    model: "qwen3_moe-24M",
    batch: size.batch,
    seq: size.seq,
    params_m: Math.round(nParams / 1e5) / 10,
  };
  const ours = new Map<string, number>();
  const names: string[] = [];
  for (const [name, make] of await executors()) {
    const ex = await make();
    names.push(name);
    yield* ourRows(name, ex, size, row, ours);
    ex.dispose();
  }
  const torch = await baseline<
    { forward_s: number; forward_backward_s: number; lora_experts_forward_backward_s: number }
  >("torch_moe.py", { config: MOE_BENCH, batch: size.batch, seq: size.seq, rank: RANK });
  if ("absent" in torch) {
    yield { ...row, metric: "torch_baseline", value: 0, unit: "absent", note: torch.absent };
    return;
  }
  const N = size.batch * size.seq;
  const theirs: Record<Pass, number> = {
    "forward": N / torch.forward_s,
    "forward+backward": N / torch.forward_backward_s,
    "lora_experts forward+backward": N / torch.lora_experts_forward_backward_s,
  };
  for (const pass of PASSES) {
    yield { ...row, pass, executor: "pytorch", metric: "tokens_per_s", value: theirs[pass], unit: "tok/s" };
    for (const name of names) {
      const v = ours.get(`${name}:${pass}`)! / theirs[pass];
      yield { ...row, pass, executor: name, metric: "ratio_vs_pytorch", value: v, unit: "x" };
    }
  }
}
