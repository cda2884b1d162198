/**
 * WGSL for the optimizer ops: one thread per element; param and state buffers are bound and written
 * in place (the ops have no outputs). Hyper-parameters are baked in as constants; lr, step and the
 * gradient scale are read from scalar buffers, so they change per step without new pipelines.
 *
 * A gated op (attrs `gated`) binds its gate `ok` last and returns before writing anything when ok == 0.
 *
 * A param (with its gradient and states) stored in segments (kernels/segments.ts) is updated by one launch
 * per segment, each binding that segment of every tensor operand.
 *
 * AdamW's bias corrections 1 − β^t are computed as −expm1(t·ln β) with ln β from the host in f64,
 * which keeps them accurate in f32 at small t (1 − pow(0.999, 1) in f32 is off by ~1e-5 relative).
 * @module
 */
import { numel } from "../engine/graph/types.ts";
import { type AdamWAttrs, optimTail, type SgdAttrs } from "../engine/graph/ops/optim.ts";
import { declare, entry1d, grid, linearIndex, type Lowering, type LowerNode } from "./kernel.ts";
import { flatRanges, rangeRef } from "./segments.ts";

const WG = 256;

/** A WGSL float literal for a finite number. */
function lit(x: number): string {
  if (!Number.isFinite(x)) throw new Error(`expected a finite constant, got ${x}`);
  const s = String(x);
  return /[.e]/.test(s) ? s : `${s}.0`;
}

/** WGSL `expm1(y)` (a series near 0, accurate where exp(y) − 1 is not). */
export const EXPM1 = `fn expm1(y: f32) -> f32 {
  if (abs(y) < 0.5) {
    return y * (1.0 + y * (0.5 + y * (0.16666666666666666 + y * (0.041666666666666664 + y * (0.008333333333333333
      + y * (0.001388888888888889 + y * (1.984126984126984e-4 + y * (2.48015873015873e-5 + y * 2.7557319223985893e-6))))))));
  }
  return exp(y) - 1.0;
}`;

/** 1 − β^t in WGSL for a step variable `t`. */
export function biasCorrection(beta: number): string {
  return beta === 0 ? "1.0" : `-expm1(t * ${lit(Math.log(beta))})`;
}

/** Binding names of an optimizer op: `base`, then "gscale" and "gate" where present. */
function bindingNames(base: string[], nInputs: number, gated: boolean | undefined) {
  const tail = optimTail(nInputs, base.length, gated);
  const names = [
    ...base,
    ...(tail.scale !== undefined ? ["gscale"] : []),
    ...(tail.gate !== undefined ? ["gate"] : []),
  ];
  const decls = declare(names.map((nm) => [nm, "f32"] as [string, "f32"]));
  return { decls, scale: tail.scale !== undefined ? " * gscale[0]" : "", gate: tail.gate !== undefined };
}

/** The start of an optimizer kernel's body: the bounds guard, then (gated) the skip when ok == 0. */
function head(n: number, gate: boolean): string {
  return `${linearIndex(WG)}
  if (gid >= ${n}u) { return; }${gate ? "\n  if (gate[0] == 0.0) { return; }" : ""}`;
}

/**
 * The launches of an optimizer op: `code(n)` over the param's elements, or, for a param stored in segments, one
 * launch per segment with the tensor operands bound to that segment (scalars whole).
 */
function launch(node: LowerNode, code: (n: number) => string, maxPerDim: number) {
  const n = numel(node.inputs[0].shape);
  const full = node.inputs.map((t) => numel(t.shape) === n && n > 1);
  const layouts = node.inputs.map((_, i) => full[i] ? node.segments?.inputs[i] : undefined);
  const ranges = flatRanges(n, layouts, "optimizer");
  if (ranges.length > 1 && full.some((f, i) => f && !layouts[i])) {
    throw new Error(`optimizer update of ${n} elements: a param, gradient and states must all be segmented alike`);
  }
  return {
    launches: ranges.map((r) => ({
      code: code(r.len),
      bindings: node.inputs.map((_, i) => rangeRef({ input: i }, layouts[i], r)),
      workgroups: grid(Math.ceil(r.len / WG), maxPerDim),
    })),
  };
}

/** The lowerings of this family by op name. */
export const lowerings: Record<string, Lowering> = {
  adamw: (node, ctx) => {
    const { beta1, beta2, eps, weightDecay, gated } = node.attrs as AdamWAttrs;
    const b = bindingNames(["param", "grad", "mb", "vb", "lr", "stp"], node.inputs.length, gated);
    const code = (n: number) =>
      `${b.decls}
${EXPM1}
${entry1d(WG)} {
  ${head(n, b.gate)}
  let a = lr[0];
  let t = stp[0];
  let bc1 = ${biasCorrection(beta1)};
  let bc2 = ${biasCorrection(beta2)};
  let g = grad[gid]${b.scale};
  let m = ${lit(beta1)} * mb[gid] + ${lit(1 - beta1)} * g;
  let v = ${lit(beta2)} * vb[gid] + ${lit(1 - beta2)} * g * g;
  mb[gid] = m;
  vb[gid] = v;
  let p = param[gid] * (1.0 - a * ${lit(weightDecay)});
  param[gid] = p - (a / bc1) * m / (sqrt(v) / sqrt(bc2) + ${lit(eps)});
}`;
    return launch(node, code, ctx.maxWorkgroupsPerDim);
  },
  sgd: (node, ctx) => {
    const { weightDecay, gated } = node.attrs as SgdAttrs;
    const b = bindingNames(["param", "grad", "lr"], node.inputs.length, gated);
    const code = (n: number) =>
      `${b.decls}
${entry1d(WG)} {
  ${head(n, b.gate)}
  let p = param[gid];
  let d = grad[gid]${b.scale} + ${lit(weightDecay)} * p;
  param[gid] = p - lr[0] * d;
}`;
    return launch(node, code, ctx.maxWorkgroupsPerDim);
  },
  sgd_momentum: (node, ctx) => {
    const { momentum, weightDecay, nesterov, gated } = node.attrs as SgdAttrs;
    const b = bindingNames(["param", "grad", "buf", "lr"], node.inputs.length, gated);
    const code = (n: number) =>
      `${b.decls}
${entry1d(WG)} {
  ${head(n, b.gate)}
  let p = param[gid];
  let d = grad[gid]${b.scale} + ${lit(weightDecay)} * p;
  let b = ${lit(momentum)} * buf[gid] + d;
  buf[gid] = b;
  param[gid] = p - lr[0] * ${nesterov ? `(d + ${lit(momentum)} * b)` : "b"};
}`;
    return launch(node, code, ctx.maxWorkgroupsPerDim);
  },
};
