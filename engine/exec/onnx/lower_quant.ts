/**
 * ONNX lowerings of `matmul_q` and `dequant_q` (quantized weights, engine/quant). The packed words arrive as INT32
 * inputs (bitsandbytes' bytes, little-endian) and are unpacked inside the model on every run; nothing dequantized
 * is stored.
 *
 * - `x · Wᵀ` with NF4 / FP4 and a power-of-two blocksize >= 16: com.microsoft `MatMulBnb4` (onnxruntime's CPU
 *   kernel for exactly bitsandbytes' blockwise 4-bit format: the words are split into its UINT8 bytes, the absmax
 *   given in f32 — decoded first with double quantization). Its CPU kernel dequantizes W into a temporary buffer
 *   per run and calls sgemm.
 * - Everything else (int8, other blocksizes, and `x · W`, the input gradient: MatMulBnb4's `transB = 0` computes a
 *   wrong product in onnxruntime 1.30's CPU kernel) dequantizes W with standard ops — shift and mask the codes out
 *   of the words, Gather from the code book, scale per block — then MatMul / FusedMatMul.
 * @module
 */
import type { MatmulQAttrs } from "../../graph/ops/matmul_q.ts";
import { NESTED_BLOCK } from "../../quant/blockwise.ts";
import { code4, dynamicMap, INV127 } from "../../quant/codes.ts";
import type { OnnxBuilder } from "./builder.ts";
import type { OnnxLowering } from "./lower_types.ts";
import { ONNX_TYPE } from "./proto.ts";

/** UINT32 tensor constant. */
function u32s(b: OnnxBuilder, values: readonly number[]): string {
  return b.tensor(ONNX_TYPE.UINT32, [values.length], new Uint8Array(Uint32Array.from(values).buffer));
}

/** INT32 words [W] → UINT32 [W, parts]: word >> shift_i & mask for each shift. */
function fields(b: OnnxBuilder, words: string, nWords: number, shifts: readonly number[], mask: number): string {
  const u = b.reshape(b.cast(words, ONNX_TYPE.UINT32), [nWords, 1]);
  const sh = b.op1("BitShift", [u, u32s(b, shifts)], { direction: { s: "RIGHT" } });
  return b.op1("BitwiseAnd", [sh, u32s(b, [mask])]);
}

/** The first n bytes of INT32 words [W] as UINT8 [n] (bitsandbytes' byte order). */
function bytesOf(b: OnnxBuilder, words: string, nWords: number, n: number): string {
  const bytes = b.reshape(b.cast(fields(b, words, nWords, [0, 8, 16, 24], 255), ONNX_TYPE.UINT8), [4 * nWords]);
  return n === 4 * nWords ? bytes : b.op1("Slice", [bytes, b.i64([0]), b.i64([n]), b.i64([0])]);
}

/** Flat x [n] padded (with zeros) or cut to m elements. */
function fit(b: OnnxBuilder, x: string, n: number, m: number): string {
  if (n === m) return x;
  if (n > m) return b.op1("Slice", [x, b.i64([0]), b.i64([m]), b.i64([0])]);
  return b.op1("Pad", [x, b.i64([0, m - n]), b.f32(0)]);
}

/** Flat values [n] times a per-block factor [nb] (blocks of bs) → [n]. */
function perBlock(b: OnnxBuilder, v: string, n: number, scale: string, nb: number, bs: number): string {
  const blocks = b.reshape(fit(b, v, n, nb * bs), [nb, bs]);
  return fit(b, b.reshape(b.mul(blocks, b.reshape(scale, [nb, 1])), [nb * bs]), nb * bs, n);
}

