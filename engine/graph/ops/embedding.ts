/**
 * Token embedding lookup and its scatter-add gradient.
 *
 * Ids outside `[0, V)` (negative or too large) are not clamped: their output rows are zeros and they
 * contribute nothing to the weight gradient. Both executors do exactly this.
 * @module
 */
import { defineOp, registerOps } from "../op.ts";
import { op1, type Tensor } from "../graph.ts";
import { isFloat } from "../types.ts";

/** Attrs of `embedding_bwd`: the vocabulary size (rows of the weight). */
export interface EmbeddingBwdAttrs extends Record<string, unknown> {
  vocab: number;
}

registerOps([
  // weight [V, D] (f32, or bf16/f16 when frozen), ids [...] i32 -> out [..., D] f32
  // out[t, d] = 0 <= ids[t] < V ? weight[ids[t], d] : 0
  // grad: dWeight = embedding_bwd(ids, dOut) (scatter-add of dOut rows by id); ids get none.
  defineOp({
    name: "embedding",
    infer: ([w, ids]) => {
      if (w.shape.length !== 2 || !isFloat(w.dtype)) throw new Error(`weight must be a float [V, D] tensor`);
      if (ids.dtype !== "i32") throw new Error(`ids must be i32, got ${ids.dtype}`);
      return [{ shape: [...ids.shape, w.shape[1]], dtype: "f32" }];
    },
    ref: ([w, ids]) => {
      const [V, D] = w.shape;
      const T = ids.data.length;
      const out = new Float64Array(T * D);
      for (let t = 0; t < T; t++) {
        const id = ids.data[t];
        if (id < 0 || id >= V) continue;
        for (let d = 0; d < D; d++) out[t * D + d] = w.data[id * D + d];
      }
      return [out];
    },
    grad: (c) => [
      c.needs[0] ? embeddingBwd(c.inputs[1], c.grads[0]!, c.inputs[0].shape[0]) : undefined,
      undefined,
    ],
  }),
  // ids [...] i32, dOut [..., D] f32 -> dWeight [V, D] f32
  // dWeight[v, d] = Σ_{t : ids[t] = v} dOut[t, d], summed in token order (deterministic).
  defineOp<EmbeddingBwdAttrs>({
    name: "embedding_bwd",
    infer: ([ids, g], { vocab }) => {
      if (ids.dtype !== "i32") throw new Error(`ids must be i32, got ${ids.dtype}`);
      if (g.dtype !== "f32") throw new Error(`the output gradient must be f32, got ${g.dtype}`);
      const D = g.shape[g.shape.length - 1];
      if (g.shape.length !== ids.shape.length + 1 || ids.shape.some((d, i) => d !== g.shape[i])) {
        throw new Error(`the output gradient must be [${[...ids.shape, "D"].join(", ")}]`);
      }
      if (!Number.isInteger(vocab) || vocab < 1) throw new Error(`vocab must be a positive integer, got ${vocab}`);
      return [{ shape: [vocab, D], dtype: "f32" }];
    },
    ref: ([ids, g], { vocab }) => {
      const D = g.shape[g.shape.length - 1];
      const T = ids.data.length;
      const out = new Float64Array(vocab * D);
      for (let t = 0; t < T; t++) {
        const id = ids.data[t];
        if (id < 0 || id >= vocab) continue;
        for (let d = 0; d < D; d++) out[id * D + d] += g.data[t * D + d];
      }
      return [out];
    },
  }),
]);

/**
 * Looks up rows of `weight` [V, D] by `ids` [...] (i32) → [..., D] f32. Out-of-range ids give zero
 * rows (no clamping) and no gradient. A bf16/f16 weight is read in its stored dtype (frozen weights).
 */
export function embedding(weight: Tensor, ids: Tensor): Tensor {
  return op1("embedding", [weight, ids]);
}

/** The weight gradient of {@link embedding}: dOut rows scatter-added by id into a [vocab, D] tensor. */
export function embeddingBwd(ids: Tensor, dOut: Tensor, vocab: number): Tensor {
  return op1("embedding_bwd", [ids, dOut], { vocab });
}
