/**
 * ONNX lowerings of the basic ops: shapes, elementwise math, reductions, matmul, casts, activations,
 * softmax and cross-entropy. Every float is an ONNX FLOAT; i32 is INT32; u32 is INT64 (see lower.ts).
 * @module
 */
import { normAxes } from "../../graph/broadcast.ts";
import { type ActKind, actKind } from "../../graph/ops/activation.ts";
import type { CastAttrs } from "../../graph/ops/cast.ts";
import type { MatmulAttrs } from "../../graph/ops/matmul.ts";
import type { CrossEntropyAttrs } from "../../graph/ops/softmax.ts";
import type { ReduceAttrs } from "../../graph/ops/reduce.ts";
import { isFloat } from "../../graph/types.ts";
import type { OnnxBuilder } from "./builder.ts";
import { type LowerCtx, type OnnxLowering, onnxTypeOf } from "./lower_types.ts";
import { ONNX_TYPE } from "./proto.ts";

const unary = (t: string): OnnxLowering => ({ b, ins }) => [b.op1(t, ins)];
const binary = (t: string): OnnxLowering => ({ b, ins }) => [b.op1(t, ins)];
/** Comparisons give 1/0 in the operands' dtype. */
const compare = (t: string): OnnxLowering => ({ b, ins, outInfos }) => [
  b.cast(b.op1(t, ins), onnxTypeOf(outInfos[0].dtype)),
];

/** The last two axes swapped (for transA/transB). */
function swapLast(b: OnnxBuilder, x: string, rank: number): string {
  const perm = Array.from({ length: rank }, (_, i) => i);
  [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1], perm[rank - 2]];
  return b.transpose(x, perm);
}

/** f(x) of an activation kind, in ONNX ops. */
export function actForward(b: OnnxBuilder, kind: ActKind, x: string): string {
  switch (kind) {
    case "silu":
      return b.mul(x, b.op1("Sigmoid", [x]));
    case "sigmoid":
      return b.op1("Sigmoid", [x]);
    case "tanh":
      return b.op1("Tanh", [x]);
    case "relu":
      return b.op1("Relu", [x]);
    case "gelu":
      return b.mul(b.mul(x, b.f32(0.5)), b.add(b.f32(1), b.op1("Erf", [b.mul(x, b.f32(Math.SQRT1_2))])));
    case "gelu_tanh": {
      const inner = b.mul(b.add(x, b.mul(b.mul(b.mul(x, x), x), b.f32(0.044715))), b.f32(Math.sqrt(2 / Math.PI)));
      return b.mul(b.mul(x, b.f32(0.5)), b.add(b.f32(1), b.op1("Tanh", [inner])));
    }
  }
}

/** f'(x) of an activation kind, in ONNX ops (the formulas of activation.ts's ACT table). */
export function actDerivative(b: OnnxBuilder, kind: ActKind, x: string): string {
  const one = b.f32(1);
  switch (kind) {
    case "silu": {
      const s = b.op1("Sigmoid", [x]);
      return b.mul(s, b.add(one, b.mul(x, b.sub(one, s))));
    }
    case "sigmoid": {
      const s = b.op1("Sigmoid", [x]);
      return b.mul(s, b.sub(one, s));
    }
    case "tanh": {
      const t = b.op1("Tanh", [x]);
      return b.sub(one, b.mul(t, t));
    }
    case "relu":
      return b.cast(b.op1("Greater", [x, b.f32(0)]), ONNX_TYPE.FLOAT);
    case "gelu": {
      const cdf = b.mul(b.f32(0.5), b.add(one, b.op1("Erf", [b.mul(x, b.f32(Math.SQRT1_2))])));
      const pdf = b.mul(b.op1("Exp", [b.mul(b.mul(x, x), b.f32(-0.5))]), b.f32(1 / Math.sqrt(2 * Math.PI)));
      return b.add(cdf, b.mul(x, pdf));
    }
    case "gelu_tanh": {
      const k = Math.sqrt(2 / Math.PI);
      const x2 = b.mul(x, x);
      const t = b.op1("Tanh", [b.mul(b.mul(x, b.add(one, b.mul(x2, b.f32(0.044715)))), b.f32(k))]);
      const left = b.mul(b.f32(0.5), b.add(one, t));
      const dt = b.mul(b.sub(one, b.mul(t, t)), b.mul(b.f32(k), b.add(one, b.mul(x2, b.f32(3 * 0.044715)))));
      return b.add(left, b.mul(b.mul(b.f32(0.5), x), dt));
    }
  }
}

