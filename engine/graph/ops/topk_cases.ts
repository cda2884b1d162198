/**
 * Conformance cases of top-k along the last axis and its gather / scatter (engine/graph/ops/topk.ts): ties to the
 * lower index (rows of equal values, integer-valued rows of 256), k from 1 to E, the values' gradient, indices
 * outside [0, E), and the routers built from them (softmax top-k renormalised; grouped top-k).
 * @module
 */
import type { OpCase } from "./testing.ts";
import * as o from "./mod.ts";
import type { Tensor } from "../graph.ts";

const f = (shape: number[], range?: [number, number]) => ({ shape, grad: true, range });
const ids = (shape: number[], data: number[]) => ({ shape, dtype: "i32" as const, data });
const ones = (t: Tensor, shape: number[]) => t.graph.constant(new Array(shape[0] * shape[1]).fill(1), shape);
const both = (t: { values: Tensor; indices: Tensor }) => [t.values, t.indices];

const TIES = [0.1, 0.5, 0.2, 0.5, 3, 1, 2, 0, -1, -1, -1, -1, 1, 2, 2, 2, 0, -0, 0, 7];

/** Cases for the topk family. */
export const cases: OpCase[] = [
  {
    name: "topk ties to the lower index, k 1, 2 and E",
    operands: { x: { shape: [5, 4], data: TIES } },
    build: ({ x }) => [...both(o.topk(x, 1)), ...both(o.topk(x, 2)), ...both(o.topk(x, 4))],
  },
  {
    name: "topk integer-valued rows (many ties), E 256 k 8 and E 20 k 3, 3-D",
    operands: {
      t: { shape: [3, 11, 256], dtype: "i32", range: [0, 4] },
      s: { shape: [2, 30, 20], dtype: "i32", range: [-2, 2] },
    },
    build: ({ t, s }) => [...both(o.topk(o.cast(t, "f32"), 8)), ...both(o.topk(o.cast(s, "f32"), 3))],
  },
  {
    name: "topk E 128 k 8: values' gradient at the chosen entries",
    operands: { x: f([40, 128]) },
    build: ({ x }) => both(o.topk(x, 8)),
  },
  {
    name: "topk odd sizes: E 37 k 5, one row of E 3 k 3",
    operands: { x: f([3, 7, 37]), y: f([1, 3]) },
    build: ({ x, y }) => [...both(o.topk(x, 5)), ...both(o.topk(y, 3))],
  },
  {
    name: "gather_last and scatter_last: repeated and out-of-range indices",
    operands: {
      x: f([3, 5]),
      v: f([3, 4]),
      i: ids([3, 4], [4, 0, 4, -1, 2, 5, 1, 3, 0, 0, 9, 4]),
    },
    build: ({ x, v, i }) => [o.gatherLast(x, i), o.scatterLast(v, i, 5), o.scatterLast(o.gatherLast(x, i), i, 5)],
  },
  {
    name: "softmax router: top-k probabilities renormalised, and the 0/1 mask",
    operands: { x: f([30, 16], [-3, 3]) },
    build: ({ x }) => {
      const p = o.softmax(x, -1);
      const { values, indices } = o.topk(p, 4);
      return [o.div(values, o.sum(values, -1, true)), o.scatterLast(ones(x, [30, 4]), indices, 16)];
    },
  },
  {
    name: "grouped top-k: top-2 sum per group, top groups, top-k of the eligible, weights gathered",
    operands: { s: f([12, 16]), c: f([12, 16]) },
    build: ({ s, c }) => {
      const groups = o.sum(o.topk(o.reshape(c, [12, 4, 4]), 2).values, -1); // [12, 4]
      const gi = o.topk(groups, 2).indices;
      const keep = o.reshape(o.expand(o.reshape(o.scatterLast(ones(c, [12, 2]), gi, 4), [12, 4, 1]), [12, 4, 4]), [
        12,
        16,
      ]);
      const eligible = o.add(o.mul(c, keep), o.mul(o.add(keep, -1), 1e30));
      const idx = o.topk(eligible, 3).indices;
      return [o.gatherLast(s, idx), idx];
    },
  },
];
