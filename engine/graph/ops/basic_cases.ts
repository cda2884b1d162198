/**
 * Conformance cases of the elementwise, shape, reduce and matmul families.
 * @module
 */
import type { OpCase } from "./testing.ts";
import * as o from "./mod.ts";

const f = (shape: number[], range?: [number, number]) => ({ shape, grad: true, range });

/** Cases for the basic op families. */
export const cases: OpCase[] = [
  { name: "add broadcast", operands: { a: f([2, 3, 4]), b: f([3, 1]) }, build: ({ a, b }) => o.add(a, b) },
  { name: "sub", operands: { a: f([5, 4]), b: f([4]) }, build: ({ a, b }) => o.sub(a, b) },
  { name: "mul broadcast", operands: { a: f([2, 1, 4]), b: f([3, 1]) }, build: ({ a, b }) => o.mul(a, b) },
  { name: "div", operands: { a: f([3, 4]), b: f([3, 4], [0.5, 2]) }, build: ({ a, b }) => o.div(a, b) },
  { name: "neg exp log", operands: { a: f([7], [0.2, 3]) }, build: ({ a }) => [o.neg(a), o.exp(a), o.log(a)] },
  { name: "sqrt rsqrt", operands: { a: f([9], [0.2, 3]) }, build: ({ a }) => [o.sqrt(a), o.rsqrt(a)] },
  { name: "abs", operands: { a: f([11]) }, build: ({ a }) => o.abs(a) },
  { name: "pow", operands: { a: f([6], [0.5, 2]), b: f([6], [-1.5, 2]) }, build: ({ a, b }) => o.pow(a, b) },
  { name: "pow by scalar", operands: { a: f([2, 3]) }, build: ({ a }) => o.pow(a, 2) },
  {
    name: "maximum minimum",
    operands: { a: f([4, 5]), b: f([5]) },
    build: ({ a, b }) => [o.maximum(a, b), o.minimum(a, b)],
  },
  {
    name: "where",
    operands: { c: { shape: [3, 4], dtype: "i32", range: [0, 2] }, a: f([3, 4]), b: f([4]) },
    build: ({ c, a, b }) => o.where(c, a, b),
  },
  {
    name: "compare",
    operands: { a: { shape: [6], data: [1, 2, 3, 3, 0, -1] }, b: { shape: [6], data: [1, 1, 4, 3, 1, -2] } },
    build: ({ a, b }) => [o.ge(a, b), o.gt(a, b), o.eq(a, b)],
  },
  {
    name: "sum axes",
    operands: { a: f([3, 4, 5]) },
    build: ({ a }) => [o.sum(a, [0, 2]), o.sum(a, 1, true), o.sum(a)],
  },
  { name: "mean axes", operands: { a: f([3, 4, 5]) }, build: ({ a }) => [o.mean(a, -1), o.mean(a, [0, 1], true)] },
  { name: "max axes", operands: { a: f([4, 6]) }, build: ({ a }) => [o.max(a, 1), o.max(a, 0, true)] },
  { name: "long sum (workgroup tree)", operands: { a: f([3, 1000]) }, build: ({ a }) => [o.sum(a, 1), o.max(a)] },
  { name: "reshape", operands: { a: f([2, 6]) }, build: ({ a }) => o.mul(o.reshape(a, [3, -1]), 2) },
  { name: "expand", operands: { a: f([3, 1]) }, build: ({ a }) => o.expand(a, [2, 3, 4]) },
  { name: "permute", operands: { a: f([2, 3, 4]) }, build: ({ a }) => [o.permute(a, [2, 0, 1]), o.transpose(a)] },
  { name: "slice", operands: { a: f([4, 5, 3]) }, build: ({ a }) => [o.slice(a, 1, 1, 4), o.slice(a, 0, 0, 2)] },
  { name: "concat", operands: { a: f([2, 3]), b: f([2, 2]) }, build: ({ a, b }) => o.concat([a, b, a], 1) },
  { name: "matmul", operands: { a: f([5, 7]), b: f([7, 3]) }, build: ({ a, b }) => o.matmul(a, b) },
  {
    name: "matmul transA",
    operands: { a: f([7, 5]), b: f([7, 3]) },
    build: ({ a, b }) => o.matmul(a, b, { transA: true }),
  },
  {
    name: "matmul transB",
    operands: { a: f([5, 7]), b: f([3, 7]) },
    build: ({ a, b }) => o.matmul(a, b, { transB: true }),
  },
  {
    name: "matmul transA transB",
    operands: { a: f([7, 5]), b: f([3, 7]) },
    build: ({ a, b }) => o.matmul(a, b, { transA: true, transB: true }),
  },
  { name: "matmul batched", operands: { a: f([2, 3, 4, 5]), b: f([2, 3, 5, 6]) }, build: ({ a, b }) => o.matmul(a, b) },
  {
    name: "matmul batch broadcast",
    operands: { a: f([2, 1, 4, 5]), b: f([3, 5, 2]) },
    build: ({ a, b }) => o.matmul(a, b),
  },
  {
    name: "matmul 3d by weight",
    operands: { a: f([2, 4, 5]), b: f([6, 5]) },
    build: ({ a, b }) => o.matmul(a, b, { transB: true }),
  },
  {
    name: "matmul odd sizes",
    operands: { a: f([33, 17]), b: f([17, 65]) },
    build: ({ a, b }) => o.matmul(a, b),
  },
];
