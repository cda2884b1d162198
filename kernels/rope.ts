/**
 * WGSL for rotary position embedding. One thread per rotated pair (i, i + r/2) of one (b, l, h) row,
 * plus one per pass-through dim d >= r; reads and writes are contiguous along d.
 *
 * The angle is reduced exactly: freq holds the fraction of inv_freq / 2π as 64-bit fixed point
 * (hi, lo words), so pos · freq mod 1 turn = pos·hi + mulhi(pos, lo) in wrapping u32 arithmetic
 * (units of 2^-32 turn). The nearest quarter turn comes from the top bits and cos/sin of the rest
 * (|x| <= π/4) from short Taylor polynomials, so the result is accurate to f32 rounding on every
 * device regardless of the builtin sin/cos precision, for positions up to 2^31.
 * @module
 */
import { numel } from "../engine/graph/types.ts";
import type { RopeAttrs } from "../engine/graph/ops/rope.ts";
import { declare, entry1d, grid, linearIndex, type Lowering } from "./kernel.ts";

const WG = 256;

/** WGSL helpers: high word of a 32×32 product, and (cos, sin) of an angle in 2^-32 turns. */
export const ROPE_WGSL = `fn mulhi(a: u32, b: u32) -> u32 {
  let a0 = a & 0xffffu; let a1 = a >> 16u;
  let b0 = b & 0xffffu; let b1 = b >> 16u;
  let lo = a0 * b0; let m1 = a1 * b0; let m2 = a0 * b1;
  let c = (lo >> 16u) + (m1 & 0xffffu) + (m2 & 0xffffu);
  return a1 * b1 + (m1 >> 16u) + (m2 >> 16u) + (c >> 16u);
}
fn cossin_turns(t: u32) -> vec2<f32> {
  let q = (t + 0x20000000u) >> 30u;
  let x = f32(bitcast<i32>(t - (q << 30u))) * 1.4629180792671596e-9;
  let x2 = x * x;
  let s = x * (1.0 + x2 * (-0.16666666666666666 + x2 * (0.008333333333333333 + x2 * (-1.984126984126984e-4
    + x2 * 2.7557319223985893e-6))));
  let c = 1.0 + x2 * (-0.5 + x2 * (0.041666666666666664 + x2 * (-0.001388888888888889 + x2 * (2.48015873015873e-5
    - x2 * 2.755731922398589e-7))));
  switch q {
    case 0u: { return vec2<f32>(c, s); }
    case 1u: { return vec2<f32>(-s, c); }
    case 2u: { return vec2<f32>(-c, -s); }
    default: { return vec2<f32>(s, -c); }
  }
}`;

function lit(x: number): string {
  if (!Number.isFinite(x)) throw new Error(`expected a finite constant, got ${x}`);
  const s = String(x);
  return /[.e]/.test(s) ? s : `${s}.0`;
}

/** The lowerings of this family by op name. */
export const lowerings: Record<string, Lowering> = {
  rope: ({ inputs: [x, , freq], attrs }, ctx) => {
    const { scale, inverse } = attrs as RopeAttrs;
    const L = x.shape[1], H = x.shape[2], D = x.shape[3];
    const half = freq.shape.at(-2)!;
    // freq [B, half, 2]: each batch row (b = row / (L·H)) reads its own words.
    const f = freq.shape.length === 3 ? `(row / ${L * H}u) * ${2 * half}u + 2u * j` : "2u * j";
    const W = D - half;
    const n = numel(x.shape.slice(0, 3)) * W;
    const code = `${declare([["x", "f32"], ["pos", "i32"], ["fw", "u32"], ["out", "f32"]])}
${ROPE_WGSL}
${entry1d(WG)} {
  ${linearIndex(WG)}
  if (gid >= ${n}u) { return; }
  let row = gid / ${W}u;
  let j = gid % ${W}u;
  let o = row * ${D}u;
  if (j >= ${half}u) {
    out[o + j + ${half}u] = x[o + j + ${half}u];
    return;
  }
  let p = pos[row / ${H}u];
  let a = u32(abs(p));
  let fj = ${f};
  var t = a * fw[fj] + mulhi(a, fw[fj + 1u]);
  if (p < 0) { t = 0u - t; }
  let cs = cossin_turns(t) * ${lit(scale)};
  let c = cs.x;
  let s = ${inverse ? "-cs.y" : "cs.y"};
  let u = x[o + j];
  let v = x[o + j + ${half}u];
  out[o + j] = u * c - v * s;
  out[o + j + ${half}u] = v * c + u * s;
}`;
    return {
      launches: [{
        code,
        bindings: [{ input: 0 }, { input: 1 }, { input: 2 }, { output: 0 }],
        workgroups: grid(Math.ceil(n / WG), ctx.maxWorkgroupsPerDim),
      }],
    };
  },
};
