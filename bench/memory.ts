/**
 * Bench "memory": the engine's own plan of one training step (AdamW, clipping; batch 1 × 1024 tokens) on a
 * Gemma-2B-shaped and a Llama-2-7B-shaped config — no weights, no device: the step is traced and planned
 * (engine/train/memory_plan.ts) — beside the LlamaFactory paper's figures (18 bytes per parameter for
 * mixed-precision full tuning, 0.6 for QLoRA, QLoRA Gemma-2B at 5.21 GB). Peak = stored weights (frozen ones
 * bf16, trainable ones f32) + AdamW states + the step's arena (activations and gradients packed by liveness).
 * Every method is planned without and with activation checkpointing (`checkpoint`); "galore" is full tuning with
 * GaLore-AdamW (rank 16 projected moments and projections on every linear weight), "apollo" with APOLLO (LF's defaults:
 * rank 16), "badam" with BAdam's layer mode (one decoder layer's gradients and AdamW states at a time). Full tuning is also planned under
 * the other optimizers (`optim`: sgd, sgd with momentum, adafactor, lion_32bit, adamw_8bit — bitsandbytes' 8-bit
 * states —, LF's Muon and Adam-mini).
 * Mixtral-8x7B and Qwen3-30B-A3B shapes ({@link MOE_MODELS}) are planned for LoRA (on the linears; and with LoRA on
 * the routed experts' fused parameters too, `lora_experts`) and full tuning, checkpointed.
 * @module
 */
import type { Bench, Measurement } from "./report.ts";
import { decoderConfig } from "../engine/nn/config.ts";
import { planTrainingMemory } from "../engine/train/memory_plan.ts";
import { hasGpu } from "../engine/gpu/device.ts";
import { WebGpuExecutor } from "../engine/exec/webgpu.ts";
import { llama20m, LLAMA_20M } from "./model.ts";
import { prepareTrainStep } from "./train.ts";
import { measureOnnxMemory, ONNX_MEMORY_MODELS, type OnnxMemoryCase } from "./memory_onnx.ts";

/**
 * The ONNX Runtime rows: a model, its batch × length. `WHETSTONE_MEMORY_ONNX` picks models (comma-separated names of
 * {@link ONNX_MEMORY_MODELS}, default all; `off`: none).
 */
const ONNX_CASES: Omit<OnnxMemoryCase, "method">[] = [
  { model: "llama-20M", batch: LLAMA_20M.batch, seq: LLAMA_20M.seq, baseDtype: "f32" },
  { model: "smollm2-135m", batch: 4, seq: 128 },
];

function onnxCases(): Omit<OnnxMemoryCase, "method">[] {
  const v = Deno.env.get("WHETSTONE_MEMORY_ONNX");
  if (v === undefined || v === "") return ONNX_CASES;
  if (v === "off") return [];
  const names = v.split(",");
  for (const n of names) {
    if (!(n in ONNX_MEMORY_MODELS)) {
      throw new Error(
        `WHETSTONE_MEMORY_ONNX: expected off or names among ${Object.keys(ONNX_MEMORY_MODELS)}, got ${n}`,
      );
    }
  }
  return ONNX_CASES.filter((c) => names.includes(c.model));
}

/**
 * Device bytes a real training step of the ~20M Llama (random f32 weights, batch 4 × 256) allocates on WebGPU: the
 * store (weights, adapter, AdamW states) plus what the compiled step owns (arena, inputs, constants, scratch).
 */
async function measured20m(method: "lora" | "full"): Promise<number> {
  const ex = await WebGpuExecutor.create();
  const step = await ex.compile(await prepareTrainStep(ex, LLAMA_20M, method));
  const bytes = ex.storeBytes + (step.stats.ownedBytes ?? 0);
  ex.dispose();
  return bytes;
}

