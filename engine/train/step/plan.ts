/**
 * A step's hyper-parameters as the trainer holds them ({@link StepPlan}: shapes, the trainable names, AdamW / SGD
 * settings, clipping, LoRA+, dropout, checkpointing, fp16), and {@link composeStep}, which turns a plan and an
 * objective into the builder's {@link StepSpec} — the one place an optimizer and a precision are chosen from a plan.
 * @module
 */
import type { Graph } from "../../graph/mod.ts";
import { LoraAdapter } from "../../nn/lora.ts";
import type { Model } from "../../nn/model.ts";
import { buildStep, type StepSpec } from "./builder.ts";
import type { Objective } from "./objective.ts";
import { adamwOptimizer, loraplusRatio, type Optimizer, sgdOptimizer } from "./optimizer.ts";
import {
  adafactorOptimizer,
  adamMiniOptimizer,
  adamw8bitOptimizer,
  lionOptimizer,
  muonOptimizer,
} from "./optimizer_more.ts";
import { sgdArgsOf } from "../../config/optim_args.ts";
import type { OptimName } from "../../config/keys_training.ts";
import { f32Precision, fp16Precision } from "./precision.ts";

/** What the step updates and how. */
export interface StepPlan {
  /** Micro-batches per optimizer step (gradient_accumulation_steps). */
  G: number;
  /** Rows per micro-batch (pairs for dpo / rm, examples for kto, sequences for ppo). */
  B: number;
  /** Padded length of every row of the step. */
  L: number;
  /** Parameter names that train (f32 in the store). */
  trainable: string[];
  /** `optim` (canonical names: paged_lion_32bit is lion_32bit). */
  optim: OptimName;
  /** HF's `optim_args` text (`optim: sgd` reads momentum, dampening, nesterov, weight_decay). */
  optimArgs?: string | null;
  /** LLaMA-Factory's `use_muon`: Muon replaces `optim`. */
  useMuon?: boolean;
  /** LLaMA-Factory's `use_adam_mini`: Adam-mini replaces `optim` (LF tries it before Muon). */
  useAdamMini?: boolean;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 0: no clipping. */
  maxGradNorm: number;
  /** LoRA+: the lr of lora_B matrices is multiplied by this (0 or 1: off). */
  loraplusRatio: number;
  /** Dropout active (a u32 `seed` input is fed): LoRA dropout, or rm's value-head dropout. */
  dropout: boolean;
  /** Activation checkpointing: each decoder layer's forward is recomputed in the backward pass (default off). */
  checkpoint?: boolean;
  /**
   * fp16 mixed precision (default off): decoder linears read f16 activations (f32 accumulation) and the step uses
   * dynamic loss scaling (precision.ts). Only for executors that compute f16 (WebGPU with shader-f16).
   */
  fp16?: boolean;
  /** NEFTune's alpha (pt, sft, rm, dpo, kto): noise inputs are fed (engine/nn/neftune.ts). */
  neftune?: number;
  /** LongLoRA's S²-attention (pt, sft, rm, dpo, kto; engine/nn/longlora.ts). */
  shiftAttn?: boolean;
  /** LF's DFT loss for the LM objective (`use_dft_loss`, stage sft). */
  dft?: boolean;
}

/**
 * A one-micro-batch AdamW plan with torch's defaults (betas 0.9/0.999, eps 1e-8, no weight decay), clipping at 1,
 * no LoRA+ and no dropout; `extra` overrides any field. For benches and memory planning.
 *
 * @example
 * ```ts
 * const g = traceTrainStep(model, adamwStepPlan(4, 256, trainable, { checkpoint: true }));
 * ```
 */
export function adamwStepPlan(B: number, L: number, trainable: string[], extra: Partial<StepPlan> = {}): StepPlan {
  return {
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
    ...extra,
  };
}

/** The optimizer settings of a plan. */
export type OptimizerSettings = Pick<
  StepPlan,
  | "trainable"
  | "optim"
  | "beta1"
  | "beta2"
  | "eps"
  | "weightDecay"
  | "loraplusRatio"
  | "optimArgs"
  | "useMuon"
  | "useAdamMini"
>;

/**
 * The optimizer of a plan: LF's Adam-mini when `useAdamMini`, else LF's Muon when `useMuon` (LF builds LoRA+'s optimizer first, so not with a LoRA+ ratio),
 * else `optim` (AdamW, SGD, Adafactor, Lion, 8-bit AdamW), with LoRA+'s lr ratio on a LoRA model's lora_B matrices.
 */
export function planOptimizer(model: Model, p: OptimizerSettings): Optimizer {
  const lrRatio = loraplusRatio(model.adapter instanceof LoraAdapter, p.loraplusRatio);
  const adam = { beta1: p.beta1, beta2: p.beta2, eps: p.eps, weightDecay: p.weightDecay };
  if (p.useAdamMini && !lrRatio) {
    return adamMiniOptimizer(model.prefix, { ...adam, dim: model.config.hidden, nHeads: model.config.heads });
  }
  if (p.useMuon && !lrRatio) return muonOptimizer(model.prefix, adam);
  switch (p.optim) {
    case "adamw":
      return adamwOptimizer(model.prefix, { ...adam, lrRatio });
    case "sgd": {
      const s = sgdArgsOf(p.optimArgs);
      return sgdOptimizer(model.prefix, {
        weightDecay: p.weightDecay,
        momentum: s.momentum,
        nesterov: s.nesterov,
        lrRatio,
      });
    }
    case "adafactor":
      return adafactorOptimizer(model.prefix, { weightDecay: p.weightDecay, lrRatio });
    case "lion_32bit":
      return lionOptimizer(model.prefix, { beta1: p.beta1, beta2: p.beta2, weightDecay: p.weightDecay, lrRatio });
    case "adamw_8bit":
      return adamw8bitOptimizer(model.prefix, { ...adam, lrRatio });
    default:
      throw new Error(
        `optim: expected one of adamw, sgd, adafactor, lion_32bit, adamw_8bit, got ${JSON.stringify(p.optim)}`,
      );
  }
}

/**
 * The builder's spec for `objective` under plan `p`: its optimizer (default {@link planOptimizer}, or GaLore's /
 * BAdam's) and its precision (fp16 with loss scaling when the plan asks; the objective must compute f16 then).
 */
export function composeStep(model: Model, p: StepPlan, objective: Objective, optimizer?: Optimizer): StepSpec {
  const fp16 = !!p.fp16;
  if (fp16 && !objective.f16) throw new Error(`fp16: the ${objective.key} objective was traced without f16 compute`);
  return {
    G: p.G,
    names: p.trainable,
    objective,
    optimizer: optimizer ?? planOptimizer(model, p),
    precision: fp16 ? fp16Precision : f32Precision,
    maxGradNorm: p.maxGradNorm,
  };
}

/** Traces the step of `objective` under plan `p` (see builder.ts). */
export function traceStep(model: Model, p: StepPlan, objective: Objective, optimizer?: Optimizer): Graph {
  return buildStep(composeStep(model, p, objective, optimizer));
}
