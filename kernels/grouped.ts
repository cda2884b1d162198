/**
 * WGSL for sparse expert dispatch (engine/graph/ops/grouped.ts): the stable sort of assignments by expert, the
 * grouped matmul over expert-ordered rows and its per-expert weight gradient. Shapes are static; the split of rows
 * among experts is data, read by the kernels at run time.
 *
 * - `expert_sort`: one workgroup per class c (expert 0..E-1, and E for out-of-range ids). It counts the assignments
 *   of lower classes (its offset), then walks the assignments in tiles, compacting its own in order with a prefix
 *   sum, so the order is stable and no two threads write the same element: no atomics, deterministic.
 * - `grouped_matmul`: 32×64 output tiles, 16-deep k slices staged in workgroup memory, 2×4 outputs per thread. A
 *   tile belongs to one expert: the grid has one tile slot per 32 rows plus one per class (each expert's last partial
 *   tile), Σ_c ceil(n_c / 32) ≤ ceil(R / 32) + E + 1; a workgroup finds its (expert, first row) by walking the
 *   offsets, shares it through workgroupUniformLoad and returns at once if the slot is unused. Rows of class E are
 *   written 0.
 * - `grouped_matmul_dw`: one workgroup per (expert, 32×64 tile of [P, Q]) loops over that expert's rows 16 at a time
 *   (a uniform bound through workgroupUniformLoad), summing in row order.
 * @module
 */
import { groupedDims, groupedDwDims, type GroupedMatmulAttrs } from "../engine/graph/ops/grouped.ts";
import { numel } from "../engine/graph/types.ts";
import { declare, grid, loadF32, type Lowering } from "./kernel.ts";

const WG = 256;
const TM = 32, TN = 64, TK = 16;

const entry = `@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>)`;