/** The paper's model shapes (HF config.json keys). */
export const PAPER_MODELS = {
  "gemma-2b": {
    model_type: "gemma",
    vocab_size: 256000,
    hidden_size: 2048,
    intermediate_size: 16384,
    num_hidden_layers: 18,
    num_attention_heads: 8,
    num_key_value_heads: 1,
    head_dim: 256,
    rms_norm_eps: 1e-6,
    hidden_activation: "gelu_pytorch_tanh",
  },
  "llama-2-7b": {
    model_type: "llama",
    vocab_size: 32000,
    hidden_size: 4096,
    intermediate_size: 11008,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 32,
    rms_norm_eps: 1e-5,
  },
};

/**
 * Mixture-of-experts shapes (HF config.json keys): planned with LoRA and full tuning, checkpointed. Experts run on their
 * routed tokens only (sparse dispatch, engine/nn/moe.ts): the arena holds N·k expert rows per layer, not N·E.
 */
export const MOE_MODELS = {
  "mixtral-8x7b": {
    model_type: "mixtral",
    vocab_size: 32000,
    hidden_size: 4096,
    intermediate_size: 14336,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 8,
    num_local_experts: 8,
    num_experts_per_tok: 2,
    rms_norm_eps: 1e-5,
    rope_theta: 1e6,
  },
  "qwen3-30b-a3b": {
    model_type: "qwen3_moe",
    vocab_size: 151936,
    hidden_size: 2048,
    intermediate_size: 6144,
    moe_intermediate_size: 768,
    num_hidden_layers: 48,
    num_attention_heads: 32,
    num_key_value_heads: 4,
    head_dim: 128,
    num_experts: 128,
    num_experts_per_tok: 8,
    norm_topk_prob: true,
    rms_norm_eps: 1e-6,
    rope_theta: 1e6,
  },
};

/** The paper's bytes per parameter this bench (and bench "scale") prints beside ours. */
export const PAPER: Record<string, number> = { full: 18, qlora: 0.6 };
/** The paper's peak memory of QLoRA on Gemma-2B, in bytes. */
export const PAPER_GEMMA_QLORA_PEAK = 5.21e9;