/** The f32 absmax [nb] of a weight: the input, or decoded from double quantization (code · absmax2 + offset). */
function absmaxOf(b: OnnxBuilder, ins: readonly string[], a: MatmulQAttrs, first: number): string {
  const nb = Math.ceil((a.N * a.K) / a.blocksize);
  if (!a.doubleQuant) return ins[first];
  const codes = bytesOf(b, ins[first], Math.ceil(nb / 4), nb);
  const deq = b.op1("Gather", [b.f32s([256], dynamicMap()), b.cast(codes, ONNX_TYPE.INT32)], { axis: { i: 0 } });
  const n2 = Math.ceil(nb / NESTED_BLOCK);
  return b.add(perBlock(b, deq, nb, ins[first + 1], n2, NESTED_BLOCK), ins[first + 2]);
}

/** W [N, K] f32 dequantized with standard ops from the stored tensors at ins[first..]. */
function dequant(b: OnnxBuilder, ins: readonly string[], a: MatmulQAttrs, first: number): string {
  const n = a.N * a.K, nb = Math.ceil(n / a.blocksize);
  const absmax = absmaxOf(b, ins, a, first + 1);
  let values: string;
  if (a.kind === "int8") {
    const nWords = Math.ceil(n / 4);
    // byte i moved to the top ((word << 24 - 8i) & 0xff000000) and reinterpreted as INT32 is q · 2^24: exact in f32.
    const u = b.reshape(b.cast(ins[first], ONNX_TYPE.UINT32), [nWords, 1]);
    const up = b.op1("BitwiseAnd", [
      b.op1("BitShift", [u, u32s(b, [24, 16, 8, 0])], { direction: { s: "LEFT" } }),
      u32s(b, [0xff000000]),
    ]);
    const q = b.mul(b.cast(b.cast(up, ONNX_TYPE.INT32), ONNX_TYPE.FLOAT), b.f32(2 ** -24));
    values = b.mul(
      perBlock(b, fit(b, b.reshape(q, [4 * nWords]), 4 * nWords, n), n, absmax, nb, a.blocksize),
      b.f32(INV127),
    );
  } else {
    const nWords = Math.ceil(n / 8);
    // element 2j is byte j's high nibble: shifts 4, 0, 12, 8, ... within a word
    const codes = fields(b, ins[first], nWords, [4, 0, 12, 8, 20, 16, 28, 24], 15);
    const idx = fit(b, b.reshape(b.cast(codes, ONNX_TYPE.INT32), [8 * nWords]), 8 * nWords, n);
    const v = b.op1("Gather", [b.f32s([16], code4(a.kind)), idx], { axis: { i: 0 } });
    values = perBlock(b, v, n, absmax, nb, a.blocksize);
  }
  return b.reshape(values, [a.N, a.K]);
}

const pow2 = (v: number) => v >= 16 && (v & (v - 1)) === 0;

/** The lowerings of this file. */
export const quantLowerings: Record<string, OnnxLowering> = {
  // x [..., K] (trans: [..., N]), W stored -> y [..., N] (trans: [..., K])
  matmul_q: ({ b, ins, attrs }) => {
    const a = attrs as MatmulQAttrs;
    if (!a.trans && a.kind !== "int8" && pow2(a.blocksize)) {
      const n = a.N * a.K;
      const bytes = bytesOf(b, ins[1], Math.ceil(n / 8), Math.ceil(n / 2));
      return [
        b.op1("MatMulBnb4", [ins[0], bytes, absmaxOf(b, ins, a, 2)], {
          K: { i: a.K },
          N: { i: a.N },
          block_size: { i: a.blocksize },
          quant_type: { i: a.kind === "nf4" ? 1 : 0 },
        }, "com.microsoft"),
      ];
    }
    const w = dequant(b, ins, a, 1);
    if (a.trans) return [b.op1("MatMul", [ins[0], w])];
    return [
      b.op1("FusedMatMul", [ins[0], w], { transA: { i: 0 }, transB: { i: 1 }, alpha: { f: 1 } }, "com.microsoft"),
    ];
  },
  // W stored -> W [N, K]
  dequant_q: ({ b, ins, attrs }) => [dequant(b, ins, attrs as MatmulQAttrs, 0)],
};
