/**
 * Host-side dtype conversion: rounding f64 to a storage dtype (the bit packing itself is engine/util/half.ts).
 * @module
 */
import type { DType } from "../graph/types.ts";
import { fromBf16Bits, fromF16Bits, toBf16Bits, toF16Bits } from "../util/half.ts";

/** Rounds f64 values in place to what `dtype` can hold (f32/f16/bf16 rounding; ints truncated). */
export function roundTo(a: Float64Array, dtype: DType): Float64Array {
  switch (dtype) {
    case "f32":
      return a;
    case "f16":
      for (let i = 0; i < a.length; i++) a[i] = fromF16Bits(toF16Bits(a[i]));
      return a;
    case "bf16":
      for (let i = 0; i < a.length; i++) a[i] = fromBf16Bits(toBf16Bits(a[i]));
      return a;
    case "i32":
      for (let i = 0; i < a.length; i++) a[i] = a[i] | 0;
      return a;
    case "u32":
      for (let i = 0; i < a.length; i++) a[i] = a[i] >>> 0;
      return a;
  }
}
