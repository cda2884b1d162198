/**
 * Optimizer steps as graph ops that update persistent params and states in place (OpDef `effects`):
 * they have no outputs, and the planner runs them after every other node, so the forward and backward
 * passes of the same step read the old values. Learning rate, step and gradient scale are scalar
 * tensors (graph inputs fed per step), so schedules and clipping need no recompilation.
 *
 * @example
 * ```ts
 * const lr = g.input("lr", []), step = g.input("step", []);
 * const { scale } = clipScale(grads, 1.0);
 * params.forEach((p, i) => adamw(p, grads[i], m[i], v[i], lr, step, { weightDecay: 0.01 }, scale));
 * ```
 *
 * A gated op (attrs `gated: true`, e.g. from `adamw(..., { gate: ok })`) takes one more f32 scalar input last,
 * `ok`: when it is 0 the op writes nothing (param and states keep their values), else it updates as usual. fp16
 * loss scaling skips the step on overflow this way without reading anything back.
 * @module
 */
import { defineOp, type RefTensor, registerOps } from "../op.ts";
import { graphOf, type Tensor } from "../graph.ts";
import { fmtInfo, numel, type TensorInfo } from "../types.ts";
import { add, div, minimum, mul, sqrt } from "./elementwise.ts";
import { sum } from "./reduce.ts";

/** Attrs of the adamw op (torch.optim.AdamW's hyper-parameters). */
export interface AdamWAttrs extends Record<string, unknown> {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** The last input is the gate `ok` (f32 scalar): 0 skips the update. */
  gated?: boolean;
}

/** Attrs of the sgd ops (torch.optim.SGD with dampening 0). */
export interface SgdAttrs extends Record<string, unknown> {
  momentum: number;
  weightDecay: number;
  nesterov: boolean;
  /** The last input is the gate `ok` (f32 scalar): 0 skips the update. */
  gated?: boolean;
}

/** Checks tensors and scalars of an optimizer op: `same` f32 like input 0, `scalars` f32 with one element. */
function checkOperands(ins: readonly TensorInfo[], same: number[], scalars: number[]): TensorInfo[] {
  const p = ins[0];
  for (const i of [0, ...same]) {
    if (ins[i].dtype !== "f32" || ins[i].shape.join() !== p.shape.join()) {
      throw new Error(`input ${i} must be f32 [${p.shape.join(", ")}] like the param, got ${fmtInfo(ins[i])}`);
    }
  }
  for (const i of scalars) {
    if (i < ins.length && (ins[i].dtype !== "f32" || numel(ins[i].shape) !== 1)) {
      throw new Error(`input ${i} must be an f32 scalar, got ${fmtInfo(ins[i])}`);
    }
  }
  return [];
}

/** Checks the input count: `min`, + an optional gradScale, + the gate when `gated`. */
function checkArity(ins: readonly TensorInfo[], min: number, gated: boolean | undefined): void {
  const base = gated ? min + 1 : min;
  if (ins.length !== base && ins.length !== base + 1) {
    throw new Error(
      `expected ${base} inputs (+ optional gradScale${gated ? ", then the gate" : ""}), got ${ins.length}`,
    );
  }
}

/** The input indices of the optional gradScale and gate of an optimizer op with `min` required inputs. */
export function optimTail(
  nInputs: number,
  min: number,
  gated: boolean | undefined,
): { scale: number | undefined; gate: number | undefined } {
  const gate = gated ? nInputs - 1 : undefined;
  const rest = gated ? nInputs - 1 : nInputs;
  return { scale: rest > min ? min : undefined, gate };
}

const scaleOf = (ins: readonly RefTensor[], at: number | undefined) => (at === undefined ? 1 : ins[at].data[0]);
/** Whether a gated op's gate says skip (ok == 0). */
const skipped = (ins: readonly RefTensor[], at: number | undefined) => at !== undefined && ins[at].data[0] === 0;

