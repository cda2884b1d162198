/**
 * Softmax, log-softmax and cross-entropy over the last axis, numerically stable (max subtracted).
 * Cross-entropy is fused with log-softmax: the forward never materialises the softmax, it keeps the
 * per-row log-sum-exp for the backward, which writes dlogits in one pass over the logits.
 * @module
 */
import { defineOp, type RefTensor, registerOps } from "../op.ts";
import { graphOf, op1, type Tensor } from "../graph.ts";
import { isFloat, type TensorInfo } from "../types.ts";
import { rowsOfLastAxis } from "./norm.ts";
import { cast } from "./cast.ts";
import { reshape, transpose } from "./shape.ts";

/** cross_entropy attrs. */
export interface CrossEntropyAttrs extends Record<string, unknown> {
  /** Label value that marks a row as not trained (transformers' -100). */
  ignoreIndex: number;
  /** "mean" over counted rows, "sum", or "none" (per-row losses). */
  reduction: "mean" | "sum" | "none";
}

/**
 * Whether a label counts: not `ignoreIndex` and inside [0, V). Labels outside the range are treated
 * as ignored (zero loss, zero gradient, not counted by "mean") rather than read out of bounds.
 */
export function labelCounts(label: number, V: number, ignoreIndex: number): boolean {
  return label !== ignoreIndex && label >= 0 && label < V;
}

function sameShape(a: TensorInfo, b: TensorInfo, what: string): void {
  if (a.shape.join() !== b.shape.join()) {
    throw new Error(`${what} must have the shape [${a.shape.join(", ")}], got [${b.shape.join(", ")}]`);
  }
}

/** Per-row max and log-sum-exp of x [R, D] (f64). */
function rowLse(x: Float64Array, r: number, D: number): number {
  let m = -Infinity;
  for (let j = 0; j < D; j++) m = Math.max(m, x[r * D + j]);
  let s = 0;
  for (let j = 0; j < D; j++) s += Math.exp(x[r * D + j] - m);
  return m + Math.log(s);
}

function rowwise(f: (x: Float64Array, o: Float64Array, r: number, D: number) => void) {
  return (ins: readonly RefTensor[]): Float64Array[] => {
    const { R, D } = rowsOfLastAxis(ins[0]);
    const out = new Float64Array(R * D);
    for (let r = 0; r < R; r++) f(ins[0].data, out, r, D);
    return [out];
  };
}

function ceInfer([logits, labels]: readonly TensorInfo[], { reduction }: CrossEntropyAttrs): [number, number] {
  if (logits.shape.length !== 2) throw new Error(`logits must be [N, V], got [${logits.shape.join(", ")}]`);
  if (!isFloat(logits.dtype)) throw new Error(`logits must be float, got ${logits.dtype}`);
  const [N, V] = logits.shape;
  if (labels.dtype !== "i32" || labels.shape.length !== 1 || labels.shape[0] !== N) {
    throw new Error(`labels must be [${N}] i32, got [${labels.shape.join(", ")}] ${labels.dtype}`);
  }
  if (!["mean", "sum", "none"].includes(reduction)) {
    throw new Error(`reduction must be "mean", "sum" or "none", got ${JSON.stringify(reduction)}`);
  }
  return [N, V];
}

