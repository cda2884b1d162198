/**
 * The optimizers of `optim: adafactor`, `optim: lion_32bit` (and `paged_lion_32bit`), `optim: adamw_8bit` and LLaMA-Factory's
 * `use_muon` / `use_adam_mini` for the step builder; the math of each update is in engine/optim (adafactor.ts, lion.ts,
 * muon.ts, adam_mini.ts, bnb_adamw.ts).
 * Adafactor and Lion take HF's param groups (no weight decay on biases and norms) and LoRA+'s lr ratio as AdamW does;
 * Muon takes LF's single group (decay on every param).
 * @module
 */
import { mul, type Tensor } from "../../graph/mod.ts";
import { adafactor, adafactorStates } from "../../optim/adafactor.ts";
import { lion } from "../../optim/lion.ts";
import { muon, muonStates } from "../../optim/muon.ts";
import { adamMini, type AdamMiniOptions, adamMiniStates } from "../../optim/adam_mini.ts";
import { bnbAdamw, bnbAdamwStates } from "../../optim/bnb_adamw.ts";
import { decays, type LrRatio, type Optimizer } from "./optimizer.ts";

/** `lr` times `ratio` (cached per ratio), or `lr` itself for 1. */
function ratioLr(lr: Tensor, ratio: number, cache: Map<number, Tensor>): Tensor {
  if (ratio === 1) return lr;
  let t = cache.get(ratio);
  if (!t) cache.set(ratio, t = mul(lr, ratio));
  return t;
}

/** Lion's state name (lion-pytorch's `exp_avg`). */
export const lionStateName = (p: string) => `${p}.exp_avg`;

/** bitsandbytes' Lion as HF builds it: betas (adam_beta1, adam_beta2), HF's decay groups; states under `prefix`. */
export function lionOptimizer(
  prefix: string,
  h: { beta1: number; beta2: number; weightDecay: number; lrRatio?: LrRatio },
): Optimizer {
  const ratio = h.lrRatio ?? (() => 1);
  return {
    key: "lion",
    gated: true,
    states: (name, shape) => [{ name: prefix + lionStateName(name), shape: [...shape] }],
    update(g, u) {
      const lrs = new Map<number, Tensor>();
      u.params.forEach((w, i) => {
        const name = u.names[i], m = g.param(prefix + lionStateName(name), w.shape);
        const o = { beta1: h.beta1, beta2: h.beta2, weightDecay: decays(name) ? h.weightDecay : 0 };
        lion(w, u.grads[i], m, ratioLr(u.lr, ratio(name, w.shape), lrs), o, u.gradScale, u.gate);
      });
    },
  };
}

/** transformers' Adafactor as HF Trainer builds it (see engine/optim/adafactor.ts); states under `prefix`. */
export function adafactorOptimizer(prefix: string, h: { weightDecay: number; lrRatio?: LrRatio }): Optimizer {
  const ratio = h.lrRatio ?? (() => 1);
  return {
    key: "adafactor",
    gated: true,
    states: (name, shape) => adafactorStates(name, shape).map((s) => ({ name: prefix + s.name, shape: s.shape })),
    update(g, u) {
      const lrs = new Map<number, Tensor>();
      u.params.forEach((w, i) => {
        const name = u.names[i];
        const st = adafactorStates(name, w.shape).map((s) => g.param(prefix + s.name, s.shape));
        const o = { weightDecay: decays(name) ? h.weightDecay : 0 };
        adafactor(w, u.grads[i], st, ratioLr(u.lr, ratio(name, w.shape), lrs), u.step, o, u.gradScale, u.gate);
      });
    },
  };
}

/** LF's Muon (Muon on 2-D non-embedding matrices, its AdamW on the rest); states under `prefix`. */
export function muonOptimizer(
  prefix: string,
  h: { beta1: number; beta2: number; eps: number; weightDecay: number },
): Optimizer {
  return {
    key: "muon",
    gated: true,
    states: (name, shape) => muonStates(name, shape).map((s) => ({ name: prefix + s.name, shape: s.shape })),
    update(g, u) {
      u.params.forEach((w, i) => {
        const name = u.names[i];
        const st = muonStates(name, w.shape).map((s) => g.param(prefix + s.name, s.shape));
        muon(name, w, u.grads[i], st, u.lr, u.step, h, u.gradScale, u.gate);
      });
    },
  };
}

/** Adam-mini as LF builds it (dim, heads from the model's config); states under `prefix`. */
export function adamMiniOptimizer(prefix: string, h: AdamMiniOptions): Optimizer {
  return {
    key: "adam_mini",
    gated: true,
    states: (name, shape) => adamMiniStates(name, shape, h).map((s) => ({ name: prefix + s.name, shape: s.shape })),
    update(g, u) {
      u.params.forEach((w, i) => {
        const name = u.names[i];
        const st = adamMiniStates(name, w.shape, h).map((s) => g.param(prefix + s.name, s.shape));
        adamMini(name, w, u.grads[i], st, u.lr, u.step, h, u.gradScale, u.gate);
      });
    },
  };
}

/**
 * bitsandbytes' AdamW with 8-bit states (`optim: adamw_8bit`, engine/optim/bnb_adamw.ts) as HF builds it: betas, eps,
 * HF's decay groups and LoRA+'s lr ratio; states under `prefix` (8-bit for params of 4096 elements or more).
 */
export function adamw8bitOptimizer(
  prefix: string,
  h: { beta1: number; beta2: number; eps: number; weightDecay: number; lrRatio?: LrRatio },
): Optimizer {
  const ratio = h.lrRatio ?? (() => 1);
  return {
    key: "adamw_8bit",
    gated: true,
    states: (name, shape) => bnbAdamwStates(name, shape).map((s) => ({ ...s, name: prefix + s.name })),
    update(g, u) {
      const lrs = new Map<number, Tensor>();
      u.params.forEach((w, i) => {
        const name = u.names[i];
        const st = bnbAdamwStates(name, w.shape).map((s) => g.param(prefix + s.name, s.shape, s.dtype));
        const o = { beta1: h.beta1, beta2: h.beta2, eps: h.eps, weightDecay: decays(name) ? h.weightDecay : 0 };
        bnbAdamw(w, u.grads[i], st, ratioLr(u.lr, ratio(name, w.shape), lrs), u.step, o, u.gradScale, u.gate);
      });
    },
  };
}