/** Rows of a cross-entropy that count: label != ignoreIndex and 0 <= label < V → FLOAT 1/0 [N]. */
export function ceCounted(b: OnnxBuilder, labels: string, V: number, ignoreIndex: number): string {
  const ok = b.op1("And", [
    b.op1("Not", [b.op1("Equal", [labels, b.i32(ignoreIndex)])]),
    b.op1("And", [b.op1("GreaterOrEqual", [labels, b.i32(0)]), b.op1("Less", [labels, b.i32(V)])]),
  ]);
  return b.cast(ok, ONNX_TYPE.FLOAT);
}

/** Labels as INT64 [N, 1] column indices, those outside [0, V) clamped to 0 (their rows are masked out). */
export function labelIndex(b: OnnxBuilder, labels: string, N: number, V: number): string {
  const ok = b.op1("And", [b.op1("GreaterOrEqual", [labels, b.i32(0)]), b.op1("Less", [labels, b.i32(V)])]);
  return b.reshape(b.cast(b.op1("Where", [ok, labels, b.i32(0)]), ONNX_TYPE.INT64), [N, 1]);
}

/** Row-wise log-sum-exp of x [N, V] → [N] (max, exp, sum: faster than ReduceLogSumExp on a CPU). */
export function rowLse(b: OnnxBuilder, x: string, N: number): string {
  const m = b.reduce("Max", x, [1], true);
  const s = b.reduce("Sum", b.op1("Exp", [b.sub(x, m)]), [1], true);
  return b.reshape(b.add(m, b.op1("Log", [s])), [N]);
}

/** Cross-entropy forward on logits x [N, V]: [loss, lse [N]] (lse 0 on rows that do not count). */
export function ceForward(
  b: OnnxBuilder,
  x: string,
  labels: string,
  N: number,
  V: number,
  a: { ignoreIndex: number; reduction: string },
): string[] {
  const counted = ceCounted(b, labels, V, a.ignoreIndex);
  const lse = b.mul(rowLse(b, x, N), counted);
  const picked = b.reshape(b.op1("GatherElements", [x, labelIndex(b, labels, N, V)], { axis: { i: 1 } }), [N]);
  return [ceReduce(b, b.mul(b.sub(lse, picked), counted), counted, a.reduction), lse];
}

/**
 * Cross-entropy backward: dlogits [N, V] = (softmax(x) − onehot(label)) · k per row, k = the upstream
 * gradient's share (0 on rows that do not count). The one-hot part is a scatter-add of −k at the labels.
 */
export function ceBackward(
  b: OnnxBuilder,
  g: string,
  x: string,
  labels: string,
  N: number,
  V: number,
  a: { ignoreIndex: number; reduction: string },
): string {
  const counted = ceCounted(b, labels, V, a.ignoreIndex);
  const k = b.reshape(b.mul(ceScale(b, g, counted, a.reduction, N), counted), [N, 1]);
  const p = b.mul(b.op1("Softmax", [x], { axis: { i: 1 } }), k);
  return b.op1("ScatterElements", [p, labelIndex(b, labels, N, V), b.op1("Neg", [k])], {
    axis: { i: 1 },
    reduction: { s: "add" },
  });
}

