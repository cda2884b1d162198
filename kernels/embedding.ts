/**
 * WGSL for the embedding lookup and its scatter-add gradient.
 *
 * WGSL has no float atomics, so `embedding_bwd` is deterministic without them: the vocabulary is split
 * into P partitions (id mod P); a workgroup owns one partition and a block of columns d, walks the
 * tokens in tiles, compacts each tile's tokens of its partition in token order (a prefix sum in
 * workgroup memory) and adds their dOut rows. No two threads ever write the same dW element and each
 * row sums its tokens in token order, so results do not depend on scheduling. A previous launch
 * zeroes dW. P buys parallelism (P·D threads) for a per-tile scan in every workgroup; tuned key
 * `embedding_bwd.partitions`.
 * @module
 */
import { numel } from "../engine/graph/types.ts";
import { declare, entry1d, grid, linearIndex, loadF32, type Lowering } from "./kernel.ts";

const WG = 256;

/** Threads the backward kernel aims for when choosing its partition count. */
const TARGET_THREADS = 32768;

/** The lowerings of this family by op name. */
export const lowerings: Record<string, Lowering> = {
  embedding: ({ inputs: [w], outputs: [o] }, ctx) => {
    const [V, D] = w.shape;
    const n = numel(o.shape);
    const code = `${declare([["W", w.dtype], ["ids", "i32"], ["out", "f32"]])}
${entry1d(WG)} {
  ${linearIndex(WG)}
  if (gid >= ${n}u) { return; }
  let id = ids[gid / ${D}u];
  var v = 0.0;
  if (id >= 0 && id < ${V}) {
    v = ${loadF32("W", w.dtype, `u32(id) * ${D}u + gid % ${D}u`)};
  }
  out[gid] = v;
}`;
    return {
      launches: [{
        code,
        bindings: [{ input: 0 }, { input: 1 }, { output: 0 }],
        workgroups: grid(Math.ceil(n / WG), ctx.maxWorkgroupsPerDim),
      }],
    };
  },
  embedding_bwd: ({ inputs: [ids], outputs: [o] }, ctx) => {
    const [V, D] = o.shape;
    const T = numel(ids.shape);
    const nOut = V * D;
    const zero = `${declare([["dw", "f32"]])}
${entry1d(WG)} {
  ${linearIndex(WG)}
  if (gid < ${nOut}u) { dw[gid] = 0.0; }
}`;
    const wg = D <= 64 ? 64 : D <= 128 ? 128 : WG;
    const blocks = Math.ceil(D / wg);
    const tuned = ctx.tuned.get("embedding_bwd.partitions") as number | undefined;
    const P = Math.max(1, Math.min(V, 64, tuned ?? Math.ceil(TARGET_THREADS / (blocks * wg))));
    const scatter = `${declare([["ids", "i32"], ["g", "f32"], ["dw", "f32"]])}
var<workgroup> scan: array<u32, ${wg}>;
var<workgroup> selT: array<u32, ${wg}>;
var<workgroup> selId: array<u32, ${wg}>;
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let w = wid.x + wid.y * nwg.x;
  let part = i32(w / ${blocks}u);
  let d = (w % ${blocks}u) * ${wg}u + lid.x;
  for (var t0 = 0u; t0 < ${T}u; t0 += ${wg}u) {
    // Compact this tile's tokens of our partition, in token order (prefix sum of flags).
    let t = t0 + lid.x;
    var id = -1;
    if (t < ${T}u) { id = ids[t]; }
    let mine = id >= 0 && id < ${V} && id % ${P} == part;
    workgroupBarrier();
    scan[lid.x] = select(0u, 1u, mine);
    workgroupBarrier();
    for (var off = 1u; off < ${wg}u; off = off << 1u) {
      var add = 0u;
      if (lid.x >= off) { add = scan[lid.x - off]; }
      workgroupBarrier();
      scan[lid.x] = scan[lid.x] + add;
      workgroupBarrier();
    }
    if (mine) {
      selT[scan[lid.x] - 1u] = t;
      selId[scan[lid.x] - 1u] = u32(id);
    }
    workgroupBarrier();
    let n = scan[${wg - 1}u];
    if (d < ${D}u) {
      for (var k = 0u; k < n; k++) {
        let at = selId[k] * ${D}u + d;
        dw[at] = dw[at] + g[selT[k] * ${D}u + d];
      }
    }
  }
}`;
    return {
      launches: [
        { code: zero, bindings: [{ output: 0 }], workgroups: grid(Math.ceil(nOut / WG), ctx.maxWorkgroupsPerDim) },
        {
          code: scatter,
          bindings: [{ input: 0 }, { input: 1 }, { output: 0 }],
          workgroups: grid(P * blocks, ctx.maxWorkgroupsPerDim),
        },
      ],
    };
  },
};
