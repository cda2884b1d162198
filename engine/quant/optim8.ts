/**
 * bitsandbytes' blockwise 8-bit optimizer states (Dettmers et al. 2022, "8-bit Optimizers via Block-wise
 * Quantization"), as its CUDA kernel `kOptimizerStatic8bit2StateBlockwise<T, ADAM, 256, 1>` (csrc/kernels.cu, with
 * `BLOCKSIZE_2STATE 256`, `NUM_2STATE 1` of csrc/ops.cu) updates them: host-side pure functions on flat arrays, the
 * reference the `adamw_8bit` op's three executors are checked against.
 *
 * A state of n elements is n uint8 codes plus one f32 absmax per block of {@link OPT8_BLOCK}; the first moment uses
 * `create_dynamic_map(signed=True)`, the second `create_dynamic_map(signed=False)` (bitsandbytes'
 * `Optimizer2State.init_state`: `qmap1 = name2qmap["dynamic"]`, `qmap2 = name2qmap["udynamic"]`). Whetstone stores
 * the codes four to an i32 word, little-endian (byte i of the state is bits 8·(i mod 4) of word ⌊i / 4⌋), the bytes
 * a checkpoint writes as bitsandbytes' uint8 tensor.
 *
 * One step of a block, f32 arithmetic, as the kernel (t = step, from 1):
 *
 *   c1 ← 1 − β1^t;  c2 ← √(1 − β2^t);  step_size ← −lr·c2 / c1
 *   s2 ← qmap2[code2]·absmax2;  s2 ← s2·β2 + (1 − β2)·g·g        (g = grad · gnorm_scale)
 *   s1 ← qmap1[code1]·absmax1;  s1 ← s1·β1 + (1 − β1)·g
 *   absmax1 ← max |s1|, absmax2 ← max |s2| over the block        (the kernel's BlockReduce over 256 threads)
 *   p ← p + step_size · s1 / (√s2 + c2·eps);  p ← p·(1 − lr·wd)  (weight decay after the update)
 *   code1 ← quantize_2D<1>(s1 / absmax1), then moved one code toward s1's sign if the code's sign differs
 *   code2 ← quantize_2D<0>(s2 / absmax2)
 *
 * The kernel's 256 threads also run for the missing elements of a last, partial block, with g = 0, code1 = 128,
 * code2 = 0 (cub's BlockLoad defaults): their s1 = qmap1[128]·absmax1·β1 enters the block's new absmax1. Kept here.
 *
 * Where this differs from the CUDA kernel, and why: the division s / absmax is exact f32 division (the kernel's
 * `__fdividef` and `__powf` are approximate intrinsics); a block whose new absmax is 0 quantizes x = 0 (the kernel
 * divides 0 / 0 and keeps whatever code NaN leads to; every code dequantizes to 0 there); the sign fix compares
 * values (s1 < 0, qmap1[code] < 0), not sign bits, so a −0 counts as +0; non-finite gradients are not special-cased
 * per element (Whetstone's fp16 step skips the whole update on overflow instead).
 * @module
 */
import { dynamicMap } from "./codes.ts";

/** Elements per absmax block of bitsandbytes' 8-bit blockwise optimizers (`BLOCKSIZE_2STATE`). */
export const OPT8_BLOCK = 256;
/** bitsandbytes' `min_8bit_size`: params with fewer elements keep 32-bit states. */
export const MIN_8BIT_SIZE = 4096;

const f = Math.fround;

/**
 * torch.linspace(start, end, steps) in float32 as torch computes it on a CPU (see codes.ts): the first half from the
 * start, the rest from the end.
 */
function linspaceF32(start: number, end: number, steps: number): Float32Array {
  const s = f(start), e = f(end);
  const step = f(f(e - s) / (steps - 1));
  const half = Math.floor(steps / 2);
  return Float32Array.from({ length: steps }, (_, i) => (i < half ? f(step * i + s) : f(e - step * (steps - 1 - i))));
}

let unsigned: Float32Array | undefined;

/**
 * bitsandbytes' `create_dynamic_map(signed=False)`: 256 sorted float32 values in [0, 1] (0 at index 0, 1 at 255),
 * the code of the second moment.
 */
export function unsignedDynamicMap(): Float32Array {
  if (unsigned) return unsigned;
  const data: number[] = [];
  for (let i = 0; i < 7; i++) {
    const b = linspaceF32(0.1, 1, 2 ** (i + 1) + 1);
    const p = f(10 ** (i - 6));
    for (let k = 0; k + 1 < b.length; k++) data.push(f(f(f(b[k] + b[k + 1]) / 2) * p));
  }
  data.push(0, 1);
  unsigned = Float32Array.from(data.sort((a, b) => a - b));
  return unsigned;
}

/** The two code books: qmap1 (signed, first moment) and qmap2 (unsigned, second moment). */
export function optim8Maps(): { qmap1: Float32Array; qmap2: Float32Array } {
  return { qmap1: dynamicMap(), qmap2: unsignedDynamicMap() };
}

/**
 * The kernel's `quantize_2D<SIGNED>`: a 7-step binary search of x in the sorted code book from index 127, then the
 * nearer of the two bracketing codes by the f32 midpoint (the bracket starts at [−1 or 0, 1], indices 0 and 255).
 */
