/**
 * WGSL for sparse expert dispatch (engine/graph/ops/grouped.ts): the stable sort of assignments by expert, the
 * grouped matmul over expert-ordered rows and its per-expert weight gradient. Shapes are static; the split of rows
 * among experts is data, read by the kernels at run time.
 *
 * - `expert_sort`: one workgroup per class c (expert 0..E-1, and E for out-of-range ids). It counts the assignments
 *   of lower classes (its offset), then walks the assignments in tiles, compacting its own in order with a prefix
 *   sum, so the order is stable and no two threads write the same element: no atomics, deterministic.
 * - `grouped_matmul`: one thread per output element: it finds its row's expert by a binary search of the offsets and
 *   sums x[r] · W[e] over K in order. Rows of no expert are 0.
 * - `grouped_matmul_dw`: one thread per element of [E, P, Q], summing its expert's rows in row order.
 *
 * The two matmuls are plain, untiled loops (memory-bound, but sparse: R·K·M multiply-adds). A tiled version (32×64
 * tiles staged in workgroup memory, one expert per tile) took lavapipe's LLVM 25 s and more to compile per shape here,
 * so it is left for when it can be made to compile quickly.
 * @module
 */
import { groupedDims, groupedDwDims, type GroupedMatmulAttrs } from "../engine/graph/ops/grouped.ts";
import { numel } from "../engine/graph/types.ts";
import { declare, entry1d, grid, linearIndex, loadF32, type Lowering } from "./kernel.ts";

const WG = 256;

/** WGSL declaring `e`: the expert whose rows [off[e], off[e + 1]) hold row `r` (a binary search), or -1. */
function expertOf(r: string, E: number): string {
  return `var lo = 0;
  var hi = ${E};
  while (lo < hi) {
    let mid = (lo + hi) / 2;
    if (off[mid + 1] <= ${r}) { lo = mid + 1; } else { hi = mid; }
  }
  var e = -1;
  if (lo < ${E} && off[lo] <= ${r}) { e = lo; }`;
}

const entry = `@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>)`;

/** The lowerings of this family by op name. */
export const lowerings: Record<string, Lowering> = {
  // ids [..., k] i32 -> rows [R], pos [..., k], offsets [E + 1]
  expert_sort: ({ inputs: [ids], attrs }, ctx) => {
    const E = attrs.experts as number, R = numel(ids.shape), k = ids.shape[ids.shape.length - 1];
    const cls = (v: string) => `select(${E}, ${v}, ${v} >= 0 && ${v} < ${E})`;
    const code = `${declare([["ids", "i32"], ["rows", "i32"], ["pos", "i32"], ["off", "i32"]])}
var<workgroup> scan: array<u32, ${WG}>;
${entry} {
  let lid = lid3.x;
  let c = i32(wid.x + wid.y * nwg.x);
  if (c > ${E}) { return; }
  var below = 0u;
  for (var a = lid; a < ${R}u; a += ${WG}u) {
    let v = ids[a];
    if (${cls("v")} < c) { below += 1u; }
  }
  scan[lid] = below;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { scan[lid] = scan[lid] + scan[lid + s]; }
    workgroupBarrier();
  }
  var next = scan[0];
  if (lid == 0u) { off[c] = i32(next); }
  for (var t0 = 0u; t0 < ${R}u; t0 += ${WG}u) {
    let a = t0 + lid;
    var mine = false;
    if (a < ${R}u) { let v = ids[a]; mine = ${cls("v")} == c; }
    workgroupBarrier();
    scan[lid] = select(0u, 1u, mine);
    workgroupBarrier();
    for (var o = 1u; o < ${WG}u; o = o << 1u) {
      var add = 0u;
      if (lid >= o) { add = scan[lid - o]; }
      workgroupBarrier();
      scan[lid] = scan[lid] + add;
      workgroupBarrier();
    }
    if (mine) {
      let r = next + scan[lid] - 1u;
      rows[r] = i32(a / ${k}u);
      pos[a] = i32(r);
    }
    next += scan[${WG - 1}u];
  }
}`;
    return {
      launches: [{
        code,
        bindings: [{ input: 0 }, { output: 0 }, { output: 1 }, { output: 2 }],
        workgroups: grid(E + 1, ctx.maxWorkgroupsPerDim),
      }],
    };
  },

  // x [R, K], w [E, M, K] (transB) or [E, K, M], offsets [E + 1] -> y [R, M]
  grouped_matmul: ({ inputs: [x, w, off], attrs }, ctx) => {
    const { transB } = attrs as GroupedMatmulAttrs;
    const { R, K, M, E } = groupedDims(x, w, off, attrs as GroupedMatmulAttrs);
    const n = R * M;
    const wAt = transB ? `wb + m * ${K}u + q` : `wb + q * ${M}u + m`;
    const code = `${declare([["x", x.dtype], ["w", w.dtype], ["off", "i32"], ["y", "f32"]])}
${entry1d(WG)} {
  ${linearIndex(WG)}
  if (gid >= ${n}u) { return; }
  let r = i32(gid / ${M}u);
  let m = gid % ${M}u;
  ${expertOf("r", E)}
  var s = 0.0;
  if (e >= 0) {
    let wb = u32(e) * ${K * M}u;
    let xb = u32(r) * ${K}u;
    for (var q = 0u; q < ${K}u; q++) {
      s = fma(${loadF32("x", x.dtype, "xb + q")}, ${loadF32("w", w.dtype, wAt)}, s);
    }
  }
  y[gid] = s;
}`;
    return {
      launches: [{
        code,
        bindings: [{ input: 0 }, { input: 1 }, { input: 2 }, { output: 0 }],
        workgroups: grid(Math.ceil(n / WG), ctx.maxWorkgroupsPerDim),
      }],
    };
  },

  // a [R, P], b [R, Q], offsets [E + 1] -> out [E, P, Q]
  grouped_matmul_dw: ({ inputs: [a, b, off] }, ctx) => {
    const { R, P, Q, E } = groupedDwDims(a, b, off);
    const n = E * P * Q;
    const code = `${declare([["a", "f32"], ["b", "f32"], ["off", "i32"], ["out", "f32"]])}
${entry1d(WG)} {
  ${linearIndex(WG)}
  if (gid >= ${n}u) { return; }
  let e = gid / ${P * Q}u;
  let p = (gid / ${Q}u) % ${P}u;
  let q = gid % ${Q}u;
  let lo = clamp(off[e], 0, ${R});
  let hi = clamp(off[e + 1u], lo, ${R});
  var s = 0.0;
  for (var r = u32(lo); r < u32(hi); r++) {
    s = fma(a[r * ${P}u + p], b[r * ${Q}u + q], s);
  }
  out[gid] = s;
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
