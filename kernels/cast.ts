/**
 * WGSL for cast. 32-bit outputs: one thread per element. f16/bf16 outputs: one thread per packed
 * u32 word, writing both halves (so no two threads share a word). Rounding is to nearest even:
 * bf16 by bit arithmetic (as `toBf16Bits` in engine/util/half.ts), f16 by `pack2x16float` with
 * overflow to ±inf and NaN handled explicitly (WGSL leaves out-of-range packing indeterminate).
 * Float → int truncates and saturates, NaN → 0 (see engine/graph/ops/cast.ts).
 * @module
 */
import { type DType, numel } from "../engine/graph/types.ts";
import { type CastAttrs, I32_MAX_F32, U32_MAX_F32 } from "../engine/graph/ops/cast.ts";
import { fl } from "./norm.ts";
import { declare, entry1d, grid, linearIndex, loadF32, type Lowering } from "./kernel.ts";
import { flatRanges, rangeRef } from "./segments.ts";

const WG = 256;

const HELPERS = `fn is_nan(v: f32) -> bool { return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u; }
fn f2i(v: f32) -> i32 {
  if (is_nan(v)) { return 0; }
  return i32(clamp(v, -2147483648.0, ${fl(I32_MAX_F32)}));
}
fn f2u(v: f32) -> u32 {
  if (is_nan(v)) { return 0u; }
  return u32(clamp(v, 0.0, ${fl(U32_MAX_F32)}));
}
fn bf16_bits(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  if (is_nan(v)) { return (b >> 16u) | 0x40u; }
  return ((b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u) & 0xffffu;
}
fn f16_bits(v: f32) -> u32 {
  let s = (bitcast<u32>(v) >> 16u) & 0x8000u;
  if (is_nan(v)) { return s | 0x7e00u; }
  if (abs(v) >= 65520.0) { return s | 0x7c00u; }
  return pack2x16float(vec2<f32>(v, 0.0)) & 0xffffu;
}`;

/** WGSL expression: element `i` of `x` (of `from`) converted to the 32-bit storage of `to`. */
function convert(from: DType, to: DType, i: string): string {
  const v = loadF32("x", from, i);
  if (to === "f32") return v;
  if (to === "i32") return from === "i32" ? `x[${i}]` : from === "u32" ? `bitcast<i32>(x[${i}])` : `f2i(${v})`;
  if (to === "u32") return from === "u32" ? `x[${i}]` : from === "i32" ? `bitcast<u32>(x[${i}])` : `f2u(${v})`;
  return `${to}_bits(${v})`;
}

/** The WGSL of a cast of `n` elements starting at element `xo` of x and `yo` of y (both even when packed). */
function castCode(x: DType, o: DType, n: number, xo: number, yo: number): string {
  const packed = o === "f16" || o === "bf16";
  const at = (i: string, off: number) => (off ? `${i} + ${off}u` : i);
  let items: number, stmt: string;
  if (x === o) {
    items = packed ? Math.ceil(n / 2) : n;
    const [xw, yw] = packed ? [xo / 2, yo / 2] : [xo, yo];
    stmt = `y[${at("gid", yw)}] = x[${at("gid", xw)}];`;
  } else if (!packed) {
    items = n;
    stmt = `y[${at("gid", yo)}] = ${convert(x, o, at("gid", xo))};`;
  } else {
    items = Math.ceil(n / 2);
    // The odd tail reads a clamped index and keeps 0 in the upper half.
    stmt = `let lo = ${convert(x, o, at("2u * gid", xo))};
  let i1 = min(2u * gid + 1u, ${Math.max(0, n - 1)}u);
  let hi = select(0u, ${convert(x, o, at("i1", xo))}, 2u * gid + 1u < ${n}u);
  y[${at("gid", yo / 2)}] = lo | (hi << 16u);`;
  }
  return `${declare([["x", x], ["y", o]])}
${HELPERS}
${entry1d(WG)} {
  ${linearIndex(WG)}
  if (gid >= ${items}u) { return; }
  ${stmt}
}`;
}

/**
 * A cast; over a tensor stored in segments (kernels/segments.ts; a multiple of 4 elements each), one launch per
 * segment, the other side bound whole at the segment's offset when it is not segmented.
 */
const cast: Lowering<CastAttrs> = ({ inputs: [x], outputs: [o], segments }, ctx) => {
  const n = numel(x.shape);
  const [li, lo] = [segments?.inputs[0], segments?.outputs[0]];
  return {
    launches: flatRanges(n, [li, lo], "cast").map((r) => {
      const items = o.dtype === "f16" || o.dtype === "bf16" ? Math.ceil(r.len / 2) : r.len;
      return {
        code: castCode(x.dtype, o.dtype, r.len, li ? 0 : r.base, lo ? 0 : r.base),
        bindings: [rangeRef({ input: 0 }, li, r), rangeRef({ output: 0 }, lo, r)],
        workgroups: grid(Math.ceil(items / WG), ctx.maxWorkgroupsPerDim),
      };
    }),
  };
};

/** Lowerings of this family by op name. */
export const lowerings: Record<string, Lowering> = { cast: cast as Lowering };
