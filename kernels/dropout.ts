/**
 * WGSL for dropout: one thread per element, the mask from the same u32 hash as the reference
 * (`dropoutHash` in engine/graph/ops/dropout.ts), so WebGPU and reference masks are identical.
 * @module
 */
import { numel } from "../engine/graph/types.ts";
import { type DropoutAttrs, dropoutThreshold } from "../engine/graph/ops/dropout.ts";
import { declare, entry1d, grid, linearIndex, type Lowering } from "./kernel.ts";

const WG = 256;

/** WGSL of the hash functions (mirrors mix32, dropoutKey and dropoutHash). */
export const DROPOUT_HASH_WGSL = `fn mix32(v: u32) -> u32 {
  var x = v;
  x = x ^ (x >> 16u);
  x = x * 0x7feb352du;
  x = x ^ (x >> 15u);
  x = x * 0x846ca68bu;
  return x ^ (x >> 16u);
}
fn dropout_key(seed: u32, offset: u32) -> u32 { return mix32(seed ^ mix32(offset ^ 0x9e3779b9u)); }
fn dropout_hash(key: u32, i: u32) -> u32 { return mix32(mix32(i ^ key) + key); }`;

/** The lowerings of this family by op name. */
export const lowerings: Record<string, Lowering> = {
  dropout: ({ inputs: [x], attrs }, ctx) => {
    const { p, offset } = attrs as DropoutAttrs;
    const n = numel(x.shape);
    const scale = String(1 / (1 - p));
    const code = `${declare([["x", "f32"], ["seed", "u32"], ["out", "f32"]])}
${DROPOUT_HASH_WGSL}
${entry1d(WG)} {
  ${linearIndex(WG)}
  if (gid >= ${n}u) { return; }
  let key = dropout_key(seed[0], ${offset >>> 0}u);
  let keep = dropout_hash(key, gid) >= ${dropoutThreshold(p)}u;
  out[gid] = select(0.0, x[gid] * f32(${/[.e]/.test(scale) ? scale : scale + ".0"}), keep);
}`;
    return {
      launches: [{
        code,
        bindings: [{ input: 0 }, { input: 1 }, { output: 0 }],
        workgroups: grid(Math.ceil(n / WG), ctx.maxWorkgroupsPerDim),
      }],
    };
  },
};
