/**
 * WGSL for `assign`: a copy into the target param's buffer.
 * @module
 */
import { numel } from "../engine/graph/types.ts";
import { declare, entry1d, grid, linearIndex, type Lowering, requireDtypes } from "./kernel.ts";

const WG = 256;

/** Lowerings of this family by op name. */
export const lowerings: Record<string, Lowering> = {
  assign: ({ inputs: [t, v] }, ctx) => {
    requireDtypes("assign", [t, v], ["f32", "i32", "u32"]);
    const n = numel(t.shape);
    const code = `${declare([["dst", t.dtype], ["src", v.dtype]])}
${entry1d(WG)} {
  ${linearIndex(WG)}
  if (gid < ${n}u) { dst[gid] = src[gid]; }
}`;
    return {
      launches: [{
        code,
        bindings: [{ input: 0 }, { input: 1 }],
        workgroups: grid(Math.ceil(n / WG), ctx.maxWorkgroupsPerDim),
      }],
    };
  },
};
