/**
 * Safetensors dtypes: names, sizes, and conversion between raw little-endian bytes and numbers.
 * @module
 */
import { fromBf16Bits, fromF16Bits, toBf16Bits, toF16Bits } from "../util/half.ts";

/** A safetensors dtype name. */
export type SafetensorsDType =
  | "F64"
  | "F32"
  | "F16"
  | "BF16"
  | "F8_E4M3"
  | "F8_E5M2"
  | "I64"
  | "I32"
  | "I16"
  | "I8"
  | "U64"
  | "U32"
  | "U16"
  | "U8"
  | "BOOL";

/** Bytes per element of each dtype. */
export const SAFETENSORS_DTYPE_BYTES: Readonly<Record<SafetensorsDType, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
};

/** Data for one tensor to write. */
export interface TensorData {
  dtype: SafetensorsDType;
  shape: readonly number[];
  /**
   * A `Uint8Array` is taken as the raw little-endian bytes; a `Uint16Array` for F16/BF16 as the raw bits;
   * anything else as values converted to `dtype` (rounded to nearest even for F16/BF16, truncated for ints).
   */
  data: Uint8Array | ArrayLike<number> | ArrayLike<bigint>;
}

/** Whether `s` names a known dtype. */
export function isDType(s: unknown): s is SafetensorsDType {
  return typeof s === "string" && Object.hasOwn(SAFETENSORS_DTYPE_BYTES, s);
}

/** Number of elements of a shape (1 for a scalar). */
export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function f8ToNumber(b: number, expBits: number, bias: number, e4m3: boolean): number {
  const manBits = 7 - expBits;
  const s = b & 0x80 ? -1 : 1;
  const e = (b >>> manBits) & ((1 << expBits) - 1);
  const m = b & ((1 << manBits) - 1);
  if (e4m3) {
    if ((b & 0x7f) === 0x7f) return NaN;
  } else if (e === 0x1f) return m ? NaN : s * Infinity;
  if (e === 0) return s * m * 2 ** (1 - bias - manBits);
  return s * (1 + m / (1 << manBits)) * 2 ** (e - bias);
}

/** Widens raw little-endian bytes of `dtype` to f32 (a `Float32Array` input buffer is returned as a view). */
export function decodeF32(dtype: SafetensorsDType, bytes: Uint8Array): Float32Array {
  const n = bytes.byteLength / SAFETENSORS_DTYPE_BYTES[dtype];
  const b = bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
  const buf = b.buffer, at = b.byteOffset;
  const out = new Float32Array(n);
  switch (dtype) {
    case "F32":
      return new Float32Array(buf, at, n);
    case "F64":
      out.set(new Float64Array(buf, at, n));
      break;
    case "F16": {
      const h = new Uint16Array(buf, at, n);
      for (let i = 0; i < n; i++) out[i] = fromF16Bits(h[i]);
      break;
    }
    case "BF16": {
      const h = new Uint16Array(buf, at, n);
      for (let i = 0; i < n; i++) out[i] = fromBf16Bits(h[i]);
      break;
    }
    case "F8_E4M3":
    case "F8_E5M2": {
      const e4 = dtype === "F8_E4M3";
      for (let i = 0; i < n; i++) out[i] = f8ToNumber(b[i], e4 ? 4 : 5, e4 ? 7 : 15, e4);
      break;
    }
    case "I64":
    case "U64": {
      const v = dtype === "I64" ? new BigInt64Array(buf, at, n) : new BigUint64Array(buf, at, n);
      for (let i = 0; i < n; i++) out[i] = Number(v[i]);
      break;
    }
    case "I32":
      out.set(new Int32Array(buf, at, n));
      break;
    case "U32":
      out.set(new Uint32Array(buf, at, n));
      break;
    case "I16":
      out.set(new Int16Array(buf, at, n));
      break;
    case "U16":
      out.set(new Uint16Array(buf, at, n));
      break;
    case "I8":
      out.set(new Int8Array(buf, at, n));
      break;
    case "U8":
    case "BOOL":
      out.set(b);
      break;
  }
  return out;
}

