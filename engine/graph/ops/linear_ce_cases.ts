/**
 * Conformance cases of the fused LM head + cross-entropy (several chunks, ignored labels, frozen
 * bf16 head), plus its agreement with the unfused matmul + cross_entropy composition.
 * @module
 */
import type { OpCase } from "./testing.ts";
import { linearCrossEntropy } from "./linear_ce.ts";
import { crossEntropy } from "./softmax.ts";
import { matmul } from "./matmul.ts";
import { sub } from "./elementwise.ts";

const labels = (n: number, v: number, ignoreEvery = 5) =>
  Array.from({ length: n }, (_, i) => (i % ignoreEvery === 2 ? -100 : (i * 7 + 3) % v));

/** Cases of the linear_ce family. */
export const cases: OpCase[] = [
  {
    name: "linear_ce mean, 3 chunks with a short last one",
    operands: {
      h: { shape: [150, 8], grad: true },
      w: { shape: [37, 8], grad: true },
      t: { shape: [150], dtype: "i32", data: labels(150, 37) },
    },
    build: ({ h, w, t }) => linearCrossEntropy(h, w, t, { chunk: 64 }),
  },
  {
    name: "linear_ce sum, one chunk, out-of-range label",
    operands: {
      h: { shape: [20, 6], grad: true },
      w: { shape: [11, 6], grad: true },
      t: { shape: [20], dtype: "i32", data: labels(20, 11).map((x, i) => (i === 4 ? 11 : x)) },
    },
    build: ({ h, w, t }) => linearCrossEntropy(h, w, t, { reduction: "sum" }),
  },
  {
    name: "linear_ce frozen bf16 head",
    operands: {
      h: { shape: [70, 8], grad: true },
      w: { shape: [29, 8], dtype: "bf16" },
      t: { shape: [70], dtype: "i32", data: labels(70, 29) },
    },
    build: ({ h, w, t }) => linearCrossEntropy(h, w, t, { chunk: 64 }),
  },
  {
    name: "linear_ce all labels ignored",
    operands: {
      h: { shape: [9, 4], grad: true },
      w: { shape: [7, 4], grad: true },
      t: { shape: [9], dtype: "i32", data: Array(9).fill(-100) },
    },
    build: ({ h, w, t }) => linearCrossEntropy(h, w, t),
  },
  {
    name: "linear_ce equals matmul + cross_entropy",
    operands: {
      h: { shape: [130, 8], grad: true },
      w: { shape: [23, 8], grad: true },
      t: { shape: [130], dtype: "i32", data: labels(130, 23) },
    },
    // The difference of the two losses is ~0 and so are its gradients.
    build: ({ h, w, t }) =>
      sub(linearCrossEntropy(h, w, t, { chunk: 64 }), crossEntropy(matmul(h, w, { transB: true }), t)),
    tol: 1e-5,
  },
];
