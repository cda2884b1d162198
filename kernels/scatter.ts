/**
 * WGSL for `scatter_rows`: one thread per written element, coalesced over each row; rows whose index is
 * outside [0, C) are skipped.
 * @module
 */
import { scatterRowsDims } from "../engine/graph/ops/scatter.ts";
import { declare, entry1d, grid, linearIndex, type Lowering, requireDtypes } from "./kernel.ts";

const WG = 256;

/** Lowerings of this family by op name. */
export const lowerings: Record<string, Lowering> = {
  // target [N, C, R] (in place), index [N, L] i32, value [N, L, R]
  scatter_rows: ({ inputs: [t, index, v] }, ctx) => {
    requireDtypes("scatter_rows", [t, v], ["f32", "i32", "u32"]);
    const { C, L, R, N } = scatterRowsDims(t, index, v);
    const n = N * L * R;
    const code = `${declare([["dst", t.dtype], ["idx", "i32"], ["src", v.dtype]])}
${entry1d(WG)} {
  ${linearIndex(WG)}
  if (gid >= ${n}u) { return; }
  let row = gid / ${R}u; // n * L + l
  let c = idx[row];
  if (c < 0 || c >= ${C}) { return; }
  dst[((row / ${L}u) * ${C}u + u32(c)) * ${R}u + gid % ${R}u] = src[gid];
}`;
    return {
      launches: [{
        code,
        bindings: [{ input: 0 }, { input: 1 }, { input: 2 }],
        workgroups: grid(Math.ceil(n / WG), ctx.maxWorkgroupsPerDim),
      }],
    };
  },
};