/** Encodes one tensor's data as raw little-endian bytes of its dtype. */
export function encodeTensor(name: string, t: TensorData): Uint8Array {
  const { dtype, shape, data } = t;
  if (!isDType(dtype)) throw new Error(`tensor ${JSON.stringify(name)}: unknown dtype ${JSON.stringify(dtype)}`);
  const n = numel(shape);
  const bytes = n * SAFETENSORS_DTYPE_BYTES[dtype];
  if (data instanceof Uint8Array || (data instanceof Uint16Array && (dtype === "F16" || dtype === "BF16"))) {
    const raw = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (raw.byteLength !== bytes) {
      throw new Error(
        `tensor ${JSON.stringify(name)}: ${raw.byteLength} raw bytes given, ${dtype}[${
          shape.join(", ")
        }] needs ${bytes}`,
      );
    }
    return raw;
  }
  if (data.length !== n) {
    throw new Error(
      `tensor ${JSON.stringify(name)}: ${data.length} values given, shape [${shape.join(", ")}] has ${n}`,
    );
  }
  // Float arrays (what executors hand back): typed loops, no per-element closures (a 135M model's f32 weights and
  // AdamW states: ~3 s through the generic path below). An f32 array saved as F32 is its own bytes.
  if (data instanceof Float32Array || data instanceof Float64Array) {
    if (dtype === "F32" && data instanceof Float32Array) {
      return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    }
    const out = new Uint8Array(bytes);
    if (dtype === "F32" || dtype === "F64") {
      (dtype === "F32" ? new Float32Array(out.buffer) : new Float64Array(out.buffer)).set(data);
      return out;
    }
    if (dtype === "BF16" || dtype === "F16") {
      const view = new Uint16Array(out.buffer);
      if (dtype === "BF16") { for (let i = 0; i < n; i++) view[i] = toBf16Bits(data[i]); }
      else for (let i = 0; i < n; i++) view[i] = toF16Bits(data[i]);
      return out;
    }
  }
  const num = (i: number) => Number(data[i]);
  const big = (i: number) => (typeof data[i] === "bigint" ? data[i] as bigint : BigInt(Math.trunc(data[i] as number)));
  const out = new Uint8Array(bytes);
  const buf = out.buffer;
  const fill = (view: { [i: number]: number | bigint }, f: (i: number) => number | bigint) => {
    for (let i = 0; i < n; i++) view[i] = f(i);
  };
  switch (dtype) {
    case "F64":
      fill(new Float64Array(buf), num);
      break;
    case "F32":
      fill(new Float32Array(buf), num);
      break;
    case "F16":
      fill(new Uint16Array(buf), (i) => toF16Bits(num(i)));
      break;
    case "BF16":
      fill(new Uint16Array(buf), (i) => toBf16Bits(num(i)));
      break;
    case "I64":
      fill(new BigInt64Array(buf), (i) => BigInt.asIntN(64, big(i)));
      break;
    case "U64":
      fill(new BigUint64Array(buf), (i) => BigInt.asUintN(64, big(i)));
      break;
    case "I32":
      fill(new Int32Array(buf), num);
      break;
    case "U32":
      fill(new Uint32Array(buf), num);
      break;
    case "I16":
      fill(new Int16Array(buf), num);
      break;
    case "U16":
      fill(new Uint16Array(buf), num);
      break;
    case "I8":
      fill(new Int8Array(buf), num);
      break;
    case "U8":
      fill(out, num);
      break;
    case "BOOL":
      fill(out, (i) => (num(i) ? 1 : 0));
      break;
    default:
      throw new Error(`tensor ${JSON.stringify(name)}: ${dtype} can only be written from raw bytes (a Uint8Array)`);
  }
  return out;
}
