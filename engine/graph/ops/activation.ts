/**
 * Activations: silu, gelu (erf or tanh form), sigmoid, tanh, relu, and the fused gated forms
 * swiglu = silu(gate) · up and geglu = gelu(gate) · up. Each op has one fused backward op
 * (`<name>_bwd`), so a backward pass is one kernel.
 *
 * {@link ACT} holds each activation's f64 formula and derivative; the WGSL lives in
 * `kernels/activation.ts` under the same kind names.
 * @module
 */
import { defineOp, registerOps } from "../op.ts";
import { graphOf, op1, type Tensor } from "../graph.ts";
import { isFloat, type TensorInfo } from "../types.ts";

/** Activation kinds (gelu splits by its `approximate` attr). */
export type ActKind = "silu" | "gelu" | "gelu_tanh" | "sigmoid" | "tanh" | "relu";

/** gelu attrs: "none" is the exact erf form, "tanh" the tanh approximation (as in torch). */
export interface GeluAttrs extends Record<string, unknown> {
  approximate: "none" | "tanh";
}

/**
 * erf(x) in f64, accurate to ~1e-15: the Maclaurin series of e^{x²}·erf(x), whose terms are all
 * positive (2^n x^{2n+1} / (1·3···(2n+1))), so no cancellation; erf(±x) = ±1 in f64 beyond |x| = 6.
 */
export function erf(x: number): number {
  const a = Math.abs(x);
  if (a >= 6) return Math.sign(x);
  let term = a, sum = a;
  for (let n = 0; n < 500 && term > sum * 1e-17; n++) {
    term *= (2 * a * a) / (2 * n + 3);
    sum += term;
  }
  return Math.sign(x) * Math.min(1, (2 / Math.sqrt(Math.PI)) * Math.exp(-a * a) * sum);
}

const sig = (x: number) => 1 / (1 + Math.exp(-x));
const K_TANH = Math.sqrt(2 / Math.PI);

/** f64 value and derivative of each activation. */
export const ACT: Record<ActKind, { f: (x: number) => number; df: (x: number) => number }> = {
  silu: { f: (x) => x * sig(x), df: (x) => sig(x) * (1 + x * (1 - sig(x))) },
  gelu: {
    f: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
    df: (x) => 0.5 * (1 + erf(x / Math.SQRT2)) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI),
  },
  gelu_tanh: {
    f: (x) => 0.5 * x * (1 + Math.tanh(K_TANH * (x + 0.044715 * x ** 3))),
    df: (x) => {
      const t = Math.tanh(K_TANH * (x + 0.044715 * x ** 3));
      return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * K_TANH * (1 + 3 * 0.044715 * x * x);
    },
  },
  sigmoid: { f: sig, df: (x) => sig(x) * (1 - sig(x)) },
  tanh: { f: Math.tanh, df: (x) => 1 - Math.tanh(x) ** 2 },
  relu: { f: (x) => Math.max(x, 0), df: (x) => (x > 0 ? 1 : 0) },
};

/** The activation kind of an op name and its attrs ("gelu" + approximate "tanh" → "gelu_tanh"). */
export function actKind(op: string, attrs: Record<string, unknown>): ActKind {
  const base = op.replace(/_bwd$/, "").replace(/^swiglu$/, "silu").replace(/^geglu$/, "gelu") as ActKind;
  return base === "gelu" && attrs.approximate === "tanh" ? "gelu_tanh" : base;
}

function floatInfer(ins: readonly TensorInfo[]): void {
  for (const t of ins) {
    if (!isFloat(t.dtype)) throw new Error(`expected float tensors, got ${t.dtype}`);
    if (t.dtype !== ins[0].dtype) throw new Error(`operands must share a dtype, got ${t.dtype} and ${ins[0].dtype}`);
    if (t.shape.join() !== ins[0].shape.join()) {
      throw new Error(
        `operands must have the same shape, got [${t.shape.join(", ")}] and [${ins[0].shape.join(", ")}]`,
      );
    }
  }
}

const UNARY = ["silu", "gelu", "sigmoid", "tanh", "relu"] as const;

