/**
 * Conformance cases of the embedding, rope and dropout families (optimizers have no gradient; they
 * are checked on both executors in optim_test.ts).
 * @module
 */
import type { OpCase } from "./testing.ts";
import * as o from "./mod.ts";

const f = (shape: number[], range?: [number, number]) => ({ shape, grad: true, range });
const ids = (shape: number[], data: number[]) => ({ shape, dtype: "i32" as const, data });
const positions = (shape: number[], range: [number, number]) => ({ shape, dtype: "i32" as const, range });
const seed = (s: number) => ({ shape: [], dtype: "u32" as const, data: [s] });

/** Cases for the embedding, rope and dropout families. */
export const cases: OpCase[] = [
  {
    name: "embedding repeated and out-of-range ids",
    operands: { w: f([7, 5]), t: ids([2, 6], [3, 1, 3, 6, 0, 3, -1, 7, 1, 100, 3, 6]) },
    build: ({ w, t }) => o.embedding(w, t),
  },
  {
    name: "embedding_bwd many tokens, wide rows",
    operands: { w: f([11, 300]), t: { shape: [3, 100], dtype: "i32", range: [-1, 12] } },
    build: ({ w, t }) => o.embedding(w, t),
  },
  {
    name: "embedding bf16 and f16 frozen weights",
    operands: {
      wb: { shape: [6, 4], dtype: "bf16" },
      wh: { shape: [6, 4], dtype: "f16" },
      t: ids([5], [5, 0, 2, 2, 6]),
    },
    build: ({ wb, wh, t }) => [o.embedding(wb, t), o.embedding(wh, t)],
  },
  {
    name: "rope default",
    operands: { x: f([2, 5, 3, 8]), p: positions([2, 5], [0, 1000]) },
    build: ({ x, p }) => o.rope(x, p),
  },
  {
    name: "rope linear scaling, theta 500000",
    operands: { x: f([1, 4, 2, 16]), p: positions([1, 4], [0, 4096]) },
    build: ({ x, p }) => o.rope(x, p, { theta: 500000, scaling: { type: "linear", factor: 4 } }),
  },
  {
    name: "rope llama3 scaling (all three bands)",
    operands: { x: f([2, 3, 2, 16]), p: positions([2, 3], [0, 300]) },
    build: ({ x, p }) =>
      o.rope(x, p, {
        scaling: { type: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 },
      }),
  },
  {
    name: "rope partial rotary with attention scaling",
    operands: { x: f([1, 3, 4, 10]), p: positions([1, 3], [0, 50]) },
    build: ({ x, p }) => o.rope(x, p, { rotaryDim: 4, attentionScaling: 1.25, theta: 100 }),
  },
  {
    name: "rope per-row frequency words [B, r/2, 2], partial rotary",
    operands: { x: f([2, 3, 2, 12]), p: positions([2, 3], [0, 5000]) },
    build: ({ x, p }) => {
      const words = [1, 3].flatMap((factor) => o.ropeFreqWords(o.ropeInvFreq(8, 1e4, { type: "linear", factor })));
      return o.rope(x, p, { rotaryDim: 8, freq: x.graph.constant(words, [2, 4, 2], "u32") });
    },
  },
  {
    name: "rope positions near 128k (tight tolerance)",
    operands: { x: f([2, 8, 1, 64]), p: positions([2, 8], [100000, 131072]) },
    build: ({ x, p }) => o.rope(x, p, { theta: 500000 }),
    tol: 2e-6,
  },
  {
    name: "rope inverse",
    operands: { x: f([1, 2, 3, 6]), p: { shape: [1, 2], dtype: "i32", data: [7, -3] } },
    build: ({ x, p }) => o.rope(x, p, { inverse: true }),
  },
  {
    name: "dropout p=0.3",
    operands: { x: f([4, 50]), s: seed(12345) },
    build: ({ x, s }) => o.dropout(x, s, { p: 0.3 }),
  },
  {
    name: "dropout two sites, one seed",
    operands: { x: f([3, 7, 5]), s: seed(0xdeadbeef) },
    build: ({ x, s }) => [o.dropout(x, s, { p: 0.5, offset: 1 }), o.dropout(o.mul(x, 2), s, { p: 0.1, offset: 2 })],
  },
];