/** The 2×4 register tile product over one staged k slice: As [TK][TM], Bs [TK][TN]. */
const fmaSlice = `for (var kk = 0u; kk < ${TK}u; kk++) {
      let a0 = As[kk * ${TM}u + ty];
      let a1 = As[kk * ${TM}u + ty + 16u];
      for (var j = 0u; j < 4u; j++) {
        let bv = Bs[kk * ${TN}u + tx + 16u * j];
        acc0[j] = fma(a0, bv, acc0[j]);
        acc1[j] = fma(a1, bv, acc1[j]);
      }
    }`;

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
    const colTiles = Math.ceil(M / TN), slots = Math.ceil(R / TM) + E + 1, total = colTiles * slots;
    const X = (i: string) => loadF32("x", x.dtype, i);
    const W = (i: string) => loadF32("w", w.dtype, i);
    // B slice element q of the [TK][TN] tile: W[e] row-major [M, K] (transB) or [K, M].
    const loadB = transB
      ? `let nn = q / ${TK}u; let kk = q % ${TK}u; let n = n0 + nn; let kq = k0 + kk;
        var v = 0.0;
        if (n < ${M}u && kq < ${K}u) { v = ${W(`wb + n * ${K}u + kq`)}; }
        Bs[kk * ${TN}u + nn] = v;`
      : `let kk = q / ${TN}u; let nn = q % ${TN}u; let n = n0 + nn; let kq = k0 + kk;
        var v = 0.0;
        if (n < ${M}u && kq < ${K}u) { v = ${W(`wb + kq * ${M}u + n`)}; }
        Bs[kk * ${TN}u + nn] = v;`;
    const code = `${declare([["x", x.dtype], ["w", w.dtype], ["off", "i32"], ["y", "f32"]])}
var<workgroup> As: array<f32, ${TK * TM}>;
var<workgroup> Bs: array<f32, ${TK * TN}>;
var<workgroup> tile: vec4<i32>;
${entry} {
  let lid = lid3.x;
  let wgi = wid.x + wid.y * nwg.x;
  if (wgi >= ${total}u) { return; }
  let slot = i32(wgi / ${colTiles}u);
  let n0 = (wgi % ${colTiles}u) * ${TN}u;
  if (lid == 0u) {
    // Find this slot's class and first row: class c has ceil(n_c / TM) slots.
    var t = slot;
    var found = vec4<i32>(-1, 0, 0, 0);
    for (var c = 0; c <= ${E}; c++) {
      let lo = clamp(off[c], 0, ${R});
      var hi = ${R};
      if (c < ${E}) { hi = clamp(off[c + 1], lo, ${R}); }
      let n = (hi - lo + ${TM - 1}) / ${TM};
      if (t < n) { found = vec4<i32>(c, lo + t * ${TM}, min(hi, lo + (t + 1) * ${TM}), 0); break; }
      t -= n;
    }
    tile = found;
  }
  let info = workgroupUniformLoad(&tile);
  if (info.x < 0) { return; }
  let tx = lid % 16u;
  let ty = lid / 16u;
  let r0 = u32(info.y);
  let r1 = u32(info.z);
  if (info.x == ${E}) {
    for (var i = 0u; i < 2u; i++) {
      let r = r0 + ty + 16u * i;
      for (var j = 0u; j < 4u; j++) {
        let n = n0 + tx + 16u * j;
        if (r < r1 && n < ${M}u) { y[r * ${M}u + n] = 0.0; }
      }
    }
    return;
  }
  let wb = u32(info.x) * ${K * M}u;
  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  for (var k0 = 0u; k0 < ${K}u; k0 += ${TK}u) {
    for (var i = 0u; i < ${(TM * TK) / WG}u; i++) {
      let q = lid + ${WG}u * i;
      let mm = q / ${TK}u; let kk = q % ${TK}u; let r = r0 + mm; let kq = k0 + kk;
      var v = 0.0;
      if (r < r1 && kq < ${K}u) { v = ${X(`r * ${K}u + kq`)}; }
      As[kk * ${TM}u + mm] = v;
    }
    for (var i = 0u; i < ${(TN * TK) / WG}u; i++) {
      let q = lid + ${WG}u * i;
      ${loadB}
    }
    workgroupBarrier();
    ${fmaSlice}
    workgroupBarrier();
  }
  for (var j = 0u; j < 4u; j++) {
    let n = n0 + tx + 16u * j;
    if (n < ${M}u) {
      let ra = r0 + ty;
      let rb = r0 + ty + 16u;
      if (ra < r1) { y[ra * ${M}u + n] = acc0[j]; }
      if (rb < r1) { y[rb * ${M}u + n] = acc1[j]; }
    }
  }
}`;
    return {
      launches: [{
        code,
        bindings: [{ input: 0 }, { input: 1 }, { input: 2 }, { output: 0 }],
        workgroups: grid(total, ctx.maxWorkgroupsPerDim),
      }],
    };
  },

  // a [R, P], b [R, Q], offsets [E + 1] -> out [E, P, Q]
  grouped_matmul_dw: ({ inputs: [a, b, off] }, ctx) => {
    const { R, P, Q, E } = groupedDwDims(a, b, off);
    const pt = Math.ceil(P / TM), qt = Math.ceil(Q / TN), total = E * pt * qt;
    const code = `${declare([["a", "f32"], ["b", "f32"], ["off", "i32"], ["out", "f32"]])}
var<workgroup> As: array<f32, ${TK * TM}>;
var<workgroup> Bs: array<f32, ${TK * TN}>;
var<workgroup> span: vec2<u32>;
${entry} {
  let lid = lid3.x;
  let wgi = wid.x + wid.y * nwg.x;
  if (wgi >= ${total}u) { return; }
  let e = wgi / ${pt * qt}u;
  let p0 = ((wgi / ${qt}u) % ${pt}u) * ${TM}u;
  let n0 = (wgi % ${qt}u) * ${TN}u;
  if (lid == 0u) {
    let lo = clamp(off[e], 0, ${R});
    span = vec2<u32>(u32(lo), u32(clamp(off[e + 1u], lo, ${R})));
  }
  let s = workgroupUniformLoad(&span);
  let tx = lid % 16u;
  let ty = lid / 16u;
  var acc0 = vec4<f32>(0.0);
  var acc1 = vec4<f32>(0.0);
  for (var k0 = s.x; k0 < s.y; k0 += ${TK}u) {
    for (var i = 0u; i < ${(TM * TK) / WG}u; i++) {
      let q = lid + ${WG}u * i;
      let kk = q / ${TM}u; let mm = q % ${TM}u; let r = k0 + kk; let p = p0 + mm;
      var v = 0.0;
      if (r < s.y && p < ${P}u) { v = a[r * ${P}u + p]; }
      As[kk * ${TM}u + mm] = v;
    }
    for (var i = 0u; i < ${(TN * TK) / WG}u; i++) {
      let q = lid + ${WG}u * i;
      let kk = q / ${TN}u; let nn = q % ${TN}u; let r = k0 + kk; let n = n0 + nn;
      var v = 0.0;
      if (r < s.y && n < ${Q}u) { v = b[r * ${Q}u + n]; }
      Bs[kk * ${TN}u + nn] = v;
    }
    workgroupBarrier();
    ${fmaSlice}
    workgroupBarrier();
  }
  let ob = e * ${P * Q}u;
  for (var j = 0u; j < 4u; j++) {
    let n = n0 + tx + 16u * j;
    if (n < ${Q}u) {
      let pa = p0 + ty;
      let pb = p0 + ty + 16u;
      if (pa < ${P}u) { out[ob + pa * ${Q}u + n] = acc0[j]; }
      if (pb < ${P}u) { out[ob + pb * ${Q}u + n] = acc1[j]; }
    }
  }
}`;
    return {
      launches: [{
        code,
        bindings: [{ input: 0 }, { input: 1 }, { input: 2 }, { output: 0 }],
        workgroups: grid(total, ctx.maxWorkgroupsPerDim),
      }],
    };
  },
};