registerOps([
  ...UNARY.flatMap((name) => [
    // x [...] -> y [...] = f(x)
    defineOp({
      name,
      infer: (ins) => (floatInfer(ins), [{ shape: ins[0].shape, dtype: ins[0].dtype }]),
      ref: ([x], attrs) => [x.data.map(ACT[actKind(name, attrs)].f)],
      // dx = dy · f'(x), one fused kernel
      grad: (c) => [op1(`${name}_bwd`, [c.grads[0]!, c.inputs[0]], c.attrs)],
    }),
    // dy [...], x [...] -> dx [...] = dy · f'(x)
    defineOp({
      name: `${name}_bwd`,
      infer: (ins) => (floatInfer(ins), [{ shape: ins[1].shape, dtype: ins[1].dtype }]),
      ref: ([dy, x], attrs) => {
        const df = ACT[actKind(name, attrs)].df;
        return [x.data.map((v, i) => dy.data[i] * df(v))];
      },
    }),
  ]),
  ...(["swiglu", "geglu"] as const).flatMap((name) => [
    // gate [...], up [...] -> y [...] = f(gate) · up
    defineOp({
      name,
      infer: (ins) => (floatInfer(ins), [{ shape: ins[0].shape, dtype: ins[0].dtype }]),
      ref: ([g, u], attrs) => {
        const f = ACT[actKind(name, attrs)].f;
        return [g.data.map((v, i) => f(v) * u.data[i])];
      },
      // dgate = dy · up · f'(gate), dup = dy · f(gate): one fused kernel with two outputs
      grad: (c) => {
        const outs = graphOf(c.inputs[0]).apply(`${name}_bwd`, [c.grads[0]!, ...c.inputs], c.attrs);
        return [c.needs[0] ? outs[0] : undefined, c.needs[1] ? outs[1] : undefined];
      },
    }),
    // dy [...], gate [...], up [...] -> dgate [...], dup [...]
    defineOp({
      name: `${name}_bwd`,
      infer: (ins) => (floatInfer(ins), [ins[1], ins[2]].map((t) => ({ shape: t.shape, dtype: t.dtype }))),
      ref: ([dy, g, u], attrs) => {
        const { f, df } = ACT[actKind(name, attrs)];
        return [g.data.map((v, i) => dy.data[i] * u.data[i] * df(v)), g.data.map((v, i) => dy.data[i] * f(v))];
      },
    }),
  ]),
]);

function geluAttrs(approximate: "none" | "tanh" = "none"): GeluAttrs {
  if (approximate !== "none" && approximate !== "tanh") {
    throw new Error(`gelu approximate must be "none" or "tanh", got ${JSON.stringify(approximate)}`);
  }
  return { approximate };
}

/** SiLU (swish): x · sigmoid(x). */
export const silu = (x: Tensor): Tensor => op1("silu", [x]);
/** GELU: exact `0.5x(1 + erf(x/√2))`, or the tanh approximation with `approximate: "tanh"`. */
export const gelu = (x: Tensor, opts: { approximate?: "none" | "tanh" } = {}): Tensor =>
  op1("gelu", [x], geluAttrs(opts.approximate));
/** 1 / (1 + e^-x). */
export const sigmoid = (x: Tensor): Tensor => op1("sigmoid", [x]);
/** tanh x. */
export const tanh = (x: Tensor): Tensor => op1("tanh", [x]);
/** max(x, 0); the gradient at 0 is 0. */
export const relu = (x: Tensor): Tensor => op1("relu", [x]);
/** silu(gate) · up, fused (Llama/Qwen/Mistral MLPs). gate, up [...] of one shape. */
export const swiglu = (gate: Tensor, up: Tensor): Tensor => op1("swiglu", [gate, up]);
/** gelu(gate) · up, fused (Gemma MLPs use `approximate: "tanh"`). gate, up [...] of one shape. */
export const geglu = (gate: Tensor, up: Tensor, opts: { approximate?: "none" | "tanh" } = {}): Tensor =>
  op1("geglu", [gate, up], geluAttrs(opts.approximate));
