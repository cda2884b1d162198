/**
 * Conformance cases of the neural-net families: norms, activations, softmax / cross-entropy, cast.
 * Sizes are odd on purpose (rows not a multiple of the workgroup, rows longer than it, a 3000-long
 * vocabulary row, enough rows to split a weight-gradient reduction into chunks).
 * @module
 */
import type { OpCase } from "./testing.ts";
import * as o from "./mod.ts";

const f = (shape: number[], range?: [number, number]) => ({ shape, grad: true, range });

const normCases: OpCase[] = [
  {
    name: "rms_norm [3, 37]",
    operands: { x: f([3, 37]), w: f([37], [0.5, 1.5]) },
    build: ({ x, w }) => o.rmsNorm(x, w),
  },
  {
    name: "rms_norm offset 1 (Gemma), D 300 > workgroup",
    operands: { x: f([2, 3, 300]), w: f([300], [-0.5, 0.5]) },
    build: ({ x, w }) => o.rmsNorm(x, w, { offset: 1, eps: 1e-5 }),
  },
  { name: "rms_norm without weight", operands: { x: f([5, 19]) }, build: ({ x }) => o.rmsNorm(x) },
  {
    name: "rms_norm frozen bf16 weight",
    operands: { x: f([4, 33]), w: { shape: [33], dtype: "bf16", range: [0.5, 1.5] } },
    build: ({ x, w }) => o.rmsNorm(x, w, { offset: 1 }),
  },
  {
    name: "rms_norm weight gradient only",
    operands: { x: { shape: [3, 20] }, w: f([20], [0.5, 1.5]) },
    build: ({ x, w }) => o.rmsNorm(x, w),
  },
  {
    name: "rms_norm 70 rows (chunked dw)",
    operands: { x: f([70, 24]), w: f([24], [0.5, 1.5]) },
    build: ({ x, w }) => o.rmsNorm(x, w),
  },
  {
    name: "rms_norm rstd output differentiated",
    operands: { x: f([3, 11]), w: f([11], [0.5, 1.5]) },
    build: ({ x, w }) => x.graph.apply("rms_norm", [x, w], { eps: 1e-6, offset: 0 }),
  },
  {
    name: "layer_norm affine [3, 45]",
    operands: { x: f([3, 45]), w: f([45], [0.5, 1.5]), b: f([45]) },
    build: ({ x, w, b }) => o.layerNorm(x, w, b),
  },
  { name: "layer_norm no affine [4, 300]", operands: { x: f([4, 300]) }, build: ({ x }) => o.layerNorm(x) },
  {
    name: "layer_norm weight only, bias only",
    operands: { x: f([2, 13]), w: f([13], [0.5, 1.5]), b: f([13]) },
    build: ({ x, w, b }) => [o.layerNorm(x, w), o.layerNorm(x, undefined, b)],
  },
  {
    name: "layer_norm 40 rows, stats differentiated (chunked dw, db)",
    operands: { x: f([40, 20]), w: f([20], [0.5, 1.5]), b: f([20]) },
    build: ({ x, w, b }) => x.graph.apply("layer_norm", [x, w, b], { eps: 1e-5, hasW: true, hasB: true }),
  },
  {
    name: "layer_norm frozen f16 weight and bf16 bias",
    operands: { x: f([3, 17]), w: { shape: [17], dtype: "f16", range: [0.5, 1.5] }, b: { shape: [17], dtype: "bf16" } },
    build: ({ x, w, b }) => o.layerNorm(x, w, b),
  },
];

