/**
 * Conformance cases of sparse expert dispatch: expert_sort, grouped_matmul and its weight gradient
 * grouped_matmul_dw (through the gradients), and a whole routed-expert block gathered, multiplied and scattered back.
 * @module
 */
import type { OpCase } from "./testing.ts";
import * as o from "./mod.ts";
import type { Tensor } from "../graph.ts";

const f = (shape: number[], range?: [number, number]) => ({ shape, grad: true, range });
const ids = (shape: number[], data: number[]) => ({ shape, dtype: "i32" as const, data });
const randIds = (shape: number[], E: number) => ({ shape, dtype: "i32" as const, range: [0, E] as [number, number] });

/** x [R, K] through grouped_matmul with offsets sorted from `t`. */
function grouped(x: Tensor, w: Tensor, t: Tensor, E: number, transB: boolean): Tensor {
  return o.groupedMatmul(x, w, o.expertSort(t, E).offsets, { transB });
}

/** Cases for the grouped (sparse expert) family. */
export const cases: OpCase[] = [
  {
    name: "expert_sort repeats, an empty expert, out-of-range ids last",
    operands: { t: ids([4, 3], [2, 0, 2, 4, 1, -1, 0, 2, 7, 1, 0, 2]) },
    build: ({ t }) => {
      const s = o.expertSort(t, 5);
      return [s.rows, s.pos, s.offsets];
    },
  },
  {
    name: "expert_sort many assignments (several tiles per expert)",
    operands: { t: randIds([300, 4], 6) },
    build: ({ t }) => {
      const s = o.expertSort(t, 6);
      return [s.rows, s.pos, s.offsets];
    },
  },
  {
    name: "grouped_matmul transB, random experts",
    operands: { x: f([12, 5]), w: f([3, 4, 5]), t: randIds([12], 3) },
    build: ({ x, w, t }) => grouped(x, w, t, 3, true),
  },
  {
    name: "grouped_matmul [E, K, M], empty expert and unassigned rows are zero",
    operands: { x: f([9, 6]), w: f([4, 6, 7]), t: ids([9], [3, 0, 3, -2, 0, 9, 3, 0, 0]) },
    build: ({ x, w, t }) => grouped(x, w, t, 4, false),
  },
  {
    name: "grouped_matmul partial tiles (R 210, K 70, M 90, E 5)",
    operands: { x: f([210, 70]), w: f([5, 90, 70]), t: randIds([210], 5) },
    build: ({ x, w, t }) => grouped(x, w, t, 5, true),
  },
  {
    name: "grouped_matmul bf16 frozen weight",
    operands: { x: f([10, 8]), w: { shape: [3, 8, 6], dtype: "bf16" }, t: randIds([10], 3) },
    build: ({ x, w, t }) => grouped(x, w, t, 3, false),
  },
  {
    name: "routed experts: gather, gate/up, swiglu, down, weight, scatter back",
    operands: {
      x: f([6, 8]),
      wg: f([4, 5, 8]),
      wu: f([4, 5, 8]),
      wd: f([4, 8, 5]),
      p: f([6, 2], [0.1, 1]),
      t: ids([6, 2], [1, 3, 0, 1, 3, 2, 1, 0, 2, 3, 1, 2]),
    },
    build: ({ x, wg, wu, wd, p, t }) => {
      const s = o.expertSort(t, 4);
      const xs = o.embedding(x, s.rows); // [12, 8]
      const a = o.swiglu(
        o.groupedMatmul(xs, wg, s.offsets, { transB: true }),
        o.groupedMatmul(xs, wu, s.offsets, { transB: true }),
      );
      const ys = o.groupedMatmul(a, wd, s.offsets, { transB: true }); // [12, 8] in expert order
      const y = o.reshape(o.embedding(ys, s.pos), [6, 2, 8]); // back in assignment order
      return o.sum(o.mul(y, o.reshape(p, [6, 2, 1])), 1);
    },
  },
];
