/**
 * The update side of a training step: an {@link Optimizer} writes every trainable parameter's update (and its
 * states) into the step graph, after the precision (precision.ts) has clipped and possibly gated the gradients.
 * AdamW and SGD (torch's), with HF's rule of no weight decay on biases and norms and LoRA+'s lr ratio on lora_B
 * matrices, are here; GaLore's projected AdamW is galore.ts, Adafactor, Lion and Muon optimizer_more.ts. The math of each update is an op of engine/graph
 * (`adamw`, `sgd`) or of engine/optim (`galoreAdamw`).
 * @module
 */
import { adamw, type Graph, mul, sgd, type Tensor } from "../../graph/mod.ts";

/** Optimizer state names of a param (as torch names them in its state dict). */
export const stateNames = (p: string) => ({ m: `${p}.exp_avg`, v: `${p}.exp_avg_sq`, buf: `${p}.momentum_buffer` });

/**
 * HF's rule (`Trainer.get_decay_parameter_names`): no weight decay on biases and norm weights; everything else decays,
 * DoRA's magnitude vectors included.
 */
export function decays(name: string): boolean {
  return !(name.endsWith(".bias") || /norm\.weight$/.test(name));
}

/** What an optimizer updates, from the step builder. */
export interface Update {
  /** Trainable parameter names (without the model prefix), parallel to `params` and `grads`. */
  names: readonly string[];
  params: readonly Tensor[];
  /** The gradients (or what {@link Optimizer.gradients} made of them). */
  grads: readonly Tensor[];
  /** f32 scalar inputs: the learning rate and the optimizer's step count (from 1). */
  lr: Tensor;
  step: Tensor;
  /** Multiplies every gradient (clipping, fp16 unscaling). */
  gradScale?: Tensor;
  /** Skip the whole update where this f32 scalar is 0 (fp16's overflow check). */
  gate?: Tensor;
}

/** An optimizer (see the module doc). */
export interface Optimizer {
  /** Distinguishes compiled graphs. */
  readonly key: string;
  /** Whether its update honours {@link Update.gate} (fp16 needs it). */
  readonly gated: boolean;
  /**
   * The states of a parameter of `shape`, with their store names (model prefix included); `dtype` i32 for 8-bit codes
   * stored four to a word, whose `codes` is the shape a checkpoint stores them in (uint8), f32 when absent.
   */
  states(
    name: string,
    shape: readonly number[],
  ): { name: string; shape: number[]; dtype?: "f32" | "i32"; codes?: number[] }[];
  /** Traces the update of every parameter of `u` into `g`. */
  update(g: Graph, u: Update): void;
  /**
   * The gradients that clipping and {@link update} see, from the full ones of `names` (BAdam's ratio mode keeps a
   * fraction of each param's entries, as its gradient hooks do before HF clips); absent: the full gradients.
   */
  gradients?(g: Graph, names: readonly string[], grads: readonly Tensor[]): Tensor[];
}

/** Hyper-parameters of {@link adamwOptimizer} (torch.optim.AdamW's). */
export interface AdamwHyper {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Whether a param decays (default {@link decays}; BAdam decays every param). */
  decays?: (name: string) => boolean;
  /** The lr multiplier of a param (LoRA+: the ratio on lora_B and 1-dim params); default 1. */
  lrRatio?: LrRatio;
}

/** The lr multiplier of a parameter by name and shape. */
export type LrRatio = (name: string, shape: readonly number[]) => number;

/** The lr of parameter `name`: `lr` times its ratio, when that is not 1. */
function lrOf(lr: Tensor, ratio: number, cache: Map<number, Tensor>): Tensor {
  if (ratio === 1) return lr;
  let t = cache.get(ratio);
  if (!t) cache.set(ratio, t = mul(lr, ratio));
  return t;
}

/** torch's AdamW with its states `exp_avg` / `exp_avg_sq` under `prefix` (the model's). */
export function adamwOptimizer(prefix: string, h: AdamwHyper): Optimizer {
  const decay = h.decays ?? decays, ratio = h.lrRatio ?? (() => 1);
  return {
    key: "adamw",
    gated: true,
    states: (name, shape) => {
      const st = stateNames(name);
      return [{ name: prefix + st.m, shape: [...shape] }, { name: prefix + st.v, shape: [...shape] }];
    },
    update(g, u) {
      const lrs = new Map<number, Tensor>();
      u.params.forEach((w, i) => {
        const name = u.names[i], st = stateNames(name);
        const m = g.param(prefix + st.m, w.shape), v = g.param(prefix + st.v, w.shape);
        const o = { beta1: h.beta1, beta2: h.beta2, eps: h.eps, weightDecay: decay(name) ? h.weightDecay : 0 };
        adamw(w, u.grads[i], m, v, lrOf(u.lr, ratio(name, w.shape), lrs), u.step, { ...o, gate: u.gate }, u.gradScale);
      });
    },
  };
}

/**
 * torch's SGD (Whetstone's `optim: sgd`), as transformers' `_get_sgd` builds it: momentum (default 0: no states),
 * nesterov, and a weight decay (HF's groups: none on biases and norms); the momentum buffer is torch's
 * `momentum_buffer`.
 */
export function sgdOptimizer(
  prefix: string,
  h: { weightDecay: number; momentum?: number; nesterov?: boolean; lrRatio?: LrRatio },
): Optimizer {
  const ratio = h.lrRatio ?? (() => 1), momentum = h.momentum ?? 0;
  return {
    key: momentum ? `sgd:${momentum}:${!!h.nesterov}` : "sgd",
    gated: true,
    states: (name, shape) => momentum ? [{ name: prefix + stateNames(name).buf, shape: [...shape] }] : [],
    update(g, u) {
      const lrs = new Map<number, Tensor>();
      u.params.forEach((w, i) => {
        const name = u.names[i], wd = decays(name) ? h.weightDecay : 0;
        const lr = lrOf(u.lr, ratio(name, w.shape), lrs);
        const buf = momentum ? g.param(prefix + stateNames(name).buf, w.shape) : undefined;
        sgd(w, u.grads[i], lr, { weightDecay: wd, momentum, nesterov: h.nesterov, gate: u.gate }, buf, u.gradScale);
      });
    },
  };
}

/**
 * LoRA+'s lr ratio (`loraplus_lr_ratio`), as LF's `_create_loraplus_optimizer` groups parameters: lora_B matrices and
 * every 1-dim parameter (DoRA's magnitude vectors, biases) train at ratio × lr, the rest (lora_A) at lr.
 */
export function loraplusRatio(isLora: boolean, ratio: number): LrRatio | undefined {
  if (!isLora || !(ratio > 0) || ratio === 1) return undefined;
  return (name, shape) => (name.includes("lora_B") || shape.length === 1 ? ratio : 1);
}