/** The lowerings of this file. */
export const basicLowerings: Record<string, OnnxLowering> = {
  reshape: ({ b, ins, outInfos }) => [b.reshape(ins[0], outInfos[0].shape)],
  expand: ({ b, ins, outInfos }) => [b.op1("Expand", [ins[0], b.i64(outInfos[0].shape)])],
  permute: ({ b, ins, attrs }) => [b.transpose(ins[0], attrs.perm as number[])],
  slice: ({ b, ins, attrs }) => {
    const { axis, start, end } = attrs as { axis: number; start: number; end: number };
    return [b.op1("Slice", [ins[0], b.i64([start]), b.i64([end]), b.i64([axis])])];
  },
  concat: ({ b, ins, attrs }) => [b.op1("Concat", ins, { axis: { i: attrs.axis as number } })],
  stop_gradient: ({ b, ins }) => [b.op1("Identity", ins)],

  neg: unary("Neg"),
  exp: unary("Exp"),
  log: unary("Log"),
  sqrt: unary("Sqrt"),
  rsqrt: ({ b, ins }) => [b.op1("Reciprocal", [b.op1("Sqrt", ins)])],
  abs: unary("Abs"),
  sign: unary("Sign"),
  add: binary("Add"),
  sub: binary("Sub"),
  mul: binary("Mul"),
  div: binary("Div"),
  pow: binary("Pow"),
  maximum: binary("Max"),
  minimum: binary("Min"),
  ge: compare("GreaterOrEqual"),
  gt: compare("Greater"),
  eq: compare("Equal"),
  where: ({ b, ins, inInfos }) => {
    const cond = inInfos[0].dtype === "i32" || inInfos[0].dtype === "u32"
      ? b.op1("Not", [b.op1("Equal", [ins[0], b.cast(b.i32(0), onnxTypeOf(inInfos[0].dtype))])])
      : b.op1("Not", [b.op1("Equal", [ins[0], b.f32(0)])]);
    return [b.op1("Where", [cond, ins[1], ins[2]])];
  },

  sum: ({ b, ins, inInfos, attrs }) => reduce(b, "Sum", ins[0], inInfos[0].shape.length, attrs as ReduceAttrs),
  mean: ({ b, ins, inInfos, attrs }) => reduce(b, "Mean", ins[0], inInfos[0].shape.length, attrs as ReduceAttrs),
  max: ({ b, ins, inInfos, attrs }) => reduce(b, "Max", ins[0], inInfos[0].shape.length, attrs as ReduceAttrs),

  matmul: ({ b, ins, inInfos, attrs }) => {
    const { transA, transB } = attrs as MatmulAttrs;
    const [ra, rb] = inInfos.map((t) => t.shape.length);
    if (ra >= 2 && rb >= 2 && (transA || transB)) {
      // com.microsoft FusedMatMul: MatMul with transposes folded in (CPU kernel in every onnxruntime build).
      return [
        b.op1("FusedMatMul", ins, { transA: { i: +transA }, transB: { i: +transB }, alpha: { f: 1 } }, "com.microsoft"),
      ];
    }
    const a = transA ? swapLast(b, ins[0], ra) : ins[0];
    const w = transB ? swapLast(b, ins[1], rb) : ins[1];
    return [b.op1("MatMul", [a, w])];
  },

  cast: ({ b, ins, inInfos, attrs }) => {
    const from = inInfos[0].dtype, to = (attrs as CastAttrs).dtype;
    if (isFloat(from) && isFloat(to)) return [ins[0]]; // rounding to f16/bf16 is applied to every such output
    if (!isFloat(from) && !isFloat(to)) {
      // i32 ↔ u32 reinterpret the bits: u32 lives in INT64.
      if (to === "u32") return [b.op1("Mod", [b.cast(ins[0], ONNX_TYPE.INT64), b.i64s(2 ** 32)], { fmod: { i: 0 } })];
      const big = b.op1("Greater", [ins[0], b.i64s(2 ** 31 - 1)]);
      return [b.cast(b.op1("Where", [big, b.sub(ins[0], b.i64s(2 ** 32)), ins[0]]), ONNX_TYPE.INT32)];
    }
    if (isFloat(to)) return [b.cast(ins[0], ONNX_TYPE.FLOAT)];
    // float → int: NaN → 0, saturate, truncate toward zero (Cast truncates).
    const lo = to === "i32" ? -2147483648 : 0, hi = to === "i32" ? 2147483520 : 4294967040;
    const x = b.op1("Where", [b.op1("IsNaN", [ins[0]]), b.f32(0), ins[0]]);
    const c = b.op1("Clip", [b.cast(x, ONNX_TYPE.DOUBLE), b.f64(lo), b.f64(hi)]);
    return [b.cast(c, onnxTypeOf(to))];
  },

  ...Object.fromEntries(
    (["silu", "gelu", "sigmoid", "tanh", "relu"] as const).flatMap((name) => [
      [name, ({ b, ins, attrs }: LowerCtx) => [actForward(b, actKind(name, attrs), ins[0])]],
      [`${name}_bwd`, ({ b, ins, attrs }: LowerCtx) => [b.mul(ins[0], actDerivative(b, actKind(name, attrs), ins[1]))]],
    ]),
  ),
  ...Object.fromEntries(
    ([["swiglu", "silu"], ["geglu", "gelu"]] as const).flatMap(([name, base]) => [
      [name, ({ b, ins, attrs }: LowerCtx) => [b.mul(actForward(b, actKind(base, attrs), ins[0]), ins[1])]],
      [`${name}_bwd`, ({ b, ins, attrs }: LowerCtx) => {
        const [dy, g, u] = ins, kind = actKind(base, attrs);
        return [b.mul(b.mul(dy, u), actDerivative(b, kind, g)), b.mul(dy, actForward(b, kind, g))];
      }],
    ]),
  ),

  softmax: ({ b, ins }) => [b.op1("Softmax", ins, { axis: { i: -1 } })],
  softmax_bwd: ({ b, ins }) => {
    const [dy, y] = ins;
    return [b.mul(y, b.sub(dy, b.reduce("Sum", b.mul(dy, y), [-1], true)))];
  },
  log_softmax: ({ b, ins }) => [b.op1("LogSoftmax", ins, { axis: { i: -1 } })],
  log_softmax_bwd: ({ b, ins }) => {
    const [dy, y] = ins;
    return [b.sub(dy, b.mul(b.op1("Exp", [y]), b.reduce("Sum", dy, [-1], true)))];
  },

  // logits [N, V], labels [N] -> loss, lse [N] (0 on ignored rows)
  cross_entropy: ({ b, ins, inInfos, attrs }) => {
    const [N, V] = inInfos[0].shape;
    return ceForward(b, ins[0], ins[1], N, V, attrs as CrossEntropyAttrs);
  },
  // g, logits [N, V], labels [N], lse [N] -> dlogits [N, V]
  cross_entropy_bwd: ({ b, ins, inInfos, attrs }) => {
    const [g, x, labels] = ins;
    const [N, V] = inInfos[1].shape;
    return [ceBackward(b, g, x, labels, N, V, attrs as CrossEntropyAttrs)];
  },
};