registerOps([
  // x [..., D] -> y [..., D] = exp(x − max) / Σ exp(x − max)
  defineOp({
    name: "softmax",
    infer: ([x]) => (rowsOfLastAxis(x), [{ shape: x.shape, dtype: x.dtype }]),
    ref: rowwise((x, o, r, D) => {
      const lse = rowLse(x, r, D);
      for (let j = 0; j < D; j++) o[r * D + j] = Math.exp(x[r * D + j] - lse);
    }),
    // dx = y · (dy − Σ dy · y)
    grad: (c) => [op1("softmax_bwd", [c.grads[0]!, c.outputs[0]])],
  }),
  // dy [..., D], y [..., D] -> dx [..., D]
  defineOp({
    name: "softmax_bwd",
    infer: ([dy, y]) => (sameShape(y, dy, "dy"), [{ shape: y.shape, dtype: y.dtype }]),
    ref: ([dy, y]) => {
      const { R, D } = rowsOfLastAxis(y);
      const out = new Float64Array(R * D);
      for (let r = 0; r < R; r++) {
        let s = 0;
        for (let j = 0; j < D; j++) s += dy.data[r * D + j] * y.data[r * D + j];
        for (let j = 0; j < D; j++) out[r * D + j] = y.data[r * D + j] * (dy.data[r * D + j] - s);
      }
      return [out];
    },
  }),
  // x [..., D] -> y [..., D] = x − max − log Σ exp(x − max)
  defineOp({
    name: "log_softmax",
    infer: ([x]) => (rowsOfLastAxis(x), [{ shape: x.shape, dtype: x.dtype }]),
    ref: rowwise((x, o, r, D) => {
      const lse = rowLse(x, r, D);
      for (let j = 0; j < D; j++) o[r * D + j] = x[r * D + j] - lse;
    }),
    // dx = dy − exp(y) · Σ dy
    grad: (c) => [op1("log_softmax_bwd", [c.grads[0]!, c.outputs[0]])],
  }),
  // dy [..., D], y [..., D] -> dx [..., D]
  defineOp({
    name: "log_softmax_bwd",
    infer: ([dy, y]) => (sameShape(y, dy, "dy"), [{ shape: y.shape, dtype: y.dtype }]),
    ref: ([dy, y]) => {
      const { R, D } = rowsOfLastAxis(y);
      const out = new Float64Array(R * D);
      for (let r = 0; r < R; r++) {
        let s = 0;
        for (let j = 0; j < D; j++) s += dy.data[r * D + j];
        for (let j = 0; j < D; j++) out[r * D + j] = dy.data[r * D + j] - Math.exp(y.data[r * D + j]) * s;
      }
      return [out];
    },
  }),
  // logits [N, V], labels [N] i32 -> loss ([] for mean/sum, [N] for none) f32, lse [N] f32
  // loss_i = lse_i − logits[i, label_i] for counted rows, 0 for ignored ones; "mean" divides the sum by
  // the number of counted rows (0 when there are none). lse_i is 0 for ignored rows (never computed).
  defineOp<CrossEntropyAttrs>({
    name: "cross_entropy",
    infer: (ins, attrs) => {
      const [N] = ceInfer(ins, attrs);
      return [{ shape: attrs.reduction === "none" ? [N] : [], dtype: "f32" }, { shape: [N], dtype: "f32" }];
    },
    ref: ([x, labels], { ignoreIndex, reduction }) => {
      const [N, V] = x.shape;
      const rowLoss = new Float64Array(N), lse = new Float64Array(N);
      let count = 0, total = 0;
      for (let r = 0; r < N; r++) {
        const t = labels.data[r];
        if (!labelCounts(t, V, ignoreIndex)) continue;
        lse[r] = rowLse(x.data, r, V);
        rowLoss[r] = lse[r] - x.data[r * V + t];
        count++;
        total += rowLoss[r];
      }
      if (reduction === "none") return [rowLoss, lse];
      return [Float64Array.of(reduction === "sum" ? total : count ? total / count : 0), lse];
    },
    // dlogits = (softmax − onehot) · g (/ count for "mean"), 0 on ignored rows: one fused kernel.
    grad: (c) => {
      if (c.grads[1]) throw new Error("the lse output of cross_entropy is saved for the backward and has no gradient");
      const [logits, labels] = c.inputs;
      const d = op1("cross_entropy_bwd", [c.grads[0]!, logits, labels, c.outputs[1]], c.attrs);
      return [cast(d, logits.dtype), undefined];
    },
  }),
  // g ([] or [N]), logits [N, V], labels [N] i32, lse [N] -> dlogits [N, V] f32
  defineOp<CrossEntropyAttrs>({
    name: "cross_entropy_bwd",
    infer: ([, logits, labels], attrs) => (ceInfer([logits, labels], attrs), [{ shape: logits.shape, dtype: "f32" }]),
    ref: ([g, x, labels, lse], { ignoreIndex, reduction }) => {
      const [N, V] = x.shape;
      const out = new Float64Array(N * V);
      let count = 0;
      for (let r = 0; r < N; r++) if (labelCounts(labels.data[r], V, ignoreIndex)) count++;
      for (let r = 0; r < N; r++) {
        const t = labels.data[r];
        if (!labelCounts(t, V, ignoreIndex)) continue;
        const s = reduction === "none" ? g.data[r] : reduction === "sum" ? g.data[0] : g.data[0] / count;
        for (let j = 0; j < V; j++) {
          out[r * V + j] = (Math.exp(x.data[r * V + j] - lse.data[r]) - (j === t ? 1 : 0)) * s;
        }
      }
      return [out];
    },
  }),
]);

function lastAxis(x: Tensor, axis: number, f: (t: Tensor) => Tensor): Tensor {
  const ax = axis < 0 ? axis + x.rank : axis;
  if (ax < 0 || ax >= x.rank) throw new Error(`axis ${axis} is out of range for rank ${x.rank}`);
  if (ax === x.rank - 1) return f(x);
  return transpose(f(transpose(x, ax, -1)), ax, -1);
}

/** Softmax along `axis` (default the last; other axes are moved last and back). */
export const softmax = (x: Tensor, axis = -1): Tensor => lastAxis(x, axis, (t) => op1("softmax", [t]));

/** log(softmax(x)) along `axis`, computed stably as x − logsumexp(x). */
export const logSoftmax = (x: Tensor, axis = -1): Tensor => lastAxis(x, axis, (t) => op1("log_softmax", [t]));

/**
 * Cross-entropy of `logits` [..., V] against integer `labels` [...] (i32), fused with log-softmax.
 * Rows whose label is `ignoreIndex` (default -100) or outside [0, V) are ignored: zero loss, zero
 * gradient, not counted. `reduction` "mean" (default) divides by the number of counted rows and gives
 * 0 when all are ignored; "sum"; "none" gives the per-row losses [...]. Labels are not shifted here
 * (a causal LM's caller shifts them).
 */
export function crossEntropy(
  logits: Tensor,
  labels: Tensor,
  opts: { ignoreIndex?: number; reduction?: "mean" | "sum" | "none" } = {},
): Tensor {
  const attrs: CrossEntropyAttrs = { ignoreIndex: opts.ignoreIndex ?? -100, reduction: opts.reduction ?? "mean" };
  const V = logits.shape[logits.rank - 1];
  if (labels.shape.join() !== logits.shape.slice(0, -1).join()) {
    throw new Error(
      `crossEntropy: labels must have the shape [${logits.shape.slice(0, -1).join(", ")}] of the logits ` +
        `without their last axis, got [${labels.shape.join(", ")}]`,
    );
  }
  const l2 = reshape(logits, [-1, V]);
  const t1 = reshape(labels, [-1]);
  const loss = graphOf(l2, t1).apply("cross_entropy", [l2, t1], attrs)[0];
  return attrs.reduction === "none" ? reshape(loss, labels.shape) : loss;
}
