/**
 * Adafactor as HF Trainer runs `optim: adafactor`: transformers' `Adafactor` (optimization.py) with
 * `scale_parameter=False, relative_step=False` (so `warmup_init` False), `lr` the schedule's, its defaults
 * `eps=(1e-30, 1e-3)`, `clip_threshold=1.0`, `decay_rate=-0.8`, `beta1=None` (no first moment), and the param group's
 * weight decay (HF's groups: none on biases and norms). Params of rank >= 2 keep factored second moments (a row and
 * a column mean); others a full one. Line by line as `Adafactor.step`, traced as graph ops (t = step, from 1):
 *
 *   β2t ← 1 − t^decay_rate                                   # beta2t = 1.0 - math.pow(state["step"], decay_rate)
 *   u ← g² + eps1                                            # update = (grad**2) + eps[0]
 *   factored: row ← β2t·row + (1 − β2t)·mean(u, −1)           # exp_avg_sq_row.mul_(beta2t).add_(...)
 *             col ← β2t·col + (1 − β2t)·mean(u, −2)
 *             u ← rsqrt(row / mean(row, −1))[…, :, None] · rsqrt(col)[…, None, :] · g     # _approx_sq_grad · grad
 *   else:     v ← β2t·v + (1 − β2t)·u;  u ← rsqrt(v)·g
 *   u ← u / max(1, rms(u) / clip_threshold)                  # update.div_((_rms(update) / clip).clamp_(min=1.0))
 *   u ← lr·u
 *   p ← p − wd·lr·p − u                                      # p.add_(p, alpha=-wd*lr); p.add_(-update)
 *
 * (`scale_parameter=False` leaves `state["RMS"]` unused, so it is not kept.)
 * @module
 */
import {
  add,
  assign,
  div,
  graphOf,
  maximum,
  mean,
  mul,
  pow,
  reshape,
  rsqrt,
  sqrt,
  sub,
  type Tensor,
  where,
} from "../graph/mod.ts";

/** transformers' Adafactor constructor defaults that HF Trainer keeps. */
export const ADAFACTOR_DEFAULTS = { eps1: 1e-30, clipThreshold: 1.0, decayRate: -0.8 } as const;

/** Adafactor's settings (the param group's). */
export interface AdafactorOptions {
  weightDecay: number;
  eps1?: number;
  clipThreshold?: number;
  decayRate?: number;
}

/** Whether a param of `shape` keeps factored second moments (`Adafactor._get_options`: rank >= 2). */
export const adafactorFactored = (shape: readonly number[]) => shape.length >= 2;

/** A param's Adafactor states, named as in transformers' state dict, with their shapes. */
export function adafactorStates(name: string, shape: readonly number[]): { name: string; shape: number[] }[] {
  if (!adafactorFactored(shape)) return [{ name: `${name}.exp_avg_sq`, shape: [...shape] }];
  return [
    { name: `${name}.exp_avg_sq_row`, shape: shape.slice(0, -1) },
    { name: `${name}.exp_avg_sq_col`, shape: [...shape.slice(0, -2), shape[shape.length - 1]] },
  ];
}

/**
 * One Adafactor step of `param` (see the module doc): `states` are the params {@link adafactorStates} names, in that
 * order (zeros at the start); `lr` and `step` f32 scalar inputs (step from 1); `gradScale` multiplies the gradient;
 * `gate` (fp16's finite check) keeps every value where it is 0.
 */
export function adafactor(
  param: Tensor,
  grad: Tensor,
  states: readonly Tensor[],
  lr: Tensor,
  step: Tensor,
  o: AdafactorOptions,
  gradScale?: Tensor,
  gate?: Tensor,
): void {
  graphOf(param, grad, lr, step, ...states);
  const eps1 = o.eps1 ?? ADAFACTOR_DEFAULTS.eps1, clip = o.clipThreshold ?? ADAFACTOR_DEFAULTS.clipThreshold;
  const decayRate = o.decayRate ?? ADAFACTOR_DEFAULTS.decayRate;
  for (const [k, x] of Object.entries({ eps1, clip, decayRate, weightDecay: o.weightDecay })) {
    if (!Number.isFinite(x)) throw new Error(`adafactor: ${k} must be finite, got ${x}`);
  }
  const shape = param.shape, factored = adafactorFactored(shape);
  if (states.length !== (factored ? 2 : 1)) {
    throw new Error(`adafactor: expected ${factored ? 2 : 1} states for [${shape.join(", ")}], got ${states.length}`);
  }
  const keep = (old: Tensor, next: Tensor) => (gate ? where(gate, next, old) : next);
  const g = gradScale ? mul(grad, gradScale) : grad;
  const beta2t = sub(1, pow(step, decayRate)), rest = sub(1, beta2t);
  const sq = add(mul(g, g), eps1);
  let u: Tensor;
  if (factored) {
    const [row, col] = states, r = shape.length;
    const row1 = add(mul(row, beta2t), mul(mean(sq, -1), rest));
    const col1 = add(mul(col, beta2t), mul(mean(sq, -2), rest));
    const rFactor = reshape(rsqrt(div(row1, mean(row1, -1, true))), [...shape.slice(0, -1), 1]);
    const cFactor = reshape(rsqrt(col1), [...shape.slice(0, r - 2), 1, shape[r - 1]]);
    u = mul(mul(rFactor, cFactor), g);
    assign(row, keep(row, row1));
    assign(col, keep(col, col1));
  } else {
    const [v] = states;
    const v1 = add(mul(v, beta2t), mul(sq, rest));
    u = mul(rsqrt(v1), g);
    assign(v, keep(v, v1));
  }
  const rms = sqrt(mean(mul(u, u)));
  u = mul(div(u, maximum(div(rms, clip), 1.0)), lr);
  const p1 = sub(o.weightDecay ? sub(param, mul(param, mul(lr, o.weightDecay))) : param, u);
  assign(param, keep(param, p1));
}
