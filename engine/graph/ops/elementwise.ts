/**
 * Elementwise ops with numpy broadcasting: unary math, binary arithmetic, comparisons and `where`.
 * Each row of {@link EW} holds an op's f64 formula and its gradient rule; the backends' expressions live beside
 * their kernels (kernels/elementwise.ts for WGSL, engine/exec/onnx for ONNX).
 * @module
 */
import { defineOp, type GradContext, type RefTensor, registerOps } from "../op.ts";
import { graphOf, op1, type Tensor } from "../graph.ts";
import { broadcastShapes, broadcastStrides, makeIndexer } from "../broadcast.ts";
import { type DType, numel, type TensorInfo } from "../types.ts";
import { expand, reshape } from "./shape.ts";
import { sum } from "./reduce_build.ts";

/** One elementwise op: arity, f64 formula, gradient rule (its WGSL expression is in kernels/elementwise.ts). */
export interface EwRow {
  arity: 1 | 2 | 3;
  f: (a: number, b: number, c: number) => number;
  grad?: (ctx: GradContext) => (Tensor | undefined)[];
  /** Output dtype: "same" as the first float input, or fixed. */
  out?: DType;
}

const G = (c: GradContext) => c.grads[0]!;

/** The elementwise op table. */
export const EW: Record<string, EwRow> = {
  neg: { arity: 1, f: (a) => -a, grad: (c) => [neg(G(c))] },
  exp: { arity: 1, f: (a) => Math.exp(a), grad: (c) => [mul(G(c), c.outputs[0])] },
  log: { arity: 1, f: (a) => Math.log(a), grad: (c) => [div(G(c), c.inputs[0])] },
  sqrt: { arity: 1, f: (a) => Math.sqrt(a), grad: (c) => [div(G(c), mul(c.outputs[0], 2))] },
  rsqrt: {
    arity: 1,
    f: (a) => 1 / Math.sqrt(a),
    grad: (c) => {
      const y = c.outputs[0];
      return [mul(G(c), mul(mul(y, mul(y, y)), -0.5))];
    },
  },
  abs: { arity: 1, f: (a) => Math.abs(a), grad: (c) => [mul(G(c), sign(c.inputs[0]))] },
  sign: { arity: 1, f: (a) => Math.sign(a), grad: () => [undefined] },
  add: { arity: 2, f: (a, b) => a + b, grad: (c) => [G(c), G(c)] },
  sub: { arity: 2, f: (a, b) => a - b, grad: (c) => [G(c), c.needs[1] ? neg(G(c)) : undefined] },
  mul: {
    arity: 2,
    f: (a, b) => a * b,
    grad: (c) => [
      c.needs[0] ? mul(G(c), c.inputs[1]) : undefined,
      c.needs[1] ? mul(G(c), c.inputs[0]) : undefined,
    ],
  },
  div: {
    arity: 2,
    f: (a, b) => a / b,
    grad: (c) => {
      const [a, b] = c.inputs;
      return [
        c.needs[0] ? div(G(c), b) : undefined,
        c.needs[1] ? neg(div(mul(G(c), a), mul(b, b))) : undefined,
      ];
    },
  },
  pow: {
    arity: 2,
    f: (a, b) => Math.pow(a, b),
    grad: (c) => {
      const [a, b] = c.inputs;
      const y = c.outputs[0];
      return [
        c.needs[0] ? mul(G(c), mul(b, pow(a, sub(b, 1)))) : undefined,
        c.needs[1] ? mul(G(c), mul(y, log(a))) : undefined,
      ];
    },
  },
  maximum: {
    arity: 2,
    f: (a, b) => Math.max(a, b),
    grad: (c) => {
      const m = ge(c.inputs[0], c.inputs[1]);
      return [c.needs[0] ? mul(G(c), m) : undefined, c.needs[1] ? mul(G(c), sub(1, m)) : undefined];
    },
  },
  minimum: {
    arity: 2,
    f: (a, b) => Math.min(a, b),
    grad: (c) => {
      const m = ge(c.inputs[1], c.inputs[0]);
      return [c.needs[0] ? mul(G(c), m) : undefined, c.needs[1] ? mul(G(c), sub(1, m)) : undefined];
    },
  },
  ge: { arity: 2, f: (a, b) => (a >= b ? 1 : 0), grad: () => [undefined, undefined] },
  gt: { arity: 2, f: (a, b) => (a > b ? 1 : 0), grad: () => [undefined, undefined] },
  eq: {
    arity: 2,
    f: (a, b) => (a === b ? 1 : 0),
    grad: () => [undefined, undefined],
  },
  where: {
    arity: 3,
    f: (c, a, b) => (c !== 0 ? a : b),
    grad: (c) => {
      const [cond] = c.inputs;
      const z = G(c).graph.scalar(0);
      return [undefined, c.needs[1] ? where(cond, G(c), z) : undefined, c.needs[2] ? where(cond, z, G(c)) : undefined];
    },
  },
};

