/**
 * Conformance cases of `matmul_q` (x · dequant(W)ᵀ and, through its gradient rule, dy · dequant(W)) and
 * `dequant_q`: NF4, FP4 and int8, plain and double-quantized absmax, aligned shapes (whole words along K, the fast
 * kernel paths) and odd ones (partial blocks, a padded nibble, K not a multiple of 8), batched x and a bf16 x. The
 * stored tensors are real quantizations (engine/quant) of random weights.
 * @module
 */
import type { OpCase, Operand } from "./testing.ts";
import { mulberry32 } from "../../util/rng.ts";
import { quantizeWeight, quantLayout, quantParams, type QuantSpec } from "../../quant/weight.ts";
import type { Tensor } from "../graph.ts";
import { cast } from "./cast.ts";
import { dequantQ, matmulQ, type QWeight } from "./matmul_q.ts";

/** Operands `w0`, `w1`, ... holding a random [N, K] weight quantized by `spec`. */
function stored(spec: QuantSpec, N: number, K: number, seed: number): Record<string, Operand> {
  const r = mulberry32(seed);
  const w = Float32Array.from({ length: N * K }, () => (r() + r() + r() - 1.5) * (r() < 0.02 ? 4 : 1));
  const out: Record<string, Operand> = {};
  quantParams(quantizeWeight(w, [N, K], spec)).forEach((p, i) => {
    out[`w${i}`] = { shape: p.shape, dtype: p.dtype, data: Array.from(p.data) };
  });
  return out;
}

function qweight(t: Record<string, Tensor>, spec: QuantSpec, N: number, K: number): QWeight {
  const tensors = quantLayout(spec, [N, K]).map((_, i) => t[`w${i}`]);
  return { spec, shape: [N, K], tensors };
}

const x = (shape: number[]): Operand => ({ shape, grad: true });

/** x [.., K] · Wᵀ and y [.., N] · W in one case (both differentiated). */
function both(name: string, spec: QuantSpec, N: number, K: number, lead: number[], seed: number, tol?: number): OpCase {
  return {
    name,
    operands: { x: x([...lead, K]), y: x([...lead, N]), ...stored(spec, N, K, seed) },
    build: (t) => {
      const w = qweight(t, spec, N, K);
      return [matmulQ(t.x, w), matmulQ(t.y, w, { trans: true })];
    },
    tol,
  };
}

const nf4: QuantSpec = { kind: "nf4", blocksize: 64, doubleQuant: false };
const fp4: QuantSpec = { kind: "fp4", blocksize: 64, doubleQuant: false };
const int8: QuantSpec = { kind: "int8", blocksize: 64, doubleQuant: false };
const dq = (s: QuantSpec): QuantSpec => ({ ...s, doubleQuant: true });

/** matmul_q cases. */
export const cases: OpCase[] = [
  both("matmul_q nf4 24x64, x [5, 64]", nf4, 24, 64, [5], 1),
  both("matmul_q fp4 24x64, x [5, 64]", fp4, 24, 64, [5], 2),
  both("matmul_q int8 16x64, x [6, 64]", int8, 16, 64, [6], 3),
  both("matmul_q nf4 double quant 40x48, x [2, 3, 48]", dq(nf4), 40, 48, [2, 3], 4),
  both("matmul_q fp4 double quant 33x512 (264 blocks: two nested blocks)", dq(fp4), 33, 512, [2], 5),
  both("matmul_q nf4 odd 7x13 blocksize 16 (partial block, padded nibble)", { ...nf4, blocksize: 16 }, 7, 13, [3], 6),
  both("matmul_q int8 odd 9x10 row blocks (LLM.int8 rows)", { ...int8, blocksize: 10 }, 9, 10, [4], 7),
  both("matmul_q int8 12x20 blocksize 8 (blocks across rows)", { ...int8, blocksize: 8 }, 12, 20, [5], 8),
  both("matmul_q nf4 96x128, x [40, 128] (big register blocks)", nf4, 96, 128, [40], 9),
  both("matmul_q int8 40x72, x [33, 72]", int8, 40, 72, [33], 10),
  {
    name: "matmul_q fp4 with a bf16 x",
    operands: { x: x([4, 32]), ...stored(fp4, 8, 32, 11) },
    build: (t) => matmulQ(cast(t.x, "bf16"), qweight(t, fp4, 8, 32)),
    tol: 1e-2,
    noFd: true, // rounding x to bf16 is flat almost everywhere
  },
  {
    name: "dequant_q nf4 double quant, int8 odd",
    operands: {
      ...stored(dq(nf4), 10, 40, 12),
      ...Object.fromEntries(Object.entries(stored({ ...int8, blocksize: 6 }, 5, 7, 13)).map(([k, v]) => [`i${k}`, v])),
    },
    build: (t) => [
      dequantQ(qweight(t, dq(nf4), 10, 40)),
      dequantQ({ spec: { ...int8, blocksize: 6 }, shape: [5, 7], tensors: [t.iw0, t.iw1] }),
    ],
  },
];
