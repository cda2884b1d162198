/**
 * Dtype conversion between f32, f16, bf16, i32 and u32.
 *
 * Semantics (the reference and the WGSL kernel agree on them):
 * - float → float rounds to nearest even (f16 overflows to ±inf, NaN stays NaN);
 * - float → i32/u32 truncates toward zero and saturates to the f32 values nearest the integer range
 *   ([-2147483648, 2147483520] and [0, 4294967040]); NaN becomes 0;
 * - i32 ↔ u32 reinterprets the bits (two's complement), as WGSL's `bitcast` does;
 * - integer → float rounds to nearest.
 * @module
 */
import { defineOp, registerOps } from "../op.ts";
import { op1, type Tensor } from "../graph.ts";
import { type DType, isFloat } from "../types.ts";

/** Cast attrs: the target dtype. */
export interface CastAttrs extends Record<string, unknown> {
  dtype: DType;
}

const DTYPES: readonly DType[] = ["f32", "f16", "bf16", "i32", "u32"];

/** Largest f32 below 2^31 and below 2^32: the saturation bounds of float → int. */
export const I32_MAX_F32 = 2147483520;
/** Largest f32 below 2^32. */
export const U32_MAX_F32 = 4294967040;

/** One element converted from `from` to `to` (f64 in and out; f32/f16/bf16 rounding is left to the executor). */
export function castValue(v: number, from: DType, to: DType): number {
  if (isFloat(to)) return isFloat(from) ? v : Math.fround(v);
  if (!isFloat(from)) return v; // int ↔ int: the executor's rounding (| 0, >>> 0) reinterprets the bits
  if (Number.isNaN(v)) return 0;
  const lo = to === "i32" ? -2147483648 : 0;
  const hi = to === "i32" ? I32_MAX_F32 : U32_MAX_F32;
  return Math.trunc(Math.min(hi, Math.max(lo, Math.fround(v))));
}

registerOps([
  // x [...] any dtype -> y [...] attrs.dtype
  defineOp<CastAttrs>({
    name: "cast",
    infer: ([x], { dtype }) => {
      if (!DTYPES.includes(dtype)) throw new Error(`cast target must be one of ${DTYPES.join(", ")}, got ${dtype}`);
      return [{ shape: x.shape, dtype }];
    },
    ref: ([x], { dtype }) => {
      const out = new Float64Array(x.data.length);
      for (let i = 0; i < out.length; i++) out[i] = castValue(x.data[i], x.dtype, dtype);
      return [out];
    },
    // Float → float: the gradient is cast back to the input's dtype. Integers carry no gradient.
    grad: (c) => {
      const x = c.inputs[0];
      if (!isFloat(x.dtype) || !isFloat(c.attrs.dtype)) return [undefined];
      return [cast(c.grads[0]!, x.dtype)];
    },
  }),
]);

/** `x` converted to `dtype` (no node when it already has it). See the module doc for the rules. */
export function cast(x: Tensor, dtype: DType): Tensor {
  if (x.dtype === dtype) return x;
  return op1("cast", [x], { dtype });
}