function ewInfer(name: string, row: EwRow) {
  return (inputs: readonly TensorInfo[]): TensorInfo[] => {
    if (inputs.length !== row.arity) throw new Error(`expected ${row.arity} inputs, got ${inputs.length}`);
    const shape = broadcastShapes(...inputs.map((t) => t.shape));
    const vals = name === "where" ? inputs.slice(1) : inputs;
    const dtype = row.out ?? vals[0].dtype;
    for (const t of vals) {
      if (t.dtype !== vals[0].dtype) {
        throw new Error(`all operands must share a dtype, got ${vals.map((v) => v.dtype).join(" and ")}`);
      }
    }
    return [{ shape, dtype }];
  };
}

function ewRef(row: EwRow) {
  return (inputs: readonly RefTensor[], _a: unknown, outs: readonly TensorInfo[]): Float64Array[] => {
    const shape = outs[0].shape;
    const n = numel(shape);
    const out = new Float64Array(n);
    const idx = makeIndexer(shape, inputs.map((t) => broadcastStrides(t.shape, shape)));
    const d = inputs.map((t) => t.data);
    for (let i = 0; i < n; i++) {
      const [ia, ib, ic] = idx(i);
      out[i] = row.f(d[0][ia], d[1]?.[ib] ?? 0, d[2]?.[ic] ?? 0);
    }
    return [out];
  };
}

registerOps(
  Object.entries(EW).map(([name, row]) =>
    defineOp({
      name,
      infer: ewInfer(name, row),
      ref: ewRef(row),
      grad: row.grad
        ? (c) => {
          // Elementwise rules see broadcast operands; sum each gradient back to its input's shape.
          const gs = row.grad!(c);
          return gs.map((g, i) => (g && c.needs[i] ? sumTo(g, c.inputs[i].shape) : undefined));
        }
        : undefined,
    })
  ),
);

/** Sums a broadcast gradient back to `shape`. */
export function sumTo(g: Tensor, shape: readonly number[]): Tensor {
  if (g.shape.join() === shape.join()) return g;
  const off = g.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) if (i < off || (shape[i - off] === 1 && g.shape[i] !== 1)) axes.push(i);
  const s = axes.length ? sum(g, axes, true) : g;
  return reshape(s, shape);
}

type T = Tensor | number;
function lift(xs: T[]): Tensor[] {
  const t = xs.find((x): x is Tensor => typeof x !== "number");
  if (!t) throw new Error("an elementwise op needs at least one tensor operand");
  const g = graphOf(...xs.filter((x): x is Tensor => typeof x !== "number"));
  return xs.map((x) => (typeof x === "number" ? g.scalar(x, t.dtype) : x));
}

/** -x */
export const neg = (x: Tensor): Tensor => op1("neg", [x]);
/** e^x */
export const exp = (x: Tensor): Tensor => op1("exp", [x]);
/** ln x */
export const log = (x: Tensor): Tensor => op1("log", [x]);
/** √x */
export const sqrt = (x: Tensor): Tensor => op1("sqrt", [x]);
/** 1/√x */
export const rsqrt = (x: Tensor): Tensor => op1("rsqrt", [x]);
/** |x| */
export const abs = (x: Tensor): Tensor => op1("abs", [x]);
/** sign(x) in {-1, 0, 1} */
export const sign = (x: Tensor): Tensor => op1("sign", [x]);
/** a + b (broadcasting) */
export const add = (a: T, b: T): Tensor => op1("add", lift([a, b]));
/** a - b (broadcasting) */
export const sub = (a: T, b: T): Tensor => op1("sub", lift([a, b]));
/** a * b (broadcasting) */
export const mul = (a: T, b: T): Tensor => op1("mul", lift([a, b]));
/** a / b (broadcasting) */
export const div = (a: T, b: T): Tensor => op1("div", lift([a, b]));
/** a ** b (broadcasting) */
export const pow = (a: T, b: T): Tensor => op1("pow", lift([a, b]));
/** max(a, b) elementwise; the gradient goes to `a` on ties */
export const maximum = (a: T, b: T): Tensor => op1("maximum", lift([a, b]));
/** min(a, b) elementwise; the gradient goes to `a` on ties */
export const minimum = (a: T, b: T): Tensor => op1("minimum", lift([a, b]));
/** 1 where a >= b else 0 */
export const ge = (a: T, b: T): Tensor => op1("ge", lift([a, b]));
/** 1 where a > b else 0 */
export const gt = (a: T, b: T): Tensor => op1("gt", lift([a, b]));
/** 1 where a == b else 0 */
export const eq = (a: T, b: T): Tensor => op1("eq", lift([a, b]));
/** cond != 0 ? a : b (broadcasting) */
export function where(cond: Tensor, a: T, b: T): Tensor {
  const [x, y] = lift([a, b]);
  return op1("where", [cond, x, y]);
}

/** Broadcasts `x` to `shape` (alias of {@link expand} kept here for symmetry with sumTo). */
export const broadcastTo = (x: Tensor, shape: readonly number[]): Tensor => expand(x, shape);
