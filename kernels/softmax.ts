/**
 * WGSL for softmax, log_softmax, cross_entropy and their backward ops.
 *
 * One workgroup per row, its threads striding over the row in chunks (so rows of any length work,
 * e.g. a 152k vocabulary, without holding the row in workgroup memory). Forward: one pass that keeps
 * an online (max, Σ exp) per thread, merged through workgroup memory, then one pass writing the
 * output; cross-entropy writes only the row's loss and log-sum-exp. Backward: one pass per row
 * (softmax/log_softmax add a reduction pass first); cross_entropy_bwd writes dlogits in one pass.
 * @module
 */
import type { CrossEntropyAttrs } from "../engine/graph/ops/softmax.ts";
import { type BindingRef, grid, type Launch, loadF32, type Lowering, requireDtypes } from "./kernel.ts";
import { rowsOfLastAxis as rowsOf } from "../engine/graph/ops/norm.ts";
import { type Bind, launch, rowEntry, rowWg, wgSum } from "./norm.ts";

const LOWEST = "-3.40282347e38";

/** WGSL: `wg_lse(lid, m, s)` merges per-thread (max, Σ exp(x − max)) pairs over the workgroup. */
function wgLse(wg: number): string {
  return `var<workgroup> rmax: array<f32, ${wg}>;
var<workgroup> rsum: array<f32, ${wg}>;
fn wg_lse(lid: u32, m0: f32, s0: f32) -> vec2<f32> {
  rmax[lid] = m0;
  rsum[lid] = s0;
  workgroupBarrier();
  for (var k = ${wg / 2}u; k > 0u; k = k >> 1u) {
    if (lid < k) {
      let a = rmax[lid];
      let b = rmax[lid + k];
      let m = max(a, b);
      rsum[lid] = rsum[lid] * exp(a - m) + rsum[lid + k] * exp(b - m);
      rmax[lid] = m;
    }
    workgroupBarrier();
  }
  let r = vec2<f32>(rmax[0], rsum[0]);
  workgroupBarrier();
  return r;
}`;
}

/** WGSL lines: this thread's online max `m` and sum `s` over its strided elements `read(j)` of a row. */
function onlineLoop(D: number, wg: number, read: string): string {
  return `var m = ${LOWEST};
  var s = 0.0;
  for (var j = lid; j < ${D}u; j += ${wg}u) {
    let v = ${read};
    if (v > m) { s = s * exp(m - v) + 1.0; m = v; } else { s += exp(v - m); }
  }`;
}

function softmaxFwd(log: boolean): Lowering {
  return ({ inputs: [x], outputs: [y] }, ctx) => {
    requireDtypes(log ? "log_softmax" : "softmax", [x, y], ["f32"]);
    const { R, D } = rowsOf(x);
    const wg = rowWg(D);
    const write = log ? "x[base + j] - ml.x - log(ml.y)" : "exp(x[base + j] - ml.x) * inv";
    const body = `${wgLse(wg)}
${rowEntry(wg, R)}
  let base = row * ${D}u;
  ${onlineLoop(D, wg, "x[base + j]")}
  let ml = wg_lse(lid, m, s);
  let inv = 1.0 / ml.y;
  for (var j = lid; j < ${D}u; j += ${wg}u) { y[base + j] = ${write}; }
}`;
    const binds: Bind[] = [["x", "f32", { input: 0 }], ["y", "f32", { output: 0 }]];
    return { launches: [launch(binds, body, grid(R, ctx.maxWorkgroupsPerDim))] };
  };
}

function softmaxBwd(log: boolean): Lowering {
  return ({ inputs: [dy, y], outputs: [dx] }, ctx) => {
    requireDtypes(log ? "log_softmax_bwd" : "softmax_bwd", [dy, y, dx], ["f32"]);
    const { R, D } = rowsOf(y);
    const wg = rowWg(D);
    const term = log ? "dy[base + j]" : "dy[base + j] * y[base + j]";
    const write = log ? "dy[base + j] - exp(y[base + j]) * t" : "y[base + j] * (dy[base + j] - t)";
    const body = `${wgSum(wg)}
${rowEntry(wg, R)}
  let base = row * ${D}u;
  var s = 0.0;
  for (var j = lid; j < ${D}u; j += ${wg}u) { s += ${term}; }
  let t = wg_sum(lid, s);
  for (var j = lid; j < ${D}u; j += ${wg}u) { dx[base + j] = ${write}; }
}`;
    const binds: Bind[] = [["dy", "f32", { input: 0 }], ["y", "f32", { input: 1 }], ["dx", "f32", { output: 0 }]];
    return { launches: [launch(binds, body, grid(R, ctx.maxWorkgroupsPerDim))] };
  };
}

/** WGSL: whether label `t` (i32) counts for a vocabulary of V. */
const counts = (t: string, V: number, ignore: number) => `(${t} != ${ignore | 0} && ${t} >= 0 && ${t} < ${V})`;

