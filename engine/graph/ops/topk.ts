/**
 * Top-k along the last axis, and the gather / scatter along the last axis its gradient needs (mixture-of-experts
 * routers, engine/nn/moe_router.ts).
 *
 * - `topk(x [..., E] f32, k)` → `values [..., k] f32`, `indices [..., k] i32`: the k largest entries of each row,
 *   largest first (`sorted` descending). Ties go to the lower index: entry i ranks before entry j when x_i > x_j, or
 *   x_i = x_j and i < j — ONNX TopK's documented rule and what jax.lax.top_k does. torch.topk on CPU has no fixed tie
 *   order (checked with torch 2.13: all-equal rows of 8 give [6, 5], of 128 experts at k 8 give [84, 87, 86, ...],
 *   a quickselect's order), so goldens from random floats, where ties do not occur, are unaffected. The order of
 *   NaN entries is unspecified. Gradient: the values' gradient scattered back to the chosen positions
 *   (`scatter_last`); the indices have none. 1 ≤ k ≤ E.
 * - `gather_last(x [..., E] f32, idx [..., k] i32)` → [..., k] f32, out[..., j] = x[..., idx[..., j]] (0 where the
 *   index is outside [0, E)). Gradient: `scatter_last` of the output gradient.
 * - `scatter_last(v [..., k] f32, idx [..., k] i32, size E)` → [..., E] f32, out[..., e] = Σ_{j : idx[..., j] = e}
 *   v[..., j] in j order (0 where no index points; out-of-range indices add nothing). Gradient: `gather_last` of the
 *   output gradient.
 *
 * Each costs O(rows · E · k) at most, where the comparison masks it replaces cost O(rows · E²).
 * @module
 */
import { defineOp, registerOps } from "../op.ts";
import { graphOf, op1, type Tensor } from "../graph.ts";
import { fmtInfo, numel, type TensorInfo } from "../types.ts";

/** Attrs of `topk`: how many entries each row keeps. */
export interface TopkAttrs extends Record<string, unknown> {
  k: number;
}

/** Attrs of `scatter_last`: the length E of the output's last axis. */
export interface ScatterLastAttrs extends Record<string, unknown> {
  size: number;
}

/** Rows and row length of `topk`'s input; throws naming what was expected. */
export function topkDims(x: TensorInfo, k: number): { rows: number; E: number } {
  if (x.dtype !== "f32" || x.shape.length < 1) throw new Error(`x must be f32 [..., E], got ${fmtInfo(x)}`);
  const E = x.shape[x.shape.length - 1];
  if (!Number.isInteger(k) || k < 1 || k > E) throw new Error(`k must be an integer in [1, ${E}], got ${k}`);
  return { rows: numel(x.shape) / E, E };
}

/** Rows, E and k of a gather or scatter along the last axis: `full` [..., E] and `idx` [..., k] share the lead. */
export function lastAxisDims(
  full: readonly number[],
  idx: TensorInfo,
  what: string,
): { rows: number; E: number; k: number } {
  const lead = full.slice(0, -1), k = idx.shape[idx.shape.length - 1];
  if (
    idx.dtype !== "i32" || idx.shape.length !== full.length || lead.some((d, i) => d !== idx.shape[i]) ||
    full.length < 1
  ) {
    throw new Error(
      `idx must be [${[...lead, "k"].join(", ")}] i32 to match ${what} [${full.join(", ")}], got ${fmtInfo(idx)}`,
    );
  }
  return { rows: numel(lead), E: full[full.length - 1], k };
}

