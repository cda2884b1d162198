/**
 * The code books of bitsandbytes' weight formats, and the choice of a code for a value, as bitsandbytes makes it.
 *
 * - NF4: the 16 values of `get_4bit_type("nf4")` (QLoRA's NormalFloat4, an asymmetric type with an exact 0).
 * - FP4: `get_4bit_type("fp4")`, [0, 0.0625, 8, 12, 4, 6, 2, 3, -0, -0.0625, -8, -12, -4, -6, -2, -3] / 12 in f32
 *   (1 sign bit, 2 exponent bits, 1 mantissa bit; code bit 3 is the sign).
 * - The 8-bit dynamic code of `quantize_blockwise` (`create_dynamic_map(signed=True)`), which double quantization
 *   uses for the absmax values: computed here with torch's float32 arithmetic (`torch.linspace`) emulated, so it
 *   is bit-identical to bitsandbytes' table (checked against fixtures/quant/goldens.json).
 *
 * 4-bit codes are chosen by the CUDA kernel's decision trees (`dQuantizeNF4`, `dQuantizeFP4`: float32 pivots halfway
 * between neighbouring codes, a value on a pivot goes to the lower code, FP4's sign bit set for x < 0); the 8-bit
 * dynamic code by nearest value, ties to the lower code (the default backend's argmin).
 * @module
 */

/** Quantization kinds of a weight. */
export type QuantKind = "nf4" | "fp4" | "int8";

/** NF4 code book (bitsandbytes `get_4bit_type("nf4")`), as float32. */
export const NF4: Float32Array = Float32Array.of(
  -1.0,
  -0.6961928009986877,
  -0.5250730514526367,
  -0.39491748809814453,
  -0.28444138169288635,
  -0.18477343022823334,
  -0.09105003625154495,
  0.0,
  0.07958029955625534,
  0.16093020141124725,
  0.24611230194568634,
  0.33791524171829224,
  0.44070982933044434,
  0.5626170039176941,
  0.7229568362236023,
  1.0,
);

/** FP4 code book (bitsandbytes `get_4bit_type("fp4")`): the e2m1 values divided by 12, as float32. */
export const FP4: Float32Array = Float32Array.from(
  [0, 0.0625, 8, 12, 4, 6, 2, 3, -0, -0.0625, -8, -12, -4, -6, -2, -3],
  (v) => Math.fround(v / 12),
);

/** The 4-bit code book of a kind. */
export function code4(kind: "nf4" | "fp4"): Float32Array {
  return kind === "nf4" ? NF4 : FP4;
}

// csrc/kernels.cu dQuantizeNF4: the pivots (float32) between consecutive NF4 codes.
const NF4_PIVOTS = Float32Array.of(
  -0.8480964004993439,
  -0.6106329262256622,
  -0.4599952697753906,
  -0.33967943489551544,
  -0.23460740596055984,
  -0.13791173323988914,
  -0.045525018125772476,
  0.03979014977812767,
  0.1202552504837513,
  0.2035212516784668,
  0.2920137718319893,
  0.3893125355243683,
  0.5016634166240692,
  0.6427869200706482,
  0.8614784181118011,
);
// csrc/kernels.cu dQuantizeFP4: |x| pivots (float32) and the code of each interval (without the sign bit).
const FP4_PIVOTS = Float32Array.of(0.00260417, 0.0859375, 0.20833333, 0.29166667, 0.4166667, 0.583333, 0.8333333);
const FP4_CODES = [0b0000, 0b0001, 0b0110, 0b0111, 0b0100, 0b0101, 0b0010, 0b0011];

/** The NF4 code of x in [-1, 1] (the number of pivots below x). */
export function quantizeNf4(x: number): number {
  let c = 0;
  while (c < 15 && x > NF4_PIVOTS[c]) c++;
  return c;
}

/** The FP4 code of x in [-1, 1]: sign bit for x < 0, magnitude by the pivots of |x|. */
export function quantizeFp4(x: number): number {
  const m = Math.abs(x);
  let i = 0;
  while (i < 7 && m > FP4_PIVOTS[i]) i++;
  return FP4_CODES[i] + (x < 0 ? 8 : 0);
}

/**
 * torch.linspace(start, end, steps) in float32 as torch 2.x computes it on a CPU: element i is
 * fma(step, i, start) for the first half and fma(-step, steps - 1 - i, end) for the rest (the f64 expressions below
 * are exact, so rounding once to f32 is the fused multiply-add).
 */
function linspaceF32(start: number, end: number, steps: number): Float32Array {
  const f = Math.fround;
  const s = f(start), e = f(end);
  const step = f(f(e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  return Float32Array.from({ length: steps }, (_, i) => (i < half ? f(step * i + s) : f(e - step * (steps - 1 - i))));
}

let dynamic: Float32Array | undefined;

/**
 * bitsandbytes' `create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)`: 256 sorted float32 values in
 * [-0.99297, 1] (more of them near zero), the code of `quantize_blockwise` and of double quantization.
 */
export function dynamicMap(): Float32Array {
  if (dynamic) return dynamic;
  const f = Math.fround;
  const data: number[] = [];
  for (let i = 0; i < 7; i++) {
    const b = linspaceF32(0.1, 1, 2 ** i + 1);
    const means = Array.from({ length: b.length - 1 }, (_, k) => f(f(b[k] + b[k + 1]) / 2));
    const p = f(10 ** (i - 6));
    for (const m of means) data.push(f(m * p));
    for (const m of means) data.push(f(m * -p));
  }
  data.push(0, 1);
  dynamic = Float32Array.from(data.sort((a, b) => a - b));
  return dynamic;
}

/** Index of the code nearest to x in a sorted code book (ties to the lower index). */
export function nearestCode(sorted: Float32Array, x: number): number {
  let lo = 0, hi = sorted.length - 1;
  if (x <= sorted[lo]) return lo;
  if (x >= sorted[hi]) return hi;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid] <= x) lo = mid;
    else hi = mid;
  }
  // sorted[lo] <= x < sorted[hi]; distances in float32 as the argmin computes them
  const dl = Math.fround(x - sorted[lo]), dh = Math.fround(sorted[hi] - x);
  return dh < dl ? hi : lo;
}

/** Bits per code of a kind. */
export function codeBits(kind: QuantKind): 4 | 8 {
  return kind === "int8" ? 8 : 4;
}

/** float32 of 1/127, the factor of int8 dequantization (bitsandbytes' `int8_vectorwise_dequant`). */
export const INV127: number = Math.fround(7.874015718698502e-3);