registerOps([
  // param [...], grad [...], m [...], v [...] f32 (updated in place); lr [], step [] f32; gradScale [] f32
  // g = grad·gradScale; p ← p·(1 − lr·wd); m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²;
  // p ← p − lr/(1 − β1^t) · m / (√v / √(1 − β2^t) + eps)   (torch.optim.AdamW; t = step, from 1)
  // gated: ok [] f32 last; ok == 0 writes nothing. No gradient.
  defineOp<AdamWAttrs>({
    name: "adamw",
    effects: [0, 2, 3],
    infer: (ins, { gated }) => {
      checkArity(ins, 6, gated);
      return checkOperands(ins, [1, 2, 3], [4, 5, 6, 7]);
    },
    ref: (ins, { beta1, beta2, eps, weightDecay, gated }) => {
      const tail = optimTail(ins.length, 6, gated);
      if (skipped(ins, tail.gate)) return [];
      const [p, g, m, v, lr, step] = ins;
      const a = lr.data[0], t = step.data[0], gs = scaleOf(ins, tail.scale);
      const bc1 = 1 - Math.pow(beta1, t), bc2 = 1 - Math.pow(beta2, t);
      for (let i = 0; i < p.data.length; i++) {
        const gi = g.data[i] * gs;
        const mi = Math.fround(beta1 * m.data[i] + (1 - beta1) * gi);
        const vi = Math.fround(beta2 * v.data[i] + (1 - beta2) * gi * gi);
        m.data[i] = mi;
        v.data[i] = vi;
        const pi = p.data[i] * (1 - a * weightDecay);
        p.data[i] = Math.fround(pi - (a / bc1) * mi / (Math.sqrt(vi) / Math.sqrt(bc2) + eps));
      }
      return [];
    },
  }),
  // param [...] f32 (in place), grad [...] f32, lr [] f32, gradScale [] f32
  // d = grad·gradScale + wd·p; p ← p − lr·d   (torch.optim.SGD, momentum 0).
  // gated: ok [] f32 last; ok == 0 writes nothing. No gradient.
  defineOp<SgdAttrs>({
    name: "sgd",
    effects: [0],
    infer: (ins, { gated }) => {
      checkArity(ins, 3, gated);
      return checkOperands(ins, [1], [2, 3, 4]);
    },
    ref: (ins, { weightDecay, gated }) => {
      const tail = optimTail(ins.length, 3, gated);
      if (skipped(ins, tail.gate)) return [];
      const [p, g, lr] = ins;
      const a = lr.data[0], gs = scaleOf(ins, tail.scale);
      for (let i = 0; i < p.data.length; i++) {
        p.data[i] = Math.fround(p.data[i] - a * (g.data[i] * gs + weightDecay * p.data[i]));
      }
      return [];
    },
  }),
  // param [...], buf [...] f32 (in place), grad [...] f32, lr [] f32, gradScale [] f32
  // d = grad·gradScale + wd·p; buf ← μ·buf + d; d = nesterov ? d + μ·buf : buf; p ← p − lr·d
  // (torch.optim.SGD, dampening 0: a zero-initialised buf gives torch's first step buf = d.)
  // gated: ok [] f32 last; ok == 0 writes nothing. No gradient.
  defineOp<SgdAttrs>({
    name: "sgd_momentum",
    effects: [0, 2],
    infer: (ins, { gated }) => {
      checkArity(ins, 4, gated);
      return checkOperands(ins, [1, 2], [3, 4, 5]);
    },
    ref: (ins, { momentum, weightDecay, nesterov, gated }) => {
      const tail = optimTail(ins.length, 4, gated);
      if (skipped(ins, tail.gate)) return [];
      const [p, g, buf, lr] = ins;
      const a = lr.data[0], gs = scaleOf(ins, tail.scale);
      for (let i = 0; i < p.data.length; i++) {
        const d = g.data[i] * gs + weightDecay * p.data[i];
        const b = Math.fround(momentum * buf.data[i] + d);
        buf.data[i] = b;
        p.data[i] = Math.fround(p.data[i] - a * (nesterov ? d + momentum * b : b));
      }
      return [];
    },
  }),
]);

/** Options of {@link adamw} (torch.optim.AdamW defaults). */
export interface AdamWOptions {
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** An f32 scalar gate: where it is 0 at run time the update is skipped (param and states unchanged). */
  gate?: Tensor;
}

function finite(op: string, attrs: Record<string, unknown>): void {
  for (const [k, x] of Object.entries(attrs)) {
    if (typeof x === "number" && !Number.isFinite(x)) throw new Error(`${op}: ${k} must be finite, got ${x}`);
  }
}

