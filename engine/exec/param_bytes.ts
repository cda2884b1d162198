/**
 * Storing a param from the raw bytes of a weight file: through the executor's `setParamBytes` when it has one and
 * the param keeps the file's dtype (no decoding, no second host copy), else decoded to f32 and set with `setParam`.
 * How model loading hands each tensor to the executor and drops it, so a checkpoint is never held twice.
 * @module
 */
import { type DType, DTYPE_BYTES, numel } from "../graph/types.ts";
import type { Executor } from "./executor.ts";
import { fromF16Bits } from "../util/half.ts";

/** The dtypes a weight file's bytes may come in. */
export type ByteDType = "f32" | "f16" | "bf16";

/** Widens raw little-endian f32/f16/bf16 bytes to f32 (an aligned f32 input is returned as a view, not copied). */
export function bytesToF32(bytes: Uint8Array, dtype: ByteDType): Float32Array {
  const n = bytes.byteLength / DTYPE_BYTES[dtype];
  const b = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  if (dtype === "f32") return new Float32Array(b.buffer, b.byteOffset, n);
  const h = new Uint16Array(b.buffer, b.byteOffset, n);
  const out = new Float32Array(n);
  if (dtype === "bf16") {
    const u = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) u[i] = h[i] << 16;
  } else {
    for (let i = 0; i < n; i++) out[i] = fromF16Bits(h[i]);
  }
  return out;
}

/**
 * Stores `bytes` (raw little-endian `dtype`, shape `shape`) as param `name` on `ex`, kept as `as` (default: `dtype`).
 * Throws, naming the param, when the byte count does not fit the shape.
 */
export function setParamFromBytes(
  ex: Executor,
  name: string,
  bytes: Uint8Array,
  shape: readonly number[],
  dtype: ByteDType,
  as: DType = dtype,
): void {
  const want = numel(shape) * DTYPE_BYTES[dtype];
  if (bytes.byteLength !== want) {
    throw new Error(
      `param "${name}": ${bytes.byteLength} bytes for ${dtype}[${shape.join(", ")}], expected ${want}`,
    );
  }
  if (as === dtype && ex.setParamBytes) ex.setParamBytes(name, bytes, shape, dtype);
  else ex.setParam(name, bytesToF32(bytes, dtype), shape, as);
}
