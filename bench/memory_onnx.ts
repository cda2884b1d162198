/**
 * The ONNX Runtime executor's measured memory beside its plan (bench "memory"): a real training step (AdamW,
 * clipping, random weights) runs in a fresh process, which reports how far its resident set grew over what it held
 * before the first param was set — the store (weights, adapter, AdamW states), the compiled sessions and the peak
 * of the runs, all together — and how much it still holds after them. Frozen weights are set in `baseDtype`
 * (trainable ones f32), as the trainer sets them.
 *
 * Run directly: `deno run -A bench/memory_onnx.ts '{"model":"smollm2-135m","method":"full","batch":4,"seq":128}'`
 * prints one JSON line.
 * @module
 */
import type { DType } from "../engine/graph/types.ts";
import { numel } from "../engine/graph/types.ts";
import type { DecoderConfig } from "../engine/nn/config.ts";
import { decoderConfig } from "../engine/nn/config.ts";
import { decoderParams } from "../engine/nn/decoder.ts";
import { attachAdapter } from "../engine/nn/lora.ts";
import { Model } from "../engine/nn/model.ts";
import { OnnxExecutor } from "../engine/exec/onnx/executor.ts";
import { adamwStepPlan, LOSS_SUM, traceTrainStep } from "../engine/train/step/lm.ts";
import { stateNames } from "../engine/train/step/optimizer.ts";
import { mulberry32 } from "../engine/util/rng.ts";
import { collectGarbage, peakResidentBytes, resetPeakResident, residentBytes } from "../engine/util/memory.ts";
import { smolConfig } from "./e2e_model.ts";
import { llama20m } from "./model.ts";

/** The models this measurement knows. */
export const ONNX_MEMORY_MODELS: Record<string, () => DecoderConfig> = {
  "llama-20M": () => llama20m(),
  "smollm2-135m": () => decoderConfig(smolConfig()),
};

/** One measurement's settings. */
export interface OnnxMemoryCase {
  model: keyof typeof ONNX_MEMORY_MODELS;
  method: "lora" | "full";
  batch: number;
  seq: number;
  /** Stored dtype of frozen weights (default bf16, as the plan). */
  baseDtype?: DType;
  /** Steps run (default 2: the first and one more). */
  steps?: number;
}

/** What one measurement gives, in bytes. */
export interface OnnxMemory {
  /** Peak resident set over the process's resident set before the store. */
  peakBytes: number;
  /** Resident set after the steps (garbage collected) over the same. */
  heldBytes: number;
  /** Seconds of the last step. */
  stepS: number;
}

/** Runs `c` in a fresh process and returns its measurement. */
export async function measureOnnxMemory(c: OnnxMemoryCase): Promise<OnnxMemory> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL(import.meta.url).pathname, JSON.stringify(c)],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim();
  if (out.code !== 0) {
    const err = new TextDecoder().decode(out.stderr).trim().split("\n").slice(-6).join("\n");
    throw new Error(`bench/memory_onnx.ts ${JSON.stringify(c)}: expected exit code 0, got ${out.code}\n${err}`);
  }
  return JSON.parse(text.split("\n").pop()!);
}

async function measureHere(c: OnnxMemoryCase): Promise<OnnxMemory> {
  const cfg = ONNX_MEMORY_MODELS[c.model]();
  const ex = await OnnxExecutor.create();
  collectGarbage();
  const before = residentBytes();
  if (before === undefined) throw new Error("no /proc/self/status: resident memory cannot be measured here");
  const r = mulberry32(7);
  const base: DType = c.method === "full" ? "f32" : c.baseDtype ?? "bf16";
  const params = new Map<string, { shape: number[]; dtype: DType }>();
  for (const [name, shape] of decoderParams(cfg)) {
    const data = new Float32Array(numel(shape));
    const norm = name.endsWith("norm.weight");
    for (let i = 0; i < data.length; i++) data[i] = norm ? 1 : (r() - 0.5) * 0.07;
    ex.setParam(name, data, shape, base);
    params.set(name, { shape, dtype: base });
  }
  const model = new Model(cfg, ex, params);
  const trainable = c.method === "full"
    ? [...params.keys()]
    : [...(await attachAdapter(model, { r: 8, alpha: 16, targets: ["all"] })).params.keys()];
  for (const name of trainable) {
    const shape = (params.get(name) ?? model.adapter!.params.get(name)!).shape;
    ex.setParam(stateNames(name).m, new Float32Array(numel(shape)), shape);
    ex.setParam(stateNames(name).v, new Float32Array(numel(shape)), shape);
  }
  ex.setParam(LOSS_SUM, [0], [1]);
  // The arrays setParam copied from are garbage now: not part of what the executor holds.
  collectGarbage();
  resetPeakResident();
  const { batch: B, seq: L } = c;
  const step = await ex.compile(traceTrainStep(model, adamwStepPlan(B, L, trainable)));
  const V = cfg.vocab;
  let stepS = 0;
  for (let k = 1; k <= (c.steps ?? 2); k++) {
    const t0 = performance.now();
    await step.run({
      ids_0: Int32Array.from({ length: B * L }, () => Math.floor(r() * V)),
      positions_0: Int32Array.from({ length: B * L }, (_, i) => i % L),
      segments_0: new Int32Array(B * L).fill(1),
      labels_0: Int32Array.from({ length: B * L }, (_, i) => i % L === L - 1 ? -100 : Math.floor(r() * V)),
      inv_targets: [1 / (B * (L - 1))],
      lr: [1e-5],
      step: [k],
    });
    stepS = (performance.now() - t0) / 1000;
  }
  collectGarbage();
  return { peakBytes: peakResidentBytes()! - before, heldBytes: residentBytes()! - before, stepS };
}

if (import.meta.main) console.log(JSON.stringify(await measureHere(JSON.parse(Deno.args[0]))));
