/**
 * Adam-mini (Zhang et al. 2024) as LLaMA-Factory's `use_adam_mini` builds it (`_create_adam_mini_optimizer`:
 * `Adam_mini(named_parameters, lr, betas=(adam_beta1, adam_beta2), eps=adam_epsilon, weight_decay, dim=hidden_size,
 * n_heads=num_attention_heads, n_kv_heads=num_key_value_heads)`). Ported line by line from the official
 * zyushun/Adam-mini `adam_mini/adam_mini.py` (`Adam_mini.__init__` / `step`, commit aba4ecd): every trainable param is
 * one group; names with "norm" (or "ln_f") get no weight decay, every other param does. The partition by name:
 *
 * - embedding and output blocks (name contains "embed", "embd", "wte", "lm_head.weight" or "output.weight"): AdamW,
 *   states `m`, `v` of the param's shape;
 * - queries and keys ("q_proj.weight", "k_proj.weight", "wq.weight", "wk.weight"): one second moment per head, the
 *   param viewed as [heads, dim·dim / n_heads]; states `m` ([heads, head_numel]) and `vmean` ([heads, 1]);
 * - every other param: one second moment for the whole tensor, `vmean` ([1]), and `m`.
 *
 * Per step (t from 1): p ← p·(1 − lr·wd); m ← lerp(m, g, 1 − β1); vmean ← β2·vmean + (1 − β2)·mean(g²) over the
 * block; h ← √vmean / √(1 − β2ᵗ) + eps; p ← p − lr · m / ((1 − β1ᵗ)·h). (AdamW blocks: the same with v = g² per
 * element.)
 * @module
 */
import { add, assign, div, graphOf, mean, mul, pow, reshape, sqrt, sub, type Tensor, where } from "../graph/mod.ts";
import { checkBetas } from "./lion.ts";

/** Adam-mini's settings (see the module doc). */
export interface AdamMiniOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** hidden_size and num_attention_heads: a query / key head's block is dim·dim / nHeads elements. */
  dim: number;
  nHeads: number;
}

const EMBD = ["embed", "embd", "wte", "lm_head.weight", "output.weight"];
const WQK = ["k_proj.weight", "q_proj.weight", "wq.weight", "wk.weight"];

/** How Adam-mini treats a param by its name. */
export function adamMiniBlock(name: string): "adamw" | "heads" | "tensor" {
  if (EMBD.some((n) => name.includes(n))) return "adamw";
  if (WQK.some((n) => name.includes(n))) return "heads";
  return "tensor";
}

/** Whether the param decays (no decay on names with "norm" or "ln_f"). */
export const adamMiniDecays = (name: string) => !(name.includes("norm") || name.includes("ln_f"));

/** A param's states, named as in Adam-mini's state dict, with their shapes. */
export function adamMiniStates(
  name: string,
  shape: readonly number[],
  o: Pick<AdamMiniOptions, "dim" | "nHeads">,
): { name: string; shape: number[] }[] {
  const block = adamMiniBlock(name), n = shape.reduce((a, b) => a * b, 1);
  if (block === "adamw") return [{ name: `${name}.m`, shape: [...shape] }, { name: `${name}.v`, shape: [...shape] }];
  if (block === "tensor") return [{ name: `${name}.m`, shape: [...shape] }, { name: `${name}.vmean`, shape: [1] }];
  if ((o.dim * o.dim) % o.nHeads !== 0) throw new Error(`adam-mini: dim ${o.dim} is not a multiple of ${o.nHeads}`);
  const headNumel = (o.dim * o.dim) / o.nHeads;
  if (n % headNumel !== 0) {
    throw new Error(`adam-mini: ${name} [${shape.join(", ")}] does not split into heads of ${headNumel} elements`);
  }
  return [
    { name: `${name}.m`, shape: [n / headNumel, headNumel] },
    { name: `${name}.vmean`, shape: [n / headNumel, 1] },
  ];
}

/**
 * One Adam-mini step of `param` named `name`: `states` as {@link adamMiniStates} gives them, in order (zeros at the
 * start); `lr`, `step` f32 scalar inputs; `gradScale` multiplies the gradient; `gate` keeps every value where 0.
 */
export function adamMini(
  name: string,
  param: Tensor,
  grad: Tensor,
  states: readonly Tensor[],
  lr: Tensor,
  step: Tensor,
  o: AdamMiniOptions,
  gradScale?: Tensor,
  gate?: Tensor,
): void {
  graphOf(param, grad, lr, step, ...states);
  checkBetas("adam-mini", { beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay });
  const keep = (old: Tensor, next: Tensor) => (gate ? where(gate, next, old) : next);
  const block = adamMiniBlock(name), wd = adamMiniDecays(name) ? o.weightDecay : 0;
  const [m, v] = states;
  const g = reshape(gradScale ? mul(grad, gradScale) : grad, m.shape);
  const g2 = mul(g, g);
  const v1 = add(
    mul(v, o.beta2),
    mul(block === "adamw" ? g2 : block === "heads" ? mean(g2, 1, true) : reshape(mean(g2), [1]), 1 - o.beta2),
  );
  const decayed = wd > 0 ? mul(param, sub(1, mul(lr, wd))) : param;
  const m1 = add(m, mul(sub(g, m), 1 - o.beta1));
  const bc1 = sub(1, pow(o.beta1, step)), bc2 = sub(1, pow(o.beta2, step));
  const h = add(div(sqrt(v1), sqrt(bc2)), o.eps);
  const update = mul(div(m1, mul(bc1, h)), lr);
  assign(m, keep(m, m1));
  assign(v, keep(v, v1));
  assign(param, keep(param, sub(decayed, reshape(update, param.shape))));
}
