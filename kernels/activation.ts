/**
 * WGSL for the activations and their fused backward ops: one thread per element, coalesced.
 *
 * WGSL has no erf: {@link WGSL_ERF} (series near 0, Abramowitz & Stegun 7.1.26 beyond) stays within
 * 2.5e-7 of the reference's f64 erf. tanh is clamped to [-10, 10] first, where it is ±1 in f32 anyway,
 * so no implementation's exp-based tanh can overflow into NaN.
 * @module
 */
import { numel } from "../engine/graph/types.ts";
import { type ActKind, actKind } from "../engine/graph/ops/activation.ts";
import { declare, entry1d, grid, linearIndex, type Lowering, requireDtypes } from "./kernel.ts";

const WG = 256;

/**
 * WGSL erf: the Maclaurin series below |x| = 0.75 (where `1 − p·exp` would cancel and expose exp's
 * few-ulp error), Abramowitz & Stegun 7.1.26 above (|error| ≤ 1.5e-7). Measured on lavapipe against
 * the f64 erf over [-6, 6]: max abs error 2.5e-7 (the rest is exp's own error).
 */
export const WGSL_ERF = `fn erf_f(x: f32) -> f32 {
  let a = abs(x);
  if (a < 0.75) {
    let t = x * x;
    let q = ((((((((1.0 / 685440.0) * t - 1.0 / 75600.0) * t + 1.0 / 9360.0) * t - 1.0 / 1320.0) * t + 1.0 / 216.0) * t
      - 1.0 / 42.0) * t + 0.1) * t - 1.0 / 3.0) * t + 1.0;
    return 1.1283791670955126 * x * q;
  }
  let t = 1.0 / (1.0 + 0.3275911 * a);
  let p = ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t;
  return sign(x) * (1.0 - p * exp(-a * a));
}`;

/** WGSL helper functions the bodies of {@link FN} call (erf_f, sigm, tanh_c, gelu_t). */
export const PRELUDE = `${WGSL_ERF}
fn sigm(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
fn tanh_c(x: f32) -> f32 { return tanh(clamp(x, -10.0, 10.0)); }
fn gelu_t(x: f32) -> f32 { return tanh_c(0.7978845608028654 * (x + 0.044715 * x * x * x)); }`;

/** WGSL bodies of f(x) and f'(x) per activation kind (expressions of `x`). */
export const FN: Record<ActKind, { f: string; df: string }> = {
  silu: { f: "x * sigm(x)", df: "sigm(x) * (1.0 + x * (1.0 - sigm(x)))" },
  gelu: {
    f: "0.5 * x * (1.0 + erf_f(x * 0.7071067811865476))",
    df: "0.5 * (1.0 + erf_f(x * 0.7071067811865476)) + x * exp(-0.5 * x * x) * 0.3989422804014327",
  },
  gelu_tanh: {
    f: "0.5 * x * (1.0 + gelu_t(x))",
    df:
      "0.5 * (1.0 + gelu_t(x)) + 0.5 * x * (1.0 - gelu_t(x) * gelu_t(x)) * 0.7978845608028654 * (1.0 + 0.134145 * x * x)",
  },
  sigmoid: { f: "sigm(x)", df: "sigm(x) * (1.0 - sigm(x))" },
  tanh: { f: "tanh_c(x)", df: "1.0 - tanh_c(x) * tanh_c(x)" },
  relu: { f: "max(x, 0.0)", df: "select(0.0, 1.0, x > 0.0)" },
};

/** WGSL functions `act(x)` and `dact(x)` for one kind. */
function actFns(kind: ActKind): string {
  return `${PRELUDE}
fn act(x: f32) -> f32 { return ${FN[kind].f}; }
fn dact(x: f32) -> f32 { return ${FN[kind].df}; }`;
}

/**
 * An elementwise kernel over `n` elements: f32 buffers `names` (the first `nIn` are the node's inputs,
 * the rest its outputs) and the per-element statement `stmt` of `gid`.
 */
function ew(names: readonly string[], nIn: number, stmt: string, n: number, maxPerDim: number, kind: ActKind) {
  return {
    code: `${declare(names.map((nm) => [nm, "f32"] as [string, "f32"]))}
${actFns(kind)}
${entry1d(WG)} {
  ${linearIndex(WG)}
  if (gid >= ${n}u) { return; }
  ${stmt}
}`,
    bindings: names.map((_, k) => (k < nIn ? { input: k } : { output: k - nIn })),
    workgroups: grid(Math.ceil(n / WG), maxPerDim),
  };
}

function lower(op: string): Lowering {
  return ({ inputs, outputs, attrs }, ctx) => {
    requireDtypes(op, [...inputs, ...outputs], ["f32"]);
    const n = numel(outputs[0].shape);
    const kind = actKind(op, attrs);
    const m = ctx.maxWorkgroupsPerDim;
    switch (op) {
      case "swiglu":
      case "geglu":
        return { launches: [ew(["g", "u", "y"], 2, "y[gid] = act(g[gid]) * u[gid];", n, m, kind)] };
      case "swiglu_bwd":
      case "geglu_bwd":
        return {
          launches: [ew(
            ["dy", "g", "u", "dg", "du"],
            3,
            "let x = g[gid]; let d = dy[gid]; dg[gid] = d * u[gid] * dact(x); du[gid] = d * act(x);",
            n,
            m,
            kind,
          )],
        };
      default:
        return op.endsWith("_bwd")
          ? { launches: [ew(["dy", "x", "dx"], 2, "dx[gid] = dy[gid] * dact(x[gid]);", n, m, kind)] }
          : { launches: [ew(["x", "y"], 1, "y[gid] = act(x[gid]);", n, m, kind)] };
    }
  };
}

const OPS = ["silu", "gelu", "sigmoid", "tanh", "relu", "swiglu", "geglu"];

/** Lowerings of this family by op name. */
export const lowerings: Record<string, Lowering> = Object.fromEntries(
  OPS.flatMap((op) => [[op, lower(op)], [`${op}_bwd`, lower(`${op}_bwd`)]]),
);
