/**
 * The LM head fused with cross-entropy: loss = CE(h · Wᵀ, labels) without ever holding the [N, V]
 * logits. The forward computes logits a chunk of rows at a time and keeps only the row log-sum-exp;
 * the backward recomputes each chunk's logits. For a 32k vocabulary and 1024 tokens this replaces
 * 131 MB of logits (and as much for their gradient) by two chunk buffers.
 *
 * Shapes: h [N, D] (f32), W [V, D] (any float dtype; nn.Linear layout), labels [N] i32 → loss [] f32,
 * lse [N] f32 (saved for the backward).
 * @module
 */
import { defineOp, registerOps } from "../op.ts";
import { graphOf, type Tensor } from "../graph.ts";
import { isFloat, type TensorInfo } from "../types.ts";

/** Attrs of the fused head. `chunk` rows per step of the WebGPU kernels (0 = choose). */
export interface LinearCeAttrs extends Record<string, unknown> {
  ignoreIndex: number;
  reduction: "mean" | "sum";
  chunk: number;
}

/** Attrs of the backward: which gradients to compute. */
export interface LinearCeBwdAttrs extends LinearCeAttrs {
  needH: boolean;
  needW: boolean;
}

function check([h, w, labels]: readonly TensorInfo[]): { N: number; D: number; V: number } {
  if (h.shape.length !== 2 || w.shape.length !== 2) throw new Error("h must be [N, D] and W [V, D]");
  const [N, D] = h.shape, [V, Dw] = w.shape;
  if (D !== Dw) throw new Error(`h has ${D} features but W has ${Dw}`);
  if (labels.shape.length !== 1 || labels.shape[0] !== N || labels.dtype !== "i32") {
    throw new Error(`labels must be [${N}] i32, got [${labels.shape.join(", ")}] ${labels.dtype}`);
  }
  if (h.dtype !== "f32" || !isFloat(w.dtype)) throw new Error(`h must be f32 and W float`);
  return { N, D, V };
}

const counts = (t: number, V: number, ignore: number) => t !== ignore && t >= 0 && t < V;

/** Row logits of h·Wᵀ in f64. */
function rowLogits(h: Float64Array, w: Float64Array, r: number, D: number, V: number): Float64Array {
  const out = new Float64Array(V);
  for (let v = 0; v < V; v++) {
    let s = 0;
    for (let d = 0; d < D; d++) s += h[r * D + d] * w[v * D + d];
    out[v] = s;
  }
  return out;
}

function lse(x: Float64Array): number {
  let m = -Infinity;
  for (const v of x) m = Math.max(m, v);
  let s = 0;
  for (const v of x) s += Math.exp(v - m);
  return m + Math.log(s);
}

registerOps([
  defineOp<LinearCeAttrs>({
    name: "linear_cross_entropy",
    infer: (ins) => {
      const { N } = check(ins);
      return [{ shape: [], dtype: "f32" }, { shape: [N], dtype: "f32" }];
    },
    ref: ([h, w, labels], a) => {
      const [N, D] = h.shape, V = w.shape[0];
      const out = new Float64Array(N);
      let total = 0, cnt = 0;
      for (let r = 0; r < N; r++) {
        const t = labels.data[r];
        if (!counts(t, V, a.ignoreIndex)) continue;
        const z = rowLogits(h.data, w.data, r, D, V);
        out[r] = lse(z);
        total += out[r] - z[t];
        cnt++;
      }
      return [Float64Array.of(a.reduction === "mean" ? (cnt ? total / cnt : 0) : total), out];
    },
    grad: (c) => {
      if (c.grads[1]) throw new Error("the lse output of linear_cross_entropy has no gradient");
      const [h, w, labels] = c.inputs;
      const attrs: LinearCeBwdAttrs = { ...(c.attrs as LinearCeAttrs), needH: c.needs[0], needW: c.needs[1] };
      if (!attrs.needH && !attrs.needW) return [undefined, undefined, undefined];
      const outs = graphOf(h, w).apply("linear_cross_entropy_bwd", [c.grads[0]!, h, w, labels, c.outputs[1]], attrs);
      let k = 0;
      return [attrs.needH ? outs[k++] : undefined, attrs.needW ? outs[k++] : undefined, undefined];
    },
  }),
  defineOp<LinearCeBwdAttrs>({
    name: "linear_cross_entropy_bwd",
    infer: ([, h, w, labels], a) => {
      check([h, w, labels]);
      const outs: TensorInfo[] = [];
      if (a.needH) outs.push({ shape: h.shape, dtype: "f32" });
      if (a.needW) outs.push({ shape: w.shape, dtype: "f32" });
      return outs;
    },
    ref: ([g, h, w, labels, l], a) => {
      const [N, D] = h.shape, V = w.shape[0];
      const dh = new Float64Array(N * D), dw = new Float64Array(V * D);
      let cnt = 0;
      for (let r = 0; r < N; r++) if (counts(labels.data[r], V, a.ignoreIndex)) cnt++;
      const k = a.reduction === "mean" ? g.data[0] / Math.max(cnt, 1) : g.data[0];
      for (let r = 0; r < N; r++) {
        const t = labels.data[r];
        if (!counts(t, V, a.ignoreIndex)) continue;
        const z = rowLogits(h.data, w.data, r, D, V);
        for (let v = 0; v < V; v++) {
          const dz = (Math.exp(z[v] - l.data[r]) - (v === t ? 1 : 0)) * k;
          if (dz === 0) continue;
          for (let d = 0; d < D; d++) {
            dh[r * D + d] += dz * w.data[v * D + d];
            dw[v * D + d] += dz * h.data[r * D + d];
          }
        }
      }
      const outs: Float64Array[] = [];
      if (a.needH) outs.push(dh);
      if (a.needW) outs.push(dw);
      return outs;
    },
  }),
]);

/**
 * Cross-entropy of the logits h·Wᵀ against `labels` (-100 ignored; labels outside [0, V) count as
 * ignored), without materialising the logits. `reduction` "mean" (default) divides by the number of
 * counted rows (0 when none). Labels are not shifted here.
 */
export function linearCrossEntropy(
  h: Tensor,
  w: Tensor,
  labels: Tensor,
  opts: { ignoreIndex?: number; reduction?: "mean" | "sum"; chunk?: number } = {},
): Tensor {
  const attrs: LinearCeAttrs = {
    ignoreIndex: opts.ignoreIndex ?? -100,
    reduction: opts.reduction ?? "mean",
    chunk: opts.chunk ?? 0,
  };
  return graphOf(h, w, labels).apply("linear_cross_entropy", [h, w, labels], attrs)[0];
}