export function quantize2D(code: Float32Array, signed: boolean, x: number): number {
  let pivot = 127, upperPivot = 255, lowerPivot = 0;
  let lower = signed ? -1 : 0, upper = 1;
  let val = code[pivot];
  for (let i = 64; i > 0; i >>= 1) {
    if (x > val) {
      lowerPivot = pivot;
      lower = val;
      pivot += i;
    } else {
      upperPivot = pivot;
      upper = val;
      pivot -= i;
    }
    val = code[pivot];
  }
  if (x > val) return x > f(f(upper + val) * 0.5) ? upperPivot : pivot;
  return x < f(f(lower + val) * 0.5) ? lowerPivot : pivot;
}

/** The first-moment code of s1 (already divided by its absmax as x): quantize_2D<1> and the kernel's sign fix. */
export function quantizeSigned(qmap1: Float32Array, x: number, s1: number): number {
  let c = quantize2D(qmap1, true, x);
  if (qmap1[c] < 0 !== s1 < 0) c += s1 > 0 ? 1 : -1;
  return c & 255; // an unsigned char in the kernel
}

/** Code i of words packed four to an i32 (little-endian). */
export const codeAt = (words: ArrayLike<number>, i: number): number => (words[i >> 2] >>> (8 * (i & 3))) & 255;

/** Bytes (codes) → i32 words, four to a word, the last padded with 0. */
export function packCodes(codes: ArrayLike<number>): Int32Array {
  const words = new Int32Array(Math.ceil(codes.length / 4));
  for (let i = 0; i < codes.length; i++) words[i >> 2] |= (codes[i] & 255) << (8 * (i & 3));
  return words;
}

/** The first n codes of i32 words. */
export function unpackCodes(words: ArrayLike<number>, n: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => codeAt(words, i));
}

/** An 8-bit AdamW state of one param: codes (i32 words) and absmax per block, updated in place. */
export interface Adam8State {
  state1: { [i: number]: number; length: number };
  state2: { [i: number]: number; length: number };
  absmax1: { [i: number]: number; length: number };
  absmax2: { [i: number]: number; length: number };
}

/** AdamW's settings (bitsandbytes' AdamW param group). */
export interface Adam8Options {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/**
 * One bitsandbytes 8-bit blockwise AdamW step of `p` (n elements, updated in place) with gradient `g` times
 * `gnormScale`, at learning rate `lr` and step `step` (from 1): see the module doc.
 */
export function adam8bitStep(
  p: { [i: number]: number; length: number },
  g: ArrayLike<number>,
  st: Adam8State,
  lr: number,
  step: number,
  o: Adam8Options,
  gnormScale = 1,
): void {
  const { qmap1, qmap2 } = optim8Maps();
  const n = p.length, nb = Math.ceil(n / OPT8_BLOCK);
  const b1 = f(o.beta1), b2 = f(o.beta2), eps = f(o.eps), wd = f(o.weightDecay), a = f(lr);
  const c1 = f(1 - f(Math.pow(b1, step))), c2 = f(Math.sqrt(f(1 - f(Math.pow(b2, step)))));
  const stepSize = f(f(-a * c2) / c1);
  const r1 = f(1 - b1), r2 = f(1 - b2), decay = f(1 - f(a * wd));
  const s1 = new Float32Array(OPT8_BLOCK), s2 = new Float32Array(OPT8_BLOCK);
  const words1 = new Int32Array(Math.ceil(n / 4)), words2 = new Int32Array(Math.ceil(n / 4));
  for (let b = 0; b < nb; b++) {
    const base = b * OPT8_BLOCK, len = Math.min(OPT8_BLOCK, n - base);
    const am1 = f(st.absmax1[b]), am2 = f(st.absmax2[b]);
    let max1 = 0, max2 = 0;
    for (let j = 0; j < OPT8_BLOCK; j++) {
      const i = base + j;
      const gv = j < len ? f(f(g[i]) * f(gnormScale)) : 0;
      const code1 = j < len ? codeAt(st.state1, i) : 128, code2 = j < len ? codeAt(st.state2, i) : 0;
      let v = f(qmap2[code2] * am2);
      v = f(f(v * b2) + f(f(r2 * gv) * gv));
      let m = f(qmap1[code1] * am1);
      m = f(f(m * b1) + f(r1 * gv));
      s1[j] = m;
      s2[j] = v;
      max1 = Math.max(max1, Math.abs(m));
      max2 = Math.max(max2, Math.abs(v));
    }
    st.absmax1[b] = max1;
    st.absmax2[b] = max2;
    for (let j = 0; j < len; j++) {
      const i = base + j;
      let pv = f(f(p[i]) + f(stepSize * f(s1[j] / f(f(Math.sqrt(s2[j])) + f(c2 * eps)))));
      if (wd > 0) pv = f(pv * decay);
      p[i] = pv;
      const x1 = max1 === 0 ? 0 : f(s1[j] / max1), x2 = max2 === 0 ? 0 : f(s2[j] / max2);
      words1[i >> 2] |= quantizeSigned(qmap1, x1, s1[j]) << (8 * (i & 3));
      words2[i >> 2] |= quantize2D(qmap2, false, x2) << (8 * (i & 3));
    }
  }
  for (let w = 0; w < words1.length; w++) {
    st.state1[w] = words1[w];
    st.state2[w] = words2[w];
  }
}

/** The 8-bit state of a param of n elements: its code words and absmax shapes. */
export function optim8Layout(n: number): { words: number; blocks: number } {
  return { words: Math.ceil(n / 4), blocks: Math.ceil(n / OPT8_BLOCK) };
}
