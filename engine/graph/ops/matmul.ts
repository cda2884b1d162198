/**
 * Batched matmul with transpose flags: C[..., M, N] = op(A)[..., M, K] · op(B)[..., K, N], where
 * op(X) is X or its last-two-axes transpose (by flag, never by copy). Batch axes broadcast.
 * @module
 */
import { defineOp, registerOps } from "../op.ts";
import { op1, type Tensor } from "../graph.ts";
import { broadcastShapes } from "../broadcast.ts";
import { isFloat, numel, type TensorInfo } from "../types.ts";
import { sumTo } from "./elementwise.ts";
import { reshape } from "./shape.ts";

/** Matmul attrs. */
export interface MatmulAttrs extends Record<string, unknown> {
  transA: boolean;
  transB: boolean;
}

/** Resolved matmul geometry shared by reference and lowerings. */
export interface MatmulDims {
  batch: number[];
  M: number;
  K: number;
  N: number;
}

/** Geometry of a matmul from its input infos; throws on a K mismatch. */
export function matmulDims(a: TensorInfo, b: TensorInfo, { transA, transB }: MatmulAttrs): MatmulDims {
  if (a.shape.length < 2 || b.shape.length < 2) throw new Error("matmul operands need rank >= 2");
  const ra = a.shape.length, rb = b.shape.length;
  const M = transA ? a.shape[ra - 1] : a.shape[ra - 2];
  const Ka = transA ? a.shape[ra - 2] : a.shape[ra - 1];
  const Kb = transB ? b.shape[rb - 1] : b.shape[rb - 2];
  const N = transB ? b.shape[rb - 2] : b.shape[rb - 1];
  if (Ka !== Kb) throw new Error(`inner dimensions differ: ${Ka} (a) vs ${Kb} (b)`);
  const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2));
  return { batch, M, K: Ka, N };
}

registerOps([
  defineOp<MatmulAttrs>({
    name: "matmul",
    infer: ([a, b], attrs) => {
      // Operands may be stored in any float dtype (bf16/f16 weights are widened in the kernel);
      // products accumulate and are stored in f32.
      for (const t of [a, b]) {
        if (!isFloat(t.dtype)) throw new Error(`operands must be float (f32, f16, bf16), got ${t.dtype}`);
      }
      const { batch, M, N } = matmulDims(a, b, attrs);
      return [{ shape: [...batch, M, N], dtype: "f32" }];
    },
    ref: ([a, b], attrs) => {
      const { batch, M, K, N } = matmulDims(a, b, attrs);
      const nb = numel(batch);
      const out = new Float64Array(nb * M * N);
      const ba = batch.length - (a.shape.length - 2), bb = batch.length - (b.shape.length - 2);
      for (let z = 0; z < nb; z++) {
        // batch offsets with broadcasting
        let rem = z, oa = 0, ob = 0, sa = M * K, sb = K * N;
        for (let d = batch.length - 1; d >= 0; d--) {
          const c = rem % batch[d];
          rem = Math.floor(rem / batch[d]);
          const da = d - ba >= 0 ? a.shape[d - ba] : 1, db = d - bb >= 0 ? b.shape[d - bb] : 1;
          if (da !== 1) oa += c * sa;
          if (db !== 1) ob += c * sb;
          sa *= da;
          sb *= db;
        }
        for (let i = 0; i < M; i++) {
          for (let j = 0; j < N; j++) {
            let s = 0;
            for (let k = 0; k < K; k++) {
              const x = a.data[oa + (attrs.transA ? k * M + i : i * K + k)];
              const y = b.data[ob + (attrs.transB ? j * K + k : k * N + j)];
              s += x * y;
            }
            out[z * M * N + i * N + j] = s;
          }
        }
      }
      return [out];
    },
    grad: (c) => {
      const [a, b] = c.inputs;
      const g = c.grads[0]!;
      const { transA, transB } = c.attrs;
      let da: Tensor | undefined, db: Tensor | undefined;
      if (c.needs[0]) {
        da = transA ? matmul(b, g, { transA: transB, transB: true }) : matmul(g, b, { transB: !transB });
        da = sumTo(da, a.shape);
      }
      if (c.needs[1]) {
        if (b.rank === 2 && a.rank > 2 && !transA) {
          // Fold the batch of A into rows: dB = A2ᵀ·G2 without a [batch, K, N] intermediate.
          const a2 = reshape(a, [-1, a.shape[a.rank - 1]]);
          const g2 = reshape(g, [-1, g.shape[g.rank - 1]]);
          db = transB ? matmul(g2, a2, { transA: true }) : matmul(a2, g2, { transA: true });
        } else {
          db = transB ? matmul(g, a, { transA: true, transB: transA }) : matmul(a, g, { transA: !transA });
          db = sumTo(db, b.shape);
        }
      }
      return [da, db];
    },
  }),
]);

/** op(a) · op(b) with optional transposes (flags, not copies). */
export function matmul(a: Tensor, b: Tensor, opts: { transA?: boolean; transB?: boolean } = {}): Tensor {
  return op1("matmul", [a, b], { transA: !!opts.transA, transB: !!opts.transB });
}
