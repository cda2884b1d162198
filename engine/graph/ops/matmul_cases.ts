/**
 * Conformance cases of the tuned matmul kernel: odd sizes (bounds guards), degenerate M/K/N = 1,
 * tile multiples, every transpose layout both aligned (4-wide loads) and odd (scalar loads), batched
 * with broadcast batch axes, and bf16/f16 stored operands (f32 accumulate, rounded once).
 * Shapes are chosen to hit each shape class's default config: `rows`/`cols` (M or N < 8), `s` and
 * `m` by size (see `matmulShapeClass` in kernels/matmul.ts).
 * @module
 */
import type { OpCase, Operand } from "./testing.ts";
import type { DType } from "../types.ts";
import { cast } from "./cast.ts";
import { matmul } from "./matmul.ts";

const f = (shape: number[]): Operand => ({ shape, grad: true });
const stored = (shape: number[], dtype: DType): Operand => ({ shape, dtype });

/** Matmul cases. */
export const cases: OpCase[] = [
  { name: "matmul 33x65x17", operands: { a: f([33, 65]), b: f([65, 17]) }, build: ({ a, b }) => matmul(a, b) },
  { name: "matmul M=1 (1x37x29)", operands: { a: f([1, 37]), b: f([37, 29]) }, build: ({ a, b }) => matmul(a, b) },
  { name: "matmul K=1 (13x1x21)", operands: { a: f([13, 1]), b: f([1, 21]) }, build: ({ a, b }) => matmul(a, b) },
  { name: "matmul N=1 (19x23x1)", operands: { a: f([19, 23]), b: f([23, 1]) }, build: ({ a, b }) => matmul(a, b) },
  {
    name: "matmul tile multiples 64x32x128",
    operands: { a: f([64, 32]), b: f([32, 128]) },
    build: ({ a, b }) => matmul(a, b),
  },
  {
    name: "matmul aligned 40x36x24 all layouts",
    operands: { a: f([40, 36]), at: f([36, 40]), b: f([36, 24]), bt: f([24, 36]) },
    build: ({ a, at, b, bt }) => [
      matmul(at, b, { transA: true }),
      matmul(a, bt, { transB: true }),
      matmul(at, bt, { transA: true, transB: true }),
    ],
  },
  {
    name: "matmul odd 21x35x9 all layouts",
    operands: { a: f([21, 35]), at: f([35, 21]), b: f([35, 9]), bt: f([9, 35]) },
    build: ({ a, at, b, bt }) => [
      matmul(at, b, { transA: true }),
      matmul(a, bt, { transB: true }),
      matmul(at, bt, { transA: true, transB: true }),
    ],
  },
  {
    name: "matmul m class 128x128x144 transB",
    operands: { a: f([128, 128]), b: f([144, 128]) },
    build: ({ a, b }) => matmul(a, b, { transB: true }),
  },
  {
    name: "matmul batched broadcast odd",
    operands: { a: f([2, 1, 5, 7]), b: f([3, 7, 9]) },
    build: ({ a, b }) => matmul(a, b),
  },
  {
    name: "matmul batched broadcast aligned transA",
    operands: { a: f([3, 12, 8]), b: f([2, 1, 12, 16]) },
    build: ({ a, b }) => matmul(a, b, { transA: true }),
  },
  {
    name: "matmul bf16 stored weight (x·Wᵀ), aligned",
    operands: { x: stored([9, 24], "f32"), w: stored([20, 24], "bf16") },
    build: ({ x, w }) => matmul(cast(x, "bf16"), w, { transB: true }),
    tol: 1e-2,
  },
  {
    name: "matmul bf16 stored B, odd",
    operands: { x: stored([7, 13], "f32"), w: stored([13, 11], "bf16") },
    build: ({ x, w }) => matmul(cast(x, "bf16"), w),
    tol: 1e-2,
  },
  {
    name: "matmul f16 stored B, aligned and odd",
    operands: {
      x: stored([12, 16], "f16"),
      w: stored([16, 8], "f16"),
      y: stored([5, 9], "f16"),
      v: stored([9, 3], "f16"),
    },
    build: ({ x, w, y, v }) => [matmul(x, w), matmul(y, v)],
    tol: 2e-3,
  },
];