const actCases: OpCase[] = [
  {
    name: "silu sigmoid tanh relu",
    operands: { x: f([1001], [-6, 6]) },
    build: ({ x }) => [o.silu(x), o.sigmoid(x), o.tanh(x), o.relu(x)],
  },
  // tol 2e-6: the WGSL erf approximation must be accurate, not just f32-close.
  { name: "gelu erf", operands: { x: f([777], [-5, 5]) }, build: ({ x }) => o.gelu(x), tol: 1e-6 },
  { name: "gelu tanh", operands: { x: f([513], [-5, 5]) }, build: ({ x }) => o.gelu(x, { approximate: "tanh" }) },
  { name: "swiglu", operands: { g: f([3, 67], [-4, 4]), u: f([3, 67]) }, build: ({ g, u }) => o.swiglu(g, u) },
  {
    name: "geglu erf and tanh",
    operands: { g: f([5, 29], [-4, 4]), u: f([5, 29]) },
    build: ({ g, u }) => [o.geglu(g, u), o.geglu(g, u, { approximate: "tanh" })],
  },
  {
    name: "swiglu up gradient only",
    operands: { g: { shape: [40] }, u: f([40]) },
    build: ({ g, u }) => o.swiglu(g, u),
  },
  {
    name: "activations at extremes",
    operands: { x: { shape: [8], grad: true, data: [-100, -30, -12, -1e-3, 0.5, 12, 30, 100] } },
    build: ({ x }) => [o.silu(x), o.gelu(x), o.gelu(x, { approximate: "tanh" }), o.sigmoid(x), o.tanh(x)],
  },
];

const softmaxCases: OpCase[] = [
  { name: "softmax [4, 37]", operands: { x: f([4, 37], [-3, 3]) }, build: ({ x }) => o.softmax(x) },
  // Scaled so the tolerance (relative to max(1, |ref|)) bites on probabilities of ~1/3000.
  {
    name: "softmax long row [3, 3000]",
    operands: { x: f([3, 3000], [-5, 5]) },
    build: ({ x }) => o.mul(o.softmax(x), 1000),
  },
  { name: "softmax axis 0", operands: { x: f([6, 5], [-3, 3]) }, build: ({ x }) => o.softmax(x, 0) },
  { name: "log_softmax [5, 300]", operands: { x: f([5, 300], [-3, 3]) }, build: ({ x }) => o.logSoftmax(x) },
  { name: "log_softmax long row [2, 3000]", operands: { x: f([2, 3000], [-8, 8]) }, build: ({ x }) => o.logSoftmax(x) },
  {
    name: "softmax of large logits (max subtraction)",
    operands: { x: { shape: [2, 4], grad: true, data: [1000, 1001, 999, 1000.5, -1000, -1002, -999, -1001] } },
    build: ({ x }) => [o.softmax(x), o.logSoftmax(x)],
  },
];

const bigGrid: OpCase = {
  name: "row kernels past 65535 rows (2-D grid)",
  operands: { x: { shape: [66000, 3], range: [-3, 3] }, t: { shape: [66000], dtype: "i32", range: [-1, 3] } },
  build: (
    { x, t },
  ) => [o.softmax(x), o.rmsNorm(x), o.layerNorm(x), o.crossEntropy(x, t, { ignoreIndex: -1, reduction: "none" })],
};

const labels = (data: number[]) => ({ shape: [data.length], dtype: "i32" as const, data });

const ceCases: OpCase[] = [
  {
    name: "cross_entropy mean, some ignored [6, 37]",
    operands: { x: f([6, 37], [-3, 3]), t: labels([3, -100, 36, 0, -100, 7]) },
    build: ({ x, t }) => o.crossEntropy(x, t),
  },
  {
    name: "cross_entropy long rows V 3000",
    operands: { x: f([4, 3000], [-4, 4]), t: labels([5, 2999, -100, 1234]) },
    // The scaled sum makes dlogits O(1), so the tolerance bites on the softmax term.
    build: ({ x, t }) => [o.crossEntropy(x, t), o.mul(o.crossEntropy(x, t, { reduction: "sum" }), 100)],
  },
  {
    name: "cross_entropy sum, out-of-range labels ignored",
    operands: { x: f([5, 9], [-3, 3]), t: labels([40, -3, 8, 9, 2]) },
    build: ({ x, t }) => o.crossEntropy(x, t, { reduction: "sum" }),
  },
  {
    name: "cross_entropy none [2, 3, 37]",
    operands: { x: f([2, 3, 37], [-3, 3]), t: { shape: [2, 3], dtype: "i32", data: [1, -100, 36, 0, 17, 5] } },
    build: ({ x, t }) => o.crossEntropy(x, t, { reduction: "none" }),
  },
  {
    name: "cross_entropy all ignored (0, no NaN)",
    operands: { x: f([3, 10], [-3, 3]), t: labels([-100, -100, -100]) },
    build: ({ x, t }) => o.crossEntropy(x, t),
  },
  {
    name: "cross_entropy ignoreIndex 0, 300 short rows",
    operands: { x: f([300, 5], [-3, 3]), t: { shape: [300], dtype: "i32", range: [0, 5] } },
    build: (
      { x, t },
    ) => [o.crossEntropy(x, t, { ignoreIndex: 0 }), o.crossEntropy(x, t, { ignoreIndex: 0, reduction: "sum" })],
  },
  {
    name: "cross_entropy lse output and bf16 logits (values)",
    operands: {
      x: { shape: [3, 50], range: [-3, 3] },
      h: { shape: [3, 50], dtype: "bf16", range: [-3, 3] },
      t: labels([0, -100, 49]),
    },
    build: (
      { x, h, t },
    ) => [...x.graph.apply("cross_entropy", [x, t], { ignoreIndex: -100, reduction: "none" }), o.crossEntropy(h, t)],
  },
];

