/**
 * Muon as LLaMA-Factory's `use_muon` runs it: `third_party/muon/muon.py` (Moonshot AI's Moonlight port of
 * KellerJordan/Muon) built by LF's `_create_muon_optimizer` with `lr = learning_rate`, `wd = weight_decay`,
 * `adamw_betas = (adam_beta1, adam_beta2)`, `adamw_eps = adam_epsilon` and its defaults `momentum=0.95`,
 * `nesterov=True`, `ns_steps=5`. Trainable 2-D params whose name has neither "embed" nor "lm_head" take the Muon
 * update; the rest take Muon's internal AdamW. Weight decay applies to every param (LF passes no groups).
 *
 * Muon update, line by line as `Muon.step` (traced as graph ops):
 *
 *   buf ← μ·buf + g                                          # buf.mul_(momentum).add_(g)
 *   g ← g + μ·buf (nesterov)                                 # g = g.add(buf, alpha=momentum)
 *   u ← NS5(g)                                               # zeropower_via_newtonschulz5(g, steps=5)
 *   p ← p·(1 − lr·wd)                                        # p.data.mul_(1 - lr * wd)
 *   p ← p − lr·0.2·√max(A, B) · u                            # adjust_lr_for_muon; p.data.add_(u, alpha=-adjusted_lr)
 *
 * NS5: X = g (transposed when A > B); X ← X / (‖X‖_F + 1e-7); 5 times { M = X·Xᵀ; N = b·M + c·M·M; X ← a·X + N·X }
 * with (a, b, c) = (3.4445, −4.7750, 2.0315); transposed back. (The original runs NS in bf16; here it runs in f32.)
 *
 * Internal AdamW (states moment1, moment2; t = step, from 1):
 *
 *   m ← lerp(m, g, 1 − β1);  v ← lerp(v, g², 1 − β2)         # buf1.lerp_(g, 1 - beta1); buf2.lerp_(g.square(), ...)
 *   p ← p·(1 − lr·wd) − lr·√(1 − β2ᵗ)/(1 − β1ᵗ) · m / (eps + √v)
 * @module
 */
import {
  add,
  assign,
  div,
  graphOf,
  matmul,
  mul,
  pow,
  sqrt,
  sub,
  sum,
  type Tensor,
  transpose,
  where,
} from "../graph/mod.ts";
import { checkBetas } from "./lion.ts";

/** Newton-Schulz coefficients of `zeropower_via_newtonschulz5`. */
export const NS_COEFFS = [3.4445, -4.775, 2.0315] as const;

/** Muon's settings (LF's construction; see the module doc). */
export interface MuonOptions {
  weightDecay: number;
  /** Internal AdamW's betas and eps. */
  beta1: number;
  beta2: number;
  eps: number;
  /** Defaults 0.95, true, 5. */
  momentum?: number;
  nesterov?: boolean;
  nsSteps?: number;
}

/** Whether LF's `_create_muon_optimizer` gives `name` (a trainable param of `shape`) to Muon rather than AdamW. */
export const usesMuon = (name: string, shape: readonly number[]) =>
  shape.length === 2 && !name.includes("embed") && !name.includes("lm_head");

/** A param's Muon states, named as in Muon's state dict, with their shapes. */
export function muonStates(name: string, shape: readonly number[]): { name: string; shape: number[] }[] {
  if (usesMuon(name, shape)) return [{ name: `${name}.momentum_buffer`, shape: [...shape] }];
  return [{ name: `${name}.moment1`, shape: [...shape] }, { name: `${name}.moment2`, shape: [...shape] }];
}

/** `zeropower_via_newtonschulz5(g, steps)` in f32 graph ops (g 2-D). */
export function newtonSchulz5(g: Tensor, steps = 5): Tensor {
  if (g.rank !== 2) throw new Error(`newtonSchulz5: expected a 2-D tensor, got [${g.shape.join(", ")}]`);
  const [a, b, c] = NS_COEFFS, tall = g.shape[0] > g.shape[1];
  let x = tall ? transpose(g) : g;
  x = div(x, add(sqrt(sum(mul(x, x))), 1e-7));
  for (let i = 0; i < steps; i++) {
    const m = matmul(x, x, { transB: true });
    const n = add(mul(m, b), mul(matmul(m, m), c));
    x = add(mul(x, a), matmul(n, x));
  }
  return tall ? transpose(x) : x;
}

/** `Muon.adjust_lr_for_muon`'s ratio for a [A, B] param: 0.2·√max(A, B). */
export const muonLrRatio = (shape: readonly number[]) => 0.2 * Math.sqrt(Math.max(shape[0], shape[1]));

/**
 * One Muon step of `param` named `name` (see the module doc): `states` as {@link muonStates} names them, in order
 * (zeros at the start); `lr`, `step` f32 scalar inputs; `gradScale` multiplies the gradient; `gate` (fp16's finite
 * check) keeps every value where it is 0.
 */
export function muon(
  name: string,
  param: Tensor,
  grad: Tensor,
  states: readonly Tensor[],
  lr: Tensor,
  step: Tensor,
  o: MuonOptions,
  gradScale?: Tensor,
  gate?: Tensor,
): void {
  graphOf(param, grad, lr, step, ...states);
  const mu = o.momentum ?? 0.95, nesterov = o.nesterov ?? true, nsSteps = o.nsSteps ?? 5;
  checkBetas("muon", { beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay, momentum: mu });
  const keep = (old: Tensor, next: Tensor) => (gate ? where(gate, next, old) : next);
  const g = gradScale ? mul(grad, gradScale) : grad;
  const decayed = o.weightDecay ? mul(param, sub(1, mul(lr, o.weightDecay))) : param;
  if (usesMuon(name, param.shape)) {
    const [buf] = states;
    const buf1 = add(mul(buf, mu), g);
    const u = newtonSchulz5(nesterov ? add(g, mul(buf1, mu)) : buf1, nsSteps);
    assign(buf, keep(buf, buf1));
    assign(param, keep(param, sub(decayed, mul(u, mul(lr, muonLrRatio(param.shape))))));
    return;
  }
  const [m, v] = states;
  const m1 = add(m, mul(sub(g, m), 1 - o.beta1));
  const v1 = add(v, mul(sub(mul(g, g), v), 1 - o.beta2));
  const u = div(m1, add(sqrt(v1), o.eps));
  const bc1 = sub(1, pow(o.beta1, step)), bc2 = sub(1, pow(o.beta2, step));
  const stepSize = div(mul(lr, sqrt(bc2)), bc1);
  assign(m, keep(m, m1));
  assign(v, keep(v, v1));
  assign(param, keep(param, sub(decayed, mul(u, stepSize))));
}
