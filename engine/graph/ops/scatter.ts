/**
 * `scatterRows(target, index, value)`: writes rows of `value` into the persistent param `target` in place, at
 * per-batch row indices, once every other node of the graph has run (like `assign`, whose readers see the old
 * value). A KV-cache decode step writes its one new row per sequence this way instead of rewriting the cache.
 *
 * target [N, C, ...R] (a param, written in place), index [N, L] i32, value [N, L, ...R] → no outputs:
 *
 *     target[n, index[n, l], ...r] = value[n, l, ...r]
 *
 * This is ONNX ScatterND (reduction "none") with indices [N, L, 2] = (n, index[n, l]) and updates `value`.
 * As there, the written rows of one n must be distinct (which duplicate wins is unspecified). Indices outside
 * [0, C) are skipped: nothing is written for them (ONNX requires them in range; the engine never feeds them).
 * No gradient.
 * @module
 */
import { defineOp, registerOps } from "../op.ts";
import { graphOf, type Tensor } from "../graph.ts";
import { fmtInfo, numel, type TensorInfo } from "../types.ts";

/** Sizes of a scatter_rows node: N sequences, C target rows, L written rows each, R elements per row. */
export interface ScatterRowsDims {
  N: number;
  C: number;
  L: number;
  R: number;
}

/** Sizes of `scatter_rows` from its input infos; throws saying what was expected. */
export function scatterRowsDims(t: TensorInfo, index: TensorInfo, v: TensorInfo): ScatterRowsDims {
  if (t.shape.length < 2) throw new Error(`the target must be [N, C, ...] (rank >= 2), got ${fmtInfo(t)}`);
  const [N, C, ...rest] = t.shape;
  if (index.dtype !== "i32" || index.shape.length !== 2 || index.shape[0] !== N) {
    throw new Error(`index must be [${N}, L] i32, got ${fmtInfo(index)}`);
  }
  const L = index.shape[1];
  const want = [N, L, ...rest];
  if (v.dtype !== t.dtype || v.shape.join() !== want.join()) {
    throw new Error(`value must be [${want.join(", ")}] ${t.dtype} to match the target and index, got ${fmtInfo(v)}`);
  }
  if (!["f32", "i32", "u32"].includes(t.dtype)) throw new Error(`the target must be f32, i32 or u32, got ${t.dtype}`);
  return { N, C, L, R: numel(rest) };
}

registerOps([
  // target [N, C, ...R] (param, in place), index [N, L] i32, value [N, L, ...R] -> (none)
  defineOp({
    name: "scatter_rows",
    effects: [0],
    infer: ([t, index, v]) => {
      scatterRowsDims(t, index, v);
      return [];
    },
    ref: ([t, index, v]) => {
      const { N, C, L, R } = scatterRowsDims(t, index, v);
      for (let n = 0; n < N; n++) {
        for (let l = 0; l < L; l++) {
          const c = index.data[n * L + l];
          if (c < 0 || c >= C) continue;
          t.data.set(v.data.subarray((n * L + l) * R, (n * L + l + 1) * R), (n * C + c) * R);
        }
      }
      return [];
    },
  }),
]);

/**
 * Writes `value` [N, L, ...R] into rows `index` [N, L] (i32) of the param `target` [N, C, ...R] once every
 * other node of the graph has run: `target[n, index[n, l]] = value[n, l]`. Out-of-range indices write nothing.
 *
 * @example
 * ```ts
 * const g = new Graph();
 * const cache = g.param("cache", [2, 8, 4]); // 2 sequences, 8 slots, rows of 4
 * scatterRows(cache, g.input("pos", [2, 1], "i32"), g.input("row", [2, 1, 4]));
 * ```
 */
export function scatterRows(target: Tensor, index: Tensor, value: Tensor): void {
  if (target.value.kind !== "param") {
    throw new Error(`scatterRows: the target must be a param, got ${target.value.kind}`);
  }
  graphOf(target, index, value).apply("scatter_rows", [target, index, value]);
}
