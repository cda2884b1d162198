/**
 * Sparse expert dispatch: ordering (token, expert) assignments by expert, and the grouped matmul over the ordered
 * rows, where each expert's rows meet only that expert's weight (routed experts, engine/nn/moe.ts).
 *
 * - `expert_sort(ids [..., k] i32)` → `rows [R] i32`, `pos [..., k] i32`, `offsets [E + 1] i32` with R = numel(ids):
 *   the R assignments (a = flat index into ids) stably sorted by expert. Sorted row r holds assignment a, whose
 *   token is `rows[r] = a div k`; `pos[a] = r`; expert e's rows are [offsets[e], offsets[e + 1]). Assignments to an
 *   expert outside [0, E) come last (from offsets[E]), so no expert sees them. Integer outputs, no gradient.
 * - `grouped_matmul(x [R, K], w, offsets [E + 1] i32)` → y [R, M] f32, y[r] = x[r] · W[e]ᵀ for r in expert e's rows
 *   (w [E, M, K] with `transB`, else w [E, K, M] and y[r] = x[r] · W[e]); rows in no expert's range are 0. Offsets must
 *   be non-decreasing in [0, R], as expert_sort makes them. It costs R·K·M where dense dispatch costs E·R/k·K·M.
 * - `grouped_matmul_dw(a [R, P], b [R, Q], offsets [E + 1] i32)` → [E, P, Q] f32, out[e] = Σ_{r in e} a[r]ᵀ · b[r]
 *   (summed in row order): the weight gradient of grouped_matmul, a segmented reduction over each expert's rows.
 *
 * Gradients: dx = grouped_matmul(dy, w, offsets) with the transpose flag flipped; dW = grouped_matmul_dw(dy, x) with
 * transB (dW[e] = Σ dy[r]ᵀ x[r], [M, K]), else grouped_matmul_dw(x, dy). Gathering the rows (embedding, whose gradient
 * is the scatter-add embedding_bwd) and putting them back in assignment order (embedding by `pos`) are existing ops.
 * @module
 */
import { defineOp, registerOps } from "../op.ts";
import { graphOf, op1, type Tensor } from "../graph.ts";
import { fmtInfo, isFloat, numel, type TensorInfo } from "../types.ts";

/** Attrs of `expert_sort`: the number of experts E. */
export interface ExpertSortAttrs extends Record<string, unknown> {
  experts: number;
}

/** Attrs of `grouped_matmul`: whether w is [E, M, K] (used transposed) rather than [E, K, M]. */
export interface GroupedMatmulAttrs extends Record<string, unknown> {
  transB: boolean;
}

/** Sizes of a grouped matmul: R rows, K inner, M out, E experts. */
export interface GroupedDims {
  R: number;
  K: number;
  M: number;
  E: number;
}

function checkOffsets(off: TensorInfo, E?: number): number {
  if (
    off.dtype !== "i32" || off.shape.length !== 1 || off.shape[0] < 2 || (E !== undefined && off.shape[0] !== E + 1)
  ) {
    throw new Error(`offsets must be [${E === undefined ? "E" : E} + 1] i32 (E >= 1), got ${fmtInfo(off)}`);
  }
  return off.shape[0] - 1;
}

/** Geometry of `grouped_matmul` from its input infos; throws naming what was expected. */
export function groupedDims(
  x: TensorInfo,
  w: TensorInfo,
  off: TensorInfo,
  { transB }: GroupedMatmulAttrs,
): GroupedDims {
  if (x.shape.length !== 2 || !isFloat(x.dtype)) throw new Error(`x must be a float [R, K] tensor, got ${fmtInfo(x)}`);
  if (w.shape.length !== 3 || !isFloat(w.dtype)) {
    throw new Error(`w must be a float [E, M, K] tensor, got ${fmtInfo(w)}`);
  }
  const [R, K] = x.shape;
  const [E, w1, w2] = w.shape;
  const [Kw, M] = transB ? [w2, w1] : [w1, w2];
  if (Kw !== K) throw new Error(`inner dimensions differ: ${K} (x) vs ${Kw} (w ${fmtInfo(w)}, transB ${transB})`);
  checkOffsets(off, E);
  return { R, K, M, E };
}

/** Geometry of `grouped_matmul_dw` (R rows, E experts, out [E, P, Q]). */
export function groupedDwDims(
  a: TensorInfo,
  b: TensorInfo,
  off: TensorInfo,
): { R: number; P: number; Q: number; E: number } {
  if (
    a.shape.length !== 2 || b.shape.length !== 2 || a.shape[0] !== b.shape[0] || a.dtype !== "f32" || b.dtype !== "f32"
  ) {
    throw new Error(`a and b must be f32 [R, P] and [R, Q] with the same R, got ${fmtInfo(a)} and ${fmtInfo(b)}`);
  }
  return { R: a.shape[0], P: a.shape[1], Q: b.shape[1], E: checkOffsets(off) };
}

/** The expert range [lo, hi) of expert e, clipped to [0, R]. */
function range(off: Float64Array, e: number, R: number): [number, number] {
  return [Math.max(0, Math.min(R, off[e])), Math.max(0, Math.min(R, off[e + 1]))];
}

