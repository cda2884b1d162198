/**
 * A quantized linear weight W [N, K] (out, in features; the `x · Wᵀ` layout of the decoder's linears) as the
 * executors store it: the codes packed in 32-bit words, and the absmax of each block in f32 or double-quantized.
 *
 * Words hold bitsandbytes' bytes little-endian (word w = bytes 4w..4w+3), stored as i32 bit patterns — 4 bytes a
 * word on every executor (ONNX Runtime keeps u32 in INT64); 4-bit: element e is byte e >> 1, high nibble when e is
 * even; int8: byte e, two's complement. With double quantization the absmax codes (one byte a block) are packed the
 * same way.
 *
 * @example
 * ```ts
 * const qw = quantizeWeight(w, [out, inp], { kind: "nf4", blocksize: 64, doubleQuant: true });
 * for (const p of quantParams(qw)) ex.setParam(`${name}${p.suffix}`, p.data, p.shape, p.dtype);
 * ```
 * @module
 */
import { codeBits, type QuantKind } from "./codes.ts";
import {
  blockCount,
  bytesToWords,
  dequantize4bit,
  dequantizeInt8,
  doubleQuantize,
  NESTED_BLOCK,
  nestedAbsmax,
  quantize4bit,
  quantizeInt8,
  wordsToBytes,
} from "./blockwise.ts";

/** How a weight is quantized. */
export interface QuantSpec {
  kind: QuantKind;
  /** Elements a block (bitsandbytes: 64 for 4-bit). */
  blocksize: number;
  /** Quantize the absmax values too (bitsandbytes' `bnb_4bit_use_double_quant`). */
  doubleQuant: boolean;
}

/** A quantized [N, K] weight. */
export interface QuantizedWeight {
  readonly spec: QuantSpec;
  readonly shape: readonly [number, number];
  /** Codes packed in words ({@link wordCount}). */
  readonly words: Int32Array;
  /** f32 absmax per block (without double quantization). */
  readonly absmax?: Float32Array;
  /** Double quantization: absmax codes packed in words, f32 absmax per 256 blocks, offset. */
  readonly nested?: { codes: Int32Array; absmax2: Float32Array; offset: number };
}

/** Words holding `n` codes of a kind. */
export function wordCount(kind: QuantKind, n: number): number {
  return Math.ceil((n * codeBits(kind)) / 32);
}

/** Checks a spec; throws saying what is expected. */
export function checkSpec(s: QuantSpec): void {
  if (!["nf4", "fp4", "int8"].includes(s.kind)) {
    throw new Error(`quantization kind must be nf4, fp4 or int8, got ${s.kind}`);
  }
  if (!Number.isInteger(s.blocksize) || s.blocksize < 2 || s.blocksize % 2) {
    throw new Error(`quantization blocksize must be an even integer >= 2, got ${s.blocksize}`);
  }
  if (s.doubleQuant && s.kind === "int8") {
    throw new Error("double quantization applies to 4-bit weights (nf4, fp4), not int8");
  }
}

/** Quantizes a [N, K] weight (f32 values; bf16/f16 weights widened) as bitsandbytes does. */
export function quantizeWeight(data: ArrayLike<number>, shape: readonly number[], spec: QuantSpec): QuantizedWeight {
  checkSpec(spec);
  if (shape.length !== 2 || data.length !== shape[0] * shape[1]) {
    throw new Error(
      `quantizeWeight: expected a [N, K] weight with N·K values, got [${shape.join(", ")}] and ${data.length}`,
    );
  }
  let bytes: Uint8Array, absmax: Float32Array;
  if (spec.kind === "int8") {
    const q = quantizeInt8(data, spec.blocksize);
    bytes = new Uint8Array(q.codes.buffer);
    absmax = q.absmax;
  } else {
    ({ packed: bytes, absmax } = quantize4bit(data, spec.kind, spec.blocksize));
  }
  const base = { spec: { ...spec }, shape: [shape[0], shape[1]] as const, words: bytesToWords(bytes) };
  if (!spec.doubleQuant) return { ...base, absmax };
  const n = doubleQuantize(absmax);
  return { ...base, nested: { codes: bytesToWords(n.codes), absmax2: n.absmax2, offset: n.offset } };
}

/** The f32 absmax of each block (double quantization undone). */
export function weightAbsmax(qw: QuantizedWeight): Float32Array {
  if (qw.absmax) return qw.absmax;
  const nb = blockCount(qw.shape[0] * qw.shape[1], qw.spec.blocksize);
  const { codes, absmax2, offset } = qw.nested!;
  return nestedAbsmax({ codes: wordsToBytes(codes, nb), absmax2, offset });
}

/** bitsandbytes' packed bytes of the codes (4-bit: ceil(n/2) bytes; int8: n bytes). */
export function weightBytes(qw: QuantizedWeight): Uint8Array {
  const n = qw.shape[0] * qw.shape[1];
  return wordsToBytes(qw.words, qw.spec.kind === "int8" ? n : Math.ceil(n / 2));
}

/** The whole weight dequantized to f32 [N·K] (tests and export; the kernels never do this). */
export function dequantizeWeight(qw: QuantizedWeight): Float32Array {
  const n = qw.shape[0] * qw.shape[1];
  const absmax = weightAbsmax(qw);
  const bytes = weightBytes(qw);
  if (qw.spec.kind === "int8") return dequantizeInt8(new Int8Array(bytes.buffer), absmax, qw.spec.blocksize);
  return dequantize4bit(bytes, absmax, qw.spec.kind, qw.spec.blocksize, n);
}

/** One stored tensor of a quantized weight: name suffix (after the weight's name), data, shape and dtype. */
export interface QuantParam {
  suffix: string;
  data: ArrayLike<number>;
  shape: number[];
  dtype: "i32" | "f32";
}

/** Suffixes of the stored tensors, in the order `matmul_q` takes them (after x). */
export const QUANT_SUFFIXES = {
  plain: [".packed", ".absmax"],
  nested: [".packed", ".absmax", ".nested_absmax", ".nested_offset"],
} as const;

/** Shapes and dtypes of the stored tensors of an [N, K] weight quantized by `spec`, in `matmul_q` order. */
export function quantLayout(spec: QuantSpec, shape: readonly [number, number]): Omit<QuantParam, "data">[] {
  const n = shape[0] * shape[1], nb = blockCount(n, spec.blocksize);
  const packed = { suffix: ".packed", shape: [wordCount(spec.kind, n)], dtype: "i32" as const };
  if (!spec.doubleQuant) return [packed, { suffix: ".absmax", shape: [nb], dtype: "f32" }];
  return [
    packed,
    { suffix: ".absmax", shape: [Math.ceil(nb / 4)], dtype: "i32" },
    { suffix: ".nested_absmax", shape: [blockCount(nb, NESTED_BLOCK)], dtype: "f32" },
    { suffix: ".nested_offset", shape: [1], dtype: "f32" },
  ];
}

/** The stored tensors of a quantized weight, in `matmul_q` order. */
export function quantParams(qw: QuantizedWeight): QuantParam[] {
  const data: ArrayLike<number>[] = qw.nested
    ? [qw.words, qw.nested.codes, qw.nested.absmax2, [qw.nested.offset]]
    : [qw.words, qw.absmax!];
  return quantLayout(qw.spec, qw.shape).map((p, i) => ({ ...p, data: data[i] }));
}

/** Bytes the stored tensors of an [N, K] weight take (4 bytes a word or f32). */
export function quantBytes(spec: QuantSpec, shape: readonly [number, number]): number {
  return quantLayout(spec, shape).reduce((s, p) => s + 4 * p.shape[0], 0);
}