/** The reduced loss of counted row losses [N]: mean over counted rows (0 when none), sum, or none. */
export function ceReduce(b: OnnxBuilder, rowLoss: string, counted: string, reduction: string): string {
  if (reduction === "none") return rowLoss;
  const total = b.reduce("Sum", rowLoss, [0], false);
  if (reduction === "sum") return total;
  return b.div(total, b.op1("Max", [b.reduce("Sum", counted, [0], false), b.f32(1)]));
}

/** Per-row gradient scale [N] of a cross-entropy from its upstream gradient g ([] or [N]). */
export function ceScale(b: OnnxBuilder, g: string, counted: string, reduction: string, N: number): string {
  if (reduction === "none") return b.reshape(g, [N]);
  const s = b.reshape(g, [1]);
  if (reduction === "sum") return b.op1("Expand", [s, b.i64([N])]);
  const cnt = b.op1("Max", [b.reduce("Sum", counted, [0], true), b.f32(1)]);
  return b.op1("Expand", [b.div(s, cnt), b.i64([N])]);
}

function reduce(b: OnnxBuilder, kind: "Sum" | "Mean" | "Max", x: string, rank: number, a: ReduceAttrs): string[] {
  const axes = normAxes(a.axes, rank);
  if (!axes.length) return [b.op1("Identity", [x])];
  return [b.reduce(kind, x, axes, a.keepdims)];
}
