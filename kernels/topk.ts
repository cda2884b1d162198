/**
 * WGSL for top-k along the last axis and its gather / scatter (engine/graph/ops/topk.ts). No subgroups, no atomics.
 *
 * - `topk`: one invocation per row keeps the row's best k in private arrays, largest first, by insertion: it walks
 *   the row in index order and inserts an entry only when it is strictly larger than the k-th kept one, below every
 *   kept entry it does not beat, so equal values stay in index order (ties to the lower index). k is small in the
 *   routers (2 to 8 of up to 256 experts): O(E + inserts · k) per row.
 * - `gather_last`: one invocation per output element.
 * - `scatter_last`: one invocation per output element (row, e), summing the row's v[j] with idx[j] = e in j order:
 *   O(k) each, deterministic.
 * @module
 */
import { lastAxisDims, type ScatterLastAttrs, topkDims } from "../engine/graph/ops/topk.ts";
import { declare, entry1d, grid, linearIndex, type Lowering } from "./kernel.ts";

const WG = 64;

/** The lowerings of this family by op name. */
export const lowerings: Record<string, Lowering> = {
  // x [..., E] -> values [..., k], indices [..., k]
  topk: ({ inputs: [x], attrs }, ctx) => {
    const k = attrs.k as number;
    const { rows, E } = topkDims(x, k);
    const code = `${declare([["x", "f32"], ["values", "f32"], ["indices", "i32"]])}
${entry1d(WG)} {
  ${linearIndex(WG)}
  if (gid >= ${rows}u) { return; }
  let base = gid * ${E}u;
  var v: array<f32, ${k}>;
  var id: array<i32, ${k}>;
  var n = 0u;
  for (var e = 0u; e < ${E}u; e++) {
    let s = x[base + e];
    if (n == ${k}u && !(s > v[${k - 1}])) { continue; }
    // Shift the kept entries that s beats down one place (the last falls off when all k are kept).
    var p = min(n, ${k - 1}u);
    while (p > 0u && s > v[p - 1u]) {
      v[p] = v[p - 1u];
      id[p] = id[p - 1u];
      p--;
    }
    v[p] = s;
    id[p] = i32(e);
    n = min(n + 1u, ${k}u);
  }
  for (var j = 0u; j < ${k}u; j++) {
    values[gid * ${k}u + j] = v[j];
    indices[gid * ${k}u + j] = id[j];
  }
}`;
    return {
      launches: [{
        code,
        bindings: [{ input: 0 }, { output: 0 }, { output: 1 }],
        workgroups: grid(Math.ceil(rows / WG), ctx.maxWorkgroupsPerDim),
      }],
    };
  },

  // x [..., E], idx [..., k] -> [..., k]
  gather_last: ({ inputs: [x, idx] }, ctx) => {
    const { rows, E, k } = lastAxisDims(x.shape, idx, "x");
    const n = rows * k;
    const code = `${declare([["x", "f32"], ["idx", "i32"], ["out", "f32"]])}
${entry1d(WG)} {
  ${linearIndex(WG)}
  if (gid >= ${n}u) { return; }
  let e = idx[gid];
  var s = 0.0;
  if (e >= 0 && e < ${E}) { s = x[(gid / ${k}u) * ${E}u + u32(e)]; }
  out[gid] = s;
}`;
    return {
      launches: [{
        code,
        bindings: [{ input: 0 }, { input: 1 }, { output: 0 }],
        workgroups: grid(Math.ceil(n / WG), ctx.maxWorkgroupsPerDim),
      }],
    };
  },

  // v [..., k], idx [..., k] -> [..., E]
  scatter_last: ({ inputs: [v, idx], attrs }, ctx) => {
    const E = (attrs as ScatterLastAttrs).size;
    const { rows, k } = lastAxisDims([...v.shape.slice(0, -1), E], idx, "the output");
    const n = rows * E;
    const code = `${declare([["v", "f32"], ["idx", "i32"], ["out", "f32"]])}
${entry1d(WG)} {
  ${linearIndex(WG)}
  if (gid >= ${n}u) { return; }
  let e = i32(gid % ${E}u);
  let base = (gid / ${E}u) * ${k}u;
  var s = 0.0;
  for (var j = 0u; j < ${k}u; j++) {
    if (idx[base + j] == e) { s += v[base + j]; }
  }
  out[gid] = s;
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