// bf16/f16 round-to-nearest-even ties: 1 + 2^-8 → 1, 1 + 3·2^-8 → 1 + 2^-6 (bf16); 1 + 3·2^-11 → 1 + 2^-9 (f16).
const ties = [1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 3 * 2 ** -11, -(1 + 3 * 2 ** -11), 0.1, -2.5, 1 / 3, 3e-3, 7];

const castCases: OpCase[] = [
  {
    name: "cast f32 -> bf16/f16 -> f32 (gradient through rounding)",
    operands: { x: f([37]) },
    build: ({ x }) => [o.cast(o.cast(x, "bf16"), "f32"), o.cast(o.cast(x, "f16"), "f32")],
    fdEps: 0.25,
    fdTol: 0.02,
  },
  {
    name: "cast f32 to packed and int (odd length, ties)",
    operands: {
      x: { shape: [9], data: ties },
      y: { shape: [7], range: [-50, 50] },
      z: { shape: [3], data: [65519, -65504, 1e5] },
    },
    build: ({ x, y, z }) => [
      o.cast(x, "bf16"),
      o.cast(x, "f16"),
      o.cast(y, "bf16"),
      o.cast(y, "i32"),
      o.cast(y, "u32"),
      o.cast(z, "bf16"),
    ],
  },
  {
    name: "cast float to int saturates, NaN to 0",
    operands: { x: { shape: [6], data: [3.7, -3.7, 1e10, -1e10, NaN, 0.99] } },
    build: ({ x }) => [o.cast(x, "i32"), o.cast(x, "u32")],
  },
  {
    name: "cast from integers",
    operands: {
      i: { shape: [8], dtype: "i32", data: [-5, -1, 0, 1, 2, 100, 2049, 4095] },
      j: { shape: [3], dtype: "i32", data: [16777217, -16777219, 2147483647] },
      u: { shape: [3], dtype: "u32", data: [0, 5, 4294967295] },
    },
    build: ({ i, j, u }) => [
      o.cast(i, "f32"),
      o.cast(i, "u32"),
      o.cast(i, "f16"),
      o.cast(i, "bf16"),
      o.cast(j, "f32"),
      o.cast(u, "i32"),
      o.cast(u, "f32"),
    ],
  },
  {
    name: "cast from bf16 and f16",
    operands: { b: { shape: [5], dtype: "bf16", range: [-3, 3] }, h: { shape: [6], dtype: "f16", range: [-3, 3] } },
    build: ({ b, h }) => [o.cast(b, "f32"), o.cast(b, "f16"), o.cast(b, "i32"), o.cast(h, "bf16"), o.cast(h, "f32")],
  },
];

/** Cases for the norm, activation, softmax / cross-entropy and cast families. */
export const cases: OpCase[] = [...normCases, ...actCases, ...softmaxCases, ...ceCases, ...castCases, bigGrid];
