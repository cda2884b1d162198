/**
 * Blockwise absmax quantization in bitsandbytes' formats, on flat float32 data (f32 weights, or bf16 / f16 weights
 * widened exactly), with float32 arithmetic as bitsandbytes does it:
 *
 * - 4-bit (`quantize_4bit`): per block of `blocksize` consecutive elements (the last block may be partial),
 *   absmax = max |x|, x · (1 / absmax) clamped to [-1, 1], the NF4 / FP4 code (codes.ts); two codes a byte, the
 *   first element in the high nibble, an odd count padded with the code of 0.
 * - int8: q = round-half-even(x · (127 / absmax)), dequantized as q · absmax · (1/127) (LLM.int8()'s weight formula,
 *   `int8_vectorwise_quant` / `_dequant`, per block; a block of one row is LLM.int8()'s row-wise quantization).
 * - Double quantization (`compress_statistics`): offset = mean(absmax), the absmax values minus the offset quantized
 *   by `quantize_blockwise` in blocks of 256 with the 8-bit dynamic code; absmax' = code[q] · absmax2 + offset.
 *
 * A block whose values are all zero gets absmax 0 and the code of 0 (bitsandbytes' CUDA kernel computes 0 · inf
 * there and stores code 0; both dequantize to 0).
 * @module
 */
import { code4, dynamicMap, INV127, nearestCode, quantizeFp4, quantizeNf4 } from "./codes.ts";

const f = Math.fround;

/** Number of blocks of `n` elements. */
export function blockCount(n: number, blocksize: number): number {
  return Math.ceil(n / blocksize);
}

/** Max |x| of each block, as float32. */
export function blockAbsmax(data: ArrayLike<number>, blocksize: number): Float32Array {
  const nb = blockCount(data.length, blocksize);
  const out = new Float32Array(nb);
  for (let b = 0; b < nb; b++) {
    let m = 0;
    const end = Math.min(data.length, (b + 1) * blocksize);
    for (let i = b * blocksize; i < end; i++) m = Math.max(m, Math.abs(f(data[i])));
    out[b] = m;
  }
  return out;
}

/** 4-bit quantization: bitsandbytes' packed bytes (ceil(n / 2)) and the f32 absmax of each block. */
export function quantize4bit(
  data: ArrayLike<number>,
  kind: "nf4" | "fp4",
  blocksize: number,
): { packed: Uint8Array; absmax: Float32Array } {
  const n = data.length;
  const absmax = blockAbsmax(data, blocksize);
  const q = kind === "nf4" ? quantizeNf4 : quantizeFp4;
  const packed = new Uint8Array(Math.ceil(n / 2));
  for (let b = 0; b < absmax.length; b++) {
    const inv = absmax[b] ? f(1 / absmax[b]) : 0;
    const end = Math.min(n, (b + 1) * blocksize);
    for (let i = b * blocksize; i < end; i++) {
      const s = Math.min(1, Math.max(-1, f(f(data[i]) * inv)));
      packed[i >> 1] |= q(s) << (i & 1 ? 0 : 4);
    }
  }
  if (n & 1) packed[n >> 1] |= q(0);
  return { packed, absmax };
}

/** The 4-bit code of element i of packed bytes (high nibble first). */
export function nibble(packed: Uint8Array, i: number): number {
  return i & 1 ? packed[i >> 1] & 15 : packed[i >> 1] >> 4;
}

/** 4-bit dequantization: code[q] · absmax[block] in float32. */
export function dequantize4bit(
  packed: Uint8Array,
  absmax: Float32Array,
  kind: "nf4" | "fp4",
  blocksize: number,
  n: number,
): Float32Array {
  const code = code4(kind);
  return Float32Array.from({ length: n }, (_, i) => f(code[nibble(packed, i)] * absmax[Math.floor(i / blocksize)]));
}

/** Round half to even (torch.round). */
function roundEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** int8 absmax quantization: the codes (-127..127) and the f32 absmax of each block. */
export function quantizeInt8(data: ArrayLike<number>, blocksize: number): { codes: Int8Array; absmax: Float32Array } {
  const n = data.length;
  const absmax = blockAbsmax(data, blocksize);
  const codes = new Int8Array(n);
  for (let b = 0; b < absmax.length; b++) {
    const s = absmax[b] ? f(127 / absmax[b]) : 0;
    const end = Math.min(n, (b + 1) * blocksize);
    for (let i = b * blocksize; i < end; i++) codes[i] = Math.max(-127, Math.min(127, roundEven(f(f(data[i]) * s))));
  }
  return { codes, absmax };
}

/** int8 dequantization: q · absmax · (1/127) in float32. */
export function dequantizeInt8(codes: Int8Array, absmax: Float32Array, blocksize: number): Float32Array {
  return Float32Array.from(codes, (q, i) => f(f(q * absmax[Math.floor(i / blocksize)]) * INV127));
}

/** Double-quantized absmax values (bitsandbytes' nested QuantState). */
export interface NestedAbsmax {
  /** 8-bit dynamic codes, one per block. */
  codes: Uint8Array;
  /** f32 absmax of each block of 256 codes. */
  absmax2: Float32Array;
  /** The mean subtracted before quantizing (f32). */
  offset: number;
}

/** Blocks of the nested quantization. */
export const NESTED_BLOCK = 256;

/** Double quantization of f32 absmax values: `quantize_blockwise(absmax - mean(absmax), blocksize=256)`. */
export function doubleQuantize(absmax: Float32Array): NestedAbsmax {
  let sum = 0;
  for (const a of absmax) sum += a;
  const offset = f(sum / absmax.length);
  const centered = Float32Array.from(absmax, (a) => f(a - offset));
  const absmax2 = blockAbsmax(centered, NESTED_BLOCK);
  const code = dynamicMap();
  const codes = new Uint8Array(absmax.length);
  for (let b = 0; b < absmax2.length; b++) {
    const inv = absmax2[b] ? f(1 / absmax2[b]) : 0;
    const end = Math.min(absmax.length, (b + 1) * NESTED_BLOCK);
    for (let i = b * NESTED_BLOCK; i < end; i++) {
      codes[i] = nearestCode(code, Math.min(1, Math.max(-1, f(centered[i] * inv))));
    }
  }
  return { codes, absmax2, offset };
}

/** The absmax values a nested state stands for: code[q] · absmax2 + offset, in float32. */
export function nestedAbsmax(s: NestedAbsmax): Float32Array {
  const code = dynamicMap();
  return Float32Array.from(s.codes, (q, i) => f(f(code[q] * s.absmax2[Math.floor(i / NESTED_BLOCK)]) + s.offset));
}

/** Bytes packed little-endian into 32-bit words (as i32 bit patterns), zero-padded to a whole word. */
export function bytesToWords(bytes: Uint8Array): Int32Array {
  const padded = new Uint8Array(Math.max(4, Math.ceil(bytes.length / 4) * 4));
  padded.set(bytes);
  const view = new DataView(padded.buffer);
  return Int32Array.from({ length: padded.length / 4 }, (_, w) => view.getInt32(4 * w, true));
}

/** The first `n` bytes of little-endian 32-bit words (inverse of {@link bytesToWords}). */
export function wordsToBytes(words: ArrayLike<number>, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (words[i >> 2] >>> ((i & 3) * 8)) & 0xff;
  return out;
}