/** The memory bench. */
export const memoryBench: Bench = {
  name: "memory",
  description: "planned training memory (bytes per parameter, peak bytes) for Gemma-2B and Llama-2-7B shapes, " +
    "batch 1 × 1024, beside the LlamaFactory paper",
  async *run(): AsyncIterable<Measurement> {
    // The plan against what WebGPU really allocates, on the ~20M Llama (f32 weights, batch 4 × 256).
    if (await hasGpu()) {
      for (const method of ["lora", "full"] as const) {
        const plan = await planTrainingMemory(llama20m(), {
          method,
          batch: LLAMA_20M.batch,
          seq: LLAMA_20M.seq,
          baseDtype: "f32",
        });
        const real = await measured20m(method);
        const p = { model: "llama-20M", method, batch: LLAMA_20M.batch, seq: LLAMA_20M.seq };
        yield { bench: "memory", ...p, metric: "planned_peak_bytes", value: plan.peakBytes, unit: "B" };
        yield { bench: "memory", ...p, metric: "allocated_bytes", value: real, unit: "B", executor: "webgpu" };
        yield { bench: "memory", ...p, metric: "allocated_over_planned", value: real / plan.peakBytes, unit: "x" };
      }
    }
    // The plan against what the ONNX Runtime executor's process really grows by (resident set, fresh process).
    for (const c of onnxCases()) {
      for (const method of ["lora", "full"] as const) {
        const plan = await planTrainingMemory(ONNX_MEMORY_MODELS[c.model](), {
          method,
          batch: c.batch,
          seq: c.seq,
          baseDtype: c.baseDtype,
        });
        const real = await measureOnnxMemory({ ...c, method });
        const p = { model: c.model, method, batch: c.batch, seq: c.seq, base: c.baseDtype ?? "bf16", executor: "onnx" };
        yield { bench: "memory", ...p, metric: "planned_peak_bytes", value: plan.peakBytes, unit: "B" };
        yield { bench: "memory", ...p, metric: "rss_peak_bytes", value: real.peakBytes, unit: "B" };
        yield { bench: "memory", ...p, metric: "rss_held_bytes", value: real.heldBytes, unit: "B" };
        yield {
          bench: "memory",
          ...p,
          metric: "rss_peak_over_planned",
          value: real.peakBytes / plan.peakBytes,
          unit: "x",
        };
        yield { bench: "memory", ...p, metric: "step_s", value: real.stepS, unit: "s" };
      }
    }
    for (const [model, cfg] of Object.entries(PAPER_MODELS)) {
      const config = decoderConfig(cfg);
      // Without and with activation checkpointing (the paper's settings, and LLaMA-Factory's default, use it).
      for (
        const [method, checkpoint] of (["full", "freeze", "lora", "qlora", "galore", "apollo", "badam"] as const)
          .flatMap((m) => [false, true].map((c) => [m, c] as const))
      ) {
        const m = await planTrainingMemory(config, { method, batch: 1, seq: 1024, checkpoint });
        const p = { model, method, checkpoint, batch: 1, seq: 1024 };
        yield { bench: "memory", ...p, metric: "bytes_per_param", value: m.bytesPerParam, unit: "B" };
        yield { bench: "memory", ...p, metric: "peak_bytes", value: m.peakBytes, unit: "B" };
        yield { bench: "memory", ...p, metric: "weights_bytes", value: m.weights, unit: "B" };
        yield { bench: "memory", ...p, metric: "optimizer_bytes", value: m.optimizer, unit: "B" };
        yield { bench: "memory", ...p, metric: "arena_bytes", value: m.arena, unit: "B" };
        if (PAPER[method] && checkpoint) {
          yield { bench: "memory", ...p, metric: "paper_bytes_per_param", value: PAPER[method], unit: "B" };
        }
      }
      // Full tuning with checkpointing under the other optimizers: their states against AdamW's.
      for (
        const optim of ["sgd", "sgd_momentum", "adafactor", "lion_32bit", "adamw_8bit", "muon", "adam_mini"] as const
      ) {
        const m = await planTrainingMemory(config, { method: "full", batch: 1, seq: 1024, checkpoint: true, optim });
        const p = { model, method: "full", optim, checkpoint: true, batch: 1, seq: 1024 };
        yield { bench: "memory", ...p, metric: "bytes_per_param", value: m.bytesPerParam, unit: "B" };
        yield { bench: "memory", ...p, metric: "peak_bytes", value: m.peakBytes, unit: "B" };
        yield { bench: "memory", ...p, metric: "optimizer_bytes", value: m.optimizer, unit: "B" };
      }
    }
    for (const [model, cfg] of Object.entries(MOE_MODELS)) {
      for (const [method, loraExperts] of [["lora", false], ["lora", true], ["full", false]] as const) {
        const plan = { method, batch: 1, seq: 1024, checkpoint: true, loraExperts };
        const m = await planTrainingMemory(decoderConfig(cfg), plan);
        const p = { model, method, lora_experts: loraExperts, checkpoint: true, batch: 1, seq: 1024 };
        yield { bench: "memory", ...p, metric: "bytes_per_param", value: m.bytesPerParam, unit: "B" };
        yield { bench: "memory", ...p, metric: "peak_bytes", value: m.peakBytes, unit: "B" };
        yield { bench: "memory", ...p, metric: "arena_bytes", value: m.arena, unit: "B" };
        yield { bench: "memory", ...p, metric: "optimizer_bytes", value: m.optimizer, unit: "B" };
        yield { bench: "memory", ...p, metric: "trainable_params", value: m.trainableParams, unit: "count" };
      }
    }
    yield {
      bench: "memory",
      model: "gemma-2b",
      method: "qlora",
      metric: "paper_peak_bytes",
      value: PAPER_GEMMA_QLORA_PEAK,
      unit: "B",
    };
  },
};
