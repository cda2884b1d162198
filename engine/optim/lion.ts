/**
 * Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms") as transformers' `optim: lion_32bit` /
 * `paged_lion_32bit` runs it: bitsandbytes' `Lion` with `betas = (adam_beta1, adam_beta2)`, the lr and the
 * param group's weight decay (HF's groups: none on biases and norms). One state per param, `exp_avg`. The update,
 * line by line as lucidrains/lion-pytorch `lion_pytorch.py` `update_fn` (the reference bitsandbytes' 32-bit kernel
 * follows), traced as graph ops:
 *
 *   p ← p·(1 − lr·wd)                            # stepweight decay
 *   c ← sign(β1·m + (1 − β1)·g)                  # update = exp_avg.clone().mul_(beta1).add(grad, 1 - beta1).sign_()
 *   p ← p − lr·c                                 # p.add_(update, alpha=-lr)
 *   m ← β2·m + (1 − β2)·g                        # exp_avg.mul_(beta2).add_(grad, alpha=1 - beta2)
 *
 * Paging (`paged_`) is a CUDA memory matter and changes nothing in the math.
 * @module
 */
import { add, assign, graphOf, mul, sign, sub, type Tensor, where } from "../graph/mod.ts";

/** Lion's hyper-parameters. */
export interface LionOptions {
  beta1: number;
  beta2: number;
  weightDecay: number;
}

/** Checks betas in [0, 1) and finite settings, naming `what`. */
export function checkBetas(what: string, o: Record<string, number>): void {
  for (const [k, x] of Object.entries(o)) {
    if (!Number.isFinite(x)) throw new Error(`${what}: ${k} must be finite, got ${x}`);
  }
  for (const k of ["beta1", "beta2"]) {
    if (k in o && !(o[k] >= 0 && o[k] < 1)) throw new Error(`${what}: ${k} must be in [0, 1), got ${o[k]}`);
  }
}

/**
 * One Lion step of `param` with its state `m` (zeros at the start), `lr` an f32 scalar input, `gradScale` (clipping)
 * multiplying the gradient, `gate` (fp16's finite check) keeping every value where it is 0.
 */
export function lion(
  param: Tensor,
  grad: Tensor,
  m: Tensor,
  lr: Tensor,
  o: LionOptions,
  gradScale?: Tensor,
  gate?: Tensor,
): void {
  graphOf(param, grad, m, lr);
  checkBetas("lion", { ...o });
  const g = gradScale ? mul(grad, gradScale) : grad;
  let p1 = o.weightDecay ? mul(param, sub(1, mul(lr, o.weightDecay))) : param;
  p1 = sub(p1, mul(sign(add(mul(m, o.beta1), mul(g, 1 - o.beta1))), lr));
  const m1 = add(mul(m, o.beta2), mul(g, 1 - o.beta2));
  const keep = (old: Tensor, next: Tensor) => (gate ? where(gate, next, old) : next);
  assign(m, keep(m, m1));
  assign(param, keep(param, p1));
}