/** One workgroup: Σ rowloss over the rows and the count of counted labels, reduced into `loss[0]`. */
function ceReduce(N: number, V: number, a: CrossEntropyAttrs, rowloss: BindingRef): Launch {
  const fin = a.reduction === "mean" ? "tot.x / max(tot.y, 1.0)" : "tot.x";
  const binds: Bind[] = [["labels", "i32", { input: 1 }], ["rowloss", "f32", rowloss], ["loss", "f32", { output: 0 }]];
  return launch(
    binds,
    `${wgSum(256, "vec2<f32>")}
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>) {
  let lid = lid3.x;
  var acc = vec2<f32>(0.0);
  for (var r = lid; r < ${N}u; r += 256u) {
    let t = labels[r];
    if ${counts("t", V, a.ignoreIndex)} { acc += vec2<f32>(rowloss[r], 1.0); }
  }
  let tot = wg_sum(lid, acc);
  if (lid == 0u) { loss[0] = ${fin}; }
}`,
    [1, 1, 1],
  );
}

const crossEntropy: Lowering<CrossEntropyAttrs> = ({ inputs: [x], outputs: [loss, lse], attrs }, ctx) => {
  requireDtypes("cross_entropy", [x], ["f32", "f16", "bf16"]);
  requireDtypes("cross_entropy", [loss, lse], ["f32"]);
  const [N, V] = x.shape;
  const wg = rowWg(V);
  const none = attrs.reduction === "none";
  const rowloss: BindingRef = none ? { output: 0 } : { scratch: 0 };
  const X = (j: string) => loadF32("x", x.dtype, `base + ${j}`);
  const binds: Bind[] = [
    ["x", x.dtype, { input: 0 }],
    ["labels", "i32", { input: 1 }],
    ["rowloss", "f32", rowloss],
    ["lse", "f32", { output: 1 }],
  ];
  const body = `${wgLse(wg)}
var<workgroup> label: i32;
${rowEntry(wg, N)}
  if (lid == 0u) { label = labels[row]; }
  let t = workgroupUniformLoad(&label);
  if (!${counts("t", V, attrs.ignoreIndex)}) {
    if (lid == 0u) { lse[row] = 0.0; rowloss[row] = 0.0; }
    return;
  }
  let base = row * ${V}u;
  ${onlineLoop(V, wg, X("j"))}
  let ml = wg_lse(lid, m, s);
  if (lid == 0u) {
    let l = ml.x + log(ml.y);
    lse[row] = l;
    rowloss[row] = l - ${X("u32(t)")};
  }
}`;
  const launches = [launch(binds, body, grid(N, ctx.maxWorkgroupsPerDim))];
  if (none) return { launches };
  launches.push(ceReduce(N, V, attrs, rowloss));
  return { launches, scratch: [N * 4] };
};

const crossEntropyBwd: Lowering<CrossEntropyAttrs> = ({ inputs: [g, x, , lse], outputs: [dl], attrs }, ctx) => {
  requireDtypes("cross_entropy_bwd", [x], ["f32", "f16", "bf16"]);
  requireDtypes("cross_entropy_bwd", [g, lse, dl], ["f32"]);
  const [N, V] = x.shape;
  const wg = rowWg(V);
  const mean = attrs.reduction === "mean";
  const launches: Launch[] = [];
  if (mean) {
    const binds: Bind[] = [["labels", "i32", { input: 2 }], ["cnt", "f32", { scratch: 0 }]];
    launches.push(launch(
      binds,
      `${wgSum(256)}
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>) {
  let lid = lid3.x;
  var c = 0.0;
  for (var r = lid; r < ${N}u; r += 256u) { let t = labels[r]; if ${counts("t", V, attrs.ignoreIndex)} { c += 1.0; } }
  let tot = wg_sum(lid, c);
  if (lid == 0u) { cnt[0] = tot; }
}`,
      [1, 1, 1],
    ));
  }
  const scale = mean ? "g[0] / max(cnt[0], 1.0)" : attrs.reduction === "sum" ? "g[0]" : "g[row]";
  const binds: Bind[] = [
    ["g", "f32", { input: 0 }],
    ["x", x.dtype, { input: 1 }],
    ["labels", "i32", { input: 2 }],
    ["lse", "f32", { input: 3 }],
    ["dl", "f32", { output: 0 }],
  ];
  if (mean) binds.push(["cnt", "f32", { scratch: 0 }]);
  const body = `${rowEntry(wg, N)}
  let base = row * ${V}u;
  let t = labels[row];
  if (!${counts("t", V, attrs.ignoreIndex)}) {
    for (var j = lid; j < ${V}u; j += ${wg}u) { dl[base + j] = 0.0; }
    return;
  }
  let k = ${scale};
  let l = lse[row];
  let tj = u32(t);
  for (var j = lid; j < ${V}u; j += ${wg}u) {
    dl[base + j] = (exp(${loadF32("x", x.dtype, "base + j")} - l) - select(0.0, 1.0, j == tj)) * k;
  }
}`;
  launches.push(launch(binds, body, grid(N, ctx.maxWorkgroupsPerDim)));
  return { launches, scratch: mean ? [4] : undefined };
};

/** Lowerings of this family by op name. */
export const lowerings: Record<string, Lowering> = {
  softmax: softmaxFwd(false),
  log_softmax: softmaxFwd(true),
  softmax_bwd: softmaxBwd(false),
  log_softmax_bwd: softmaxBwd(true),
  cross_entropy: crossEntropy as Lowering,
  cross_entropy_bwd: crossEntropyBwd as Lowering,
};