registerOps([
  // ids [..., k] i32 -> rows [R] i32, pos [..., k] i32, offsets [E + 1] i32 (no gradient)
  defineOp<ExpertSortAttrs>({
    name: "expert_sort",
    infer: ([ids], { experts }) => {
      if (ids.dtype !== "i32" || ids.shape.length < 1) throw new Error(`ids must be [..., k] i32, got ${fmtInfo(ids)}`);
      if (!Number.isInteger(experts) || experts < 1) {
        throw new Error(`experts must be a positive integer, got ${experts}`);
      }
      const R = numel(ids.shape);
      return [
        { shape: [R], dtype: "i32" },
        { shape: [...ids.shape], dtype: "i32" },
        { shape: [experts + 1], dtype: "i32" },
      ];
    },
    ref: ([ids], { experts: E }) => {
      const R = ids.data.length, k = ids.shape[ids.shape.length - 1];
      const cls = (a: number) => (ids.data[a] >= 0 && ids.data[a] < E ? ids.data[a] : E);
      const count = new Float64Array(E + 1);
      for (let a = 0; a < R; a++) count[cls(a)]++;
      const offsets = new Float64Array(E + 1), next = new Float64Array(E + 1);
      for (let c = 1; c <= E; c++) offsets[c] = offsets[c - 1] + count[c - 1];
      next.set(offsets);
      const rows = new Float64Array(R), pos = new Float64Array(R);
      for (let a = 0; a < R; a++) {
        const r = next[cls(a)]++;
        rows[r] = Math.floor(a / k);
        pos[a] = r;
      }
      return [rows, pos, offsets];
    },
  }),
  // x [R, K], w [E, M, K] (transB) or [E, K, M], offsets [E + 1] i32 -> y [R, M] f32
  defineOp<GroupedMatmulAttrs>({
    name: "grouped_matmul",
    infer: ([x, w, off], attrs) => {
      const { R, M } = groupedDims(x, w, off, attrs);
      return [{ shape: [R, M], dtype: "f32" }];
    },
    ref: ([x, w, off], attrs) => {
      const { R, K, M, E } = groupedDims(x, w, off, attrs);
      const y = new Float64Array(R * M);
      for (let e = 0; e < E; e++) {
        const [lo, hi] = range(off.data, e, R);
        const base = e * K * M;
        for (let r = lo; r < hi; r++) {
          for (let m = 0; m < M; m++) {
            let s = 0;
            for (let q = 0; q < K; q++) s += x.data[r * K + q] * w.data[base + (attrs.transB ? m * K + q : q * M + m)];
            y[r * M + m] = s;
          }
        }
      }
      return [y];
    },
    grad: (c) => {
      const [x, w, off] = c.inputs;
      const g = c.grads[0]!;
      const { transB } = c.attrs;
      return [
        c.needs[0] ? groupedMatmul(g, w, off, { transB: !transB }) : undefined,
        c.needs[1] ? (transB ? groupedMatmulDw(g, x, off) : groupedMatmulDw(x, g, off)) : undefined,
        undefined,
      ];
    },
  }),
  // a [R, P], b [R, Q], offsets [E + 1] i32 -> [E, P, Q] f32
  defineOp({
    name: "grouped_matmul_dw",
    infer: ([a, b, off]) => {
      const { P, Q, E } = groupedDwDims(a, b, off);
      return [{ shape: [E, P, Q], dtype: "f32" }];
    },
    ref: ([a, b, off]) => {
      const { R, P, Q, E } = groupedDwDims(a, b, off);
      const out = new Float64Array(E * P * Q);
      for (let e = 0; e < E; e++) {
        const [lo, hi] = range(off.data, e, R);
        for (let r = lo; r < hi; r++) {
          for (let p = 0; p < P; p++) {
            const av = a.data[r * P + p];
            for (let q = 0; q < Q; q++) out[(e * P + p) * Q + q] += av * b.data[r * Q + q];
          }
        }
      }
      return [out];
    },
  }),
]);

/** The result of {@link expertSort}. */
export interface ExpertOrder {
  /** [R] i32: the token (ids' flat index div k) of each sorted row. */
  rows: Tensor;
  /** Like ids: the sorted row of each assignment. */
  pos: Tensor;
  /** [E + 1] i32: expert e's rows are [offsets[e], offsets[e + 1]); out-of-range assignments come from offsets[E]. */
  offsets: Tensor;
}

/** Sorts the assignments `ids` [..., k] (i32 expert ids) stably by expert; see the module doc. */
export function expertSort(ids: Tensor, experts: number): ExpertOrder {
  const [rows, pos, offsets] = graphOf(ids).apply("expert_sort", [ids], { experts });
  return { rows, pos, offsets };
}

/** Row r of `x` [R, K] times expert e(r)'s weight: w [E, M, K] with `transB`, else [E, K, M] → [R, M] f32. */
export function groupedMatmul(x: Tensor, w: Tensor, offsets: Tensor, opts: { transB?: boolean } = {}): Tensor {
  return op1("grouped_matmul", [x, w, offsets], { transB: !!opts.transB });
}

/** Per expert e: Σ over its rows r of a[r]ᵀ · b[r] → [E, P, Q] f32 (grouped_matmul's weight gradient). */
export function groupedMatmulDw(a: Tensor, b: Tensor, offsets: Tensor): Tensor {
  return op1("grouped_matmul_dw", [a, b, offsets]);
}