registerOps([
  // x [..., E] f32 -> values [..., k] f32, indices [..., k] i32
  defineOp<TopkAttrs>({
    name: "topk",
    infer: ([x], { k }) => {
      topkDims(x, k);
      const lead = x.shape.slice(0, -1);
      return [{ shape: [...lead, k], dtype: "f32" }, { shape: [...lead, k], dtype: "i32" }];
    },
    ref: ([x], { k }) => {
      const { rows, E } = topkDims(x, k);
      const values = new Float64Array(rows * k), indices = new Float64Array(rows * k);
      const order = Array.from({ length: E }, (_, i) => i);
      for (let r = 0; r < rows; r++) {
        const row = x.data.subarray(r * E, (r + 1) * E);
        order.sort((i, j) => (row[j] - row[i]) || (i - j)); // descending; ties to the lower index
        for (let j = 0; j < k; j++) {
          values[r * k + j] = row[order[j]];
          indices[r * k + j] = order[j];
        }
        order.sort((i, j) => i - j);
      }
      return [values, indices];
    },
    grad: (
      c,
    ) => [c.needs[0] && c.grads[0] ? scatterLast(c.grads[0], c.outputs[1], c.inputs[0].shape.at(-1)!) : undefined],
  }),
  // x [..., E] f32, idx [..., k] i32 -> [..., k] f32
  defineOp({
    name: "gather_last",
    infer: ([x, idx]) => {
      if (x.dtype !== "f32") throw new Error(`x must be f32, got ${fmtInfo(x)}`);
      lastAxisDims(x.shape, idx, "x");
      return [{ shape: [...idx.shape], dtype: "f32" }];
    },
    ref: ([x, idx]) => {
      const { rows, E, k } = lastAxisDims(x.shape, idx, "x");
      const out = new Float64Array(rows * k);
      for (let r = 0; r < rows; r++) {
        for (let j = 0; j < k; j++) {
          const e = idx.data[r * k + j];
          if (e >= 0 && e < E) out[r * k + j] = x.data[r * E + e];
        }
      }
      return [out];
    },
    grad: (c) => [
      c.needs[0] ? scatterLast(c.grads[0]!, c.inputs[1], c.inputs[0].shape.at(-1)!) : undefined,
      undefined,
    ],
  }),
  // v [..., k] f32, idx [..., k] i32 -> [..., E] f32
  defineOp<ScatterLastAttrs>({
    name: "scatter_last",
    infer: ([v, idx], { size }) => {
      if (v.dtype !== "f32" || v.shape.join() !== idx.shape.join()) {
        throw new Error(`v must be f32 of idx's shape [${idx.shape.join(", ")}], got ${fmtInfo(v)}`);
      }
      if (!Number.isInteger(size) || size < 1) throw new Error(`size must be a positive integer, got ${size}`);
      const full = [...v.shape.slice(0, -1), size];
      lastAxisDims(full, idx, "the output");
      return [{ shape: full, dtype: "f32" }];
    },
    ref: ([v, idx], { size: E }) => {
      const k = v.shape[v.shape.length - 1], rows = numel(v.shape) / k;
      const out = new Float64Array(rows * E);
      for (let r = 0; r < rows; r++) {
        for (let j = 0; j < k; j++) {
          const e = idx.data[r * k + j];
          if (e >= 0 && e < E) out[r * E + e] += v.data[r * k + j];
        }
      }
      return [out];
    },
    grad: (c) => [c.needs[0] ? gatherLast(c.grads[0]!, c.inputs[1]) : undefined, undefined],
  }),
]);

/**
 * The k largest entries of each row of x [..., E] (f32) and their indices [..., k] (i32), largest first, ties to
 * the lower index. The values carry x's gradient; the indices none.
 *
 * @example
 * ```ts
 * const g = new Graph();
 * const { values, indices } = topk(g.input("p", [4, 8]), 2); // [4, 2] each
 * ```
 */
export function topk(x: Tensor, k: number): { values: Tensor; indices: Tensor } {
  const [values, indices] = graphOf(x).apply("topk", [x], { k });
  return { values, indices };
}

/** x [..., E] (f32) at the indices idx [..., k] (i32) of each row → [..., k] f32; 0 for an index outside [0, E). */
export function gatherLast(x: Tensor, idx: Tensor): Tensor {
  return op1("gather_last", [x, idx]);
}

/**
 * v [..., k] (f32) added into zeros [..., size] at the indices idx [..., k] (i32) of each row; out-of-range indices
 * add nothing. With v = 1 and distinct indices, the 0/1 mask of the chosen entries.
 */
export function scatterLast(v: Tensor, idx: Tensor, size: number): Tensor {
  return op1("scatter_last", [v, idx], { size });
}
