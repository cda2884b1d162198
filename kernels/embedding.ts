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
 *
 * A table stored in segments (kernels/segments.ts; whole rows each) is read through an accessor that picks
 * the segment; a segmented gradient is zeroed and scattered one launch per segment, each adding only the
 * tokens whose rows it holds (in the same token order, so the sums are the same).
 * @module
 */
import { numel } from "../engine/graph/types.ts";
import type { KernelContext } from "./kernel.ts";
import { declare, entry1d, grid, linearIndex, type Lowering } from "./kernel.ts";
import { segmentedReader, segmentElems, segmentRows } from "./segments.ts";

const WG = 256;

/** Threads the backward kernel aims for when choosing its partition count. */
const TARGET_THREADS = 32768;

/** The lowerings of this family by op name. */
export const lowerings: Record<string, Lowering> = {
  embedding: ({ inputs: [w], outputs: [o], segments }, ctx) => {
    const [V, D] = w.shape;
    const n = numel(o.shape);
    const W = segmentedReader("W", w, segments?.inputs[0], { input: 0 });
    const code = `${declare([...W.decls, ["ids", "i32"], ["out", "f32"]])}
${W.fns}
${entry1d(WG)} {
  ${linearIndex(WG)}
  if (gid >= ${n}u) { return; }
  let id = ids[gid / ${D}u];
  var v = 0.0;
  if (id >= 0 && id < ${V}) {
    v = ${W.load(`u32(id) * ${D}u + gid % ${D}u`)};
  }
  out[gid] = v;
}`;
    return {
      launches: [{
        code,
        bindings: [...W.refs, { input: 1 }, { output: 0 }],
        workgroups: grid(Math.ceil(n / WG), ctx.maxWorkgroupsPerDim),
      }],
    };
  },
  embedding_bwd: ({ inputs: [ids], outputs: [o], segments }, ctx) => {
    const [V, D] = o.shape;
    const T = numel(ids.shape);
    const seg = segments?.outputs[0];
    if (segments?.inputs.some((l) => l)) throw new Error("embedding_bwd: segmented ids or gradients are not supported");
    // Rows [r0, r0 + rows) of dW per launch pair: all of them, or one segment's.
    const rowsPer = seg ? segmentRows(seg, D, "embedding_bwd") : V;
    const parts = seg
      ? Array.from({ length: seg.count }, (_, s) => ({ r0: s * rowsPer, rows: segmentElems(seg, s) / D, s }))
      : [{ r0: 0, rows: V, s: -1 }];
    const launches = parts.flatMap(({ r0, rows, s }) => {
      const dw = s < 0 ? { output: 0 } : { output: 0, segment: s };
      const l = bwdLaunches(V, D, T, r0, rows, ctx);
      return [
        { ...l.zero, bindings: [dw] },
        { ...l.scatter, bindings: [{ input: 0 }, { input: 1 }, dw] },
      ];
    });
    return { launches };
  },
};

/** The zeroing and scatter launches of `embedding_bwd` for rows r0 to r0 + rows of dW (bindings set by the caller). */
function bwdLaunches(V: number, D: number, T: number, r0: number, rows: number, ctx: KernelContext) {
  const nOut = rows * D;
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
    let mine = id >= ${r0} && id < ${r0 + rows} && id % ${P} == part;
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
        let at = ${r0 ? `(selId[k] - ${r0}u)` : "selId[k]"} * ${D}u + d;
        dw[at] = dw[at] + g[selT[k] * ${D}u + d];
      }
    }
  }
}`;
  return {
    zero: { code: zero, workgroups: grid(Math.ceil(nOut / WG), ctx.maxWorkgroupsPerDim) },
    scatter: { code: scatter, workgroups: grid(P * blocks, ctx.maxWorkgroupsPerDim) },
  };
}
