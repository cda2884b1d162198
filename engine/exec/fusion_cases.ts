/**
 * Conformance cases for the WebGPU planner's elementwise fusion (engine/exec/fuse.ts): small graphs built so that
 * each fused pattern occurs — chains, broadcasts inside a chain, several stored outputs, matmul epilogues,
 * reduction prologues and epilogues, values used both inside and outside a group, views inside a chain, casts and
 * activations. The harness checks values and gradients (whose graphs fuse too) against the reference; the
 * structure each case is meant to produce is asserted in fuse_test.ts.
 * @module
 */
import type { OpCase } from "./testing/harness.ts";
import * as o from "../graph/ops/mod.ts";

const f = (shape: number[], range?: [number, number]) => ({ shape, grad: true, range });

/** The fusion cases. */
export const cases: OpCase[] = [
  {
    name: "fused chain of unary and binary ops",
    operands: { x: f([5, 7]), y: f([5, 7]) },
    build: ({ x, y }) => o.tanh(o.sub(o.mul(o.exp(o.add(x, y)), 0.5), o.div(x, 3))),
  },
  {
    name: "fused chain with broadcasts inside",
    operands: { x: f([4, 6]), b: f([6]), c: f([4, 1]), s: f([]) },
    build: ({ x, b, c, s }) => o.relu(o.add(o.mul(o.add(x, b), c), s)),
  },
  {
    name: "fused group with several stored outputs",
    operands: { x: f([3, 8]), y: f([8]) },
    build: ({ x, y }) => {
      const t = o.mul(x, y);
      const u = o.sigmoid(t);
      return [t, o.mul(u, u), o.sub(u, x)];
    },
  },
  {
    name: "fused value used inside and outside the group",
    operands: { x: f([6, 4]), y: f([6, 4]), w: f([4, 3]) },
    build: ({ x, y, w }) => {
      const t = o.add(x, y);
      return [o.mul(o.exp(t), t), o.matmul(t, w)];
    },
  },
  {
    name: "matmul epilogue: bias, scale, residual, activation",
    operands: { x: f([2, 5, 9]), w: f([6, 9]), b: f([6]), r: f([2, 5, 6]) },
    build: ({ x, w, b, r }) => o.silu(o.add(o.mul(o.add(o.matmul(x, w, { transB: true }), b), 0.5), r)),
  },
  {
    name: "matmul epilogue whose result is also stored",
    operands: { x: f([7, 5]), w: f([5, 10]), b: f([10]) },
    build: ({ x, w, b }) => {
      const m = o.matmul(x, w);
      return [m, o.gelu(o.add(m, b))];
    },
  },
  {
    name: "LoRA linear: base matmul plus scaled low-rank path, in epilogues",
    operands: { x: f([3, 4, 16]), w: f([12, 16]), a: f([2, 16]), bb: f([12, 2]), res: f([3, 4, 12]) },
    build: ({ x, w, a, bb, res }) => {
      const xa = o.mul(o.matmul(x, a, { transB: true }), 2);
      const lora = o.matmul(xa, bb, { transB: true });
      return o.add(res, o.add(o.matmul(x, w, { transB: true }), lora));
    },
  },
  {
    name: "reduction prologue: sum of squares, mean of a product",
    operands: { x: f([4, 300]), y: f([4, 300]) },
    build: ({ x, y }) => [o.sum(o.mul(x, x)), o.mean(o.add(o.mul(x, y), 1), 1)],
  },
  {
    // No gradient: the backward of max (and of exp) reads the prologue's value, which then must be stored.
    name: "reduction prologue: max of abs, sum of exp over kept axes",
    operands: { x: { shape: [4, 300] }, y: { shape: [4, 300] } },
    build: ({ x, y }) => [o.max(o.abs(o.sub(x, y)), 0), o.sum(o.exp(x), 1, true)],
  },
  {
    name: "reduction with prologue and epilogue (a clipping scale)",
    operands: { x: f([10, 30]), y: f([50]) },
    build: ({ x, y }) => {
      const n = o.add(o.sum(o.mul(x, x)), o.sum(o.mul(y, y)));
      return o.minimum(o.div(1, o.add(o.sqrt(n), 1e-6)), 1);
    },
  },
  {
    name: "reduction epilogue over kept axes",
    operands: { x: f([3, 5, 4]), b: f([3, 1]) },
    build: ({ x, b }) => o.sqrt(o.add(o.sum(o.mul(x, x), 2), o.mul(b, b))),
  },
  {
    name: "views inside a chain",
    operands: { x: f([2, 12]), y: f([4, 6]) },
    build: ({ x, y }) => o.mul(o.reshape(o.exp(o.mul(x, 0.3)), [4, 6]), o.add(y, 1)),
  },
  {
    name: "cast and where inside a chain",
    operands: {
      x: f([3, 5]),
      i: { shape: [3, 5], dtype: "i32", range: [-3, 4] },
      c: { shape: [5], dtype: "i32", range: [0, 2] },
    },
    build: ({ x, i, c }) => o.where(c, o.mul(o.cast(i, "f32"), x), o.neg(x)),
  },
  {
    name: "swiglu and its backward inside matmul epilogues",
    operands: { x: f([6, 8]), wg: f([10, 8]), wu: f([10, 8]), wd: f([8, 10]) },
    build: ({ x, wg, wu, wd }) => {
      const h = o.swiglu(o.matmul(x, wg, { transB: true }), o.matmul(x, wu, { transB: true }));
      return o.add(o.matmul(h, wd, { transB: true }), x);
    },
  },
];