/**
 * One AdamW step (torch.optim.AdamW, decoupled weight decay), updating `param`, `m` and `v` in place
 * at the end of the graph. `lr` and `step` are f32 scalars fed per step (`step` counts from 1);
 * `gradScale`, an optional f32 scalar, multiplies the gradient (e.g. {@link clipScale}'s scale); `opts.gate`, an
 * optional f32 scalar, skips the whole update when it is 0 at run time.
 */
export function adamw(
  param: Tensor,
  grad: Tensor,
  m: Tensor,
  v: Tensor,
  lr: Tensor,
  step: Tensor,
  opts: AdamWOptions = {},
  gradScale?: Tensor,
): void {
  const attrs: AdamWAttrs = {
    beta1: opts.beta1 ?? 0.9,
    beta2: opts.beta2 ?? 0.999,
    eps: opts.eps ?? 1e-8,
    weightDecay: opts.weightDecay ?? 0.01,
  };
  finite("adamw", attrs);
  if (!(attrs.beta1 >= 0 && attrs.beta1 < 1 && attrs.beta2 >= 0 && attrs.beta2 < 1)) {
    throw new Error(`adamw: betas must be in [0, 1), got ${attrs.beta1} and ${attrs.beta2}`);
  }
  if (opts.gate) attrs.gated = true;
  const ins = [param, grad, m, v, lr, step, ...(gradScale ? [gradScale] : []), ...(opts.gate ? [opts.gate] : [])];
  graphOf(...ins).apply("adamw", ins, attrs);
}

/** Options of {@link sgd} (torch.optim.SGD defaults; dampening is always 0). */
export interface SgdOptions {
  momentum?: number;
  weightDecay?: number;
  nesterov?: boolean;
  /** An f32 scalar gate: where it is 0 at run time the update is skipped (param and buffer unchanged). */
  gate?: Tensor;
}

/**
 * One SGD step (torch.optim.SGD), updating `param` (and the momentum buffer `buf`, required when
 * momentum is not 0; start it at zeros) in place at the end of the graph. `lr` is an f32 scalar fed
 * per step; `gradScale`, an optional f32 scalar, multiplies the gradient; `opts.gate`, an optional f32 scalar,
 * skips the whole update when it is 0 at run time.
 */
export function sgd(
  param: Tensor,
  grad: Tensor,
  lr: Tensor,
  opts: SgdOptions = {},
  buf?: Tensor,
  gradScale?: Tensor,
): void {
  const attrs: SgdAttrs = {
    momentum: opts.momentum ?? 0,
    weightDecay: opts.weightDecay ?? 0,
    nesterov: !!opts.nesterov,
  };
  finite("sgd", attrs);
  if (attrs.nesterov && attrs.momentum <= 0) throw new Error("sgd: nesterov momentum requires momentum > 0");
  if (opts.gate) attrs.gated = true;
  const tail = [...(gradScale ? [gradScale] : []), ...(opts.gate ? [opts.gate] : [])];
  if (attrs.momentum === 0) {
    const ins = [param, grad, lr, ...tail];
    graphOf(...ins).apply("sgd", ins, attrs);
    return;
  }
  if (!buf) throw new Error(`sgd: momentum ${attrs.momentum} needs a momentum buffer (a zero-initialised param)`);
  const ins = [param, grad, buf, lr, ...tail];
  graphOf(...ins).apply("sgd_momentum", ins, attrs);
}

/**
 * Gradient clipping by global norm, as torch's clip_grad_norm_: `norm` = √(Σ‖g‖²) over all `grads`,
 * `scale` = min(1, maxNorm / (norm + 1e-6)). Pass `scale` as the optimizers' gradScale.
 */
export function clipScale(grads: readonly Tensor[], maxNorm: number): { scale: Tensor; norm: Tensor } {
  if (!grads.length) throw new Error("clipScale: expected at least one gradient");
  if (!(maxNorm > 0)) throw new Error(`clipScale: maxNorm must be positive, got ${maxNorm}`);
  let total: Tensor | undefined;
  for (const g of grads) {
    const s = sum(mul(g, g));
    total = total ? add(total, s) : s;
  }
  const norm = sqrt(total!);
  const scale = minimum(div(maxNorm, add(norm, 1e-6)), 1);
  return { scale, norm };
}
