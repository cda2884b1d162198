/**
 * WGSL for rms_norm and layer_norm, forward and backward.
 *
 * Row kernels: one workgroup per row, its threads striding over the row (coalesced), statistics
 * reduced through workgroup memory; forward is two passes over x (three for layer norm's two-pass
 * variance), dx is two passes over dy and x. Weight/bias gradients are column reductions over all
 * rows without atomics: rows are split into at most {@link MAX_CHUNKS} chunks, one workgroup per
 * (256 columns, chunk) writes partial sums to scratch, and a second launch sums the chunks per column.
 * Also exports the row-kernel helpers the softmax family reuses.
 * @module
 */
import type { DType } from "../engine/graph/types.ts";
import {
  type LayerNormAttrs,
  type LayerNormBwdAttrs,
  type RmsNormAttrs,
  type RmsNormBwdAttrs,
  rowsOfLastAxis as rowsOf,
} from "../engine/graph/ops/norm.ts";
import {
  type BindingRef,
  declare,
  grid,
  type Launch,
  loadF32,
  type Lowered,
  type Lowering,
  requireDtypes,
} from "./kernel.ts";

/** A WGSL f32 literal for `v`. */
export function fl(v: number): string {
  if (!Number.isFinite(v)) throw new Error(`cannot bake ${v} into WGSL as a literal`);
  const s = String(v);
  return /[.e]/.test(s) ? s : `${s}.0`;
}

/** Workgroup size of a per-row kernel: a power of two in [32, 256], about a quarter of the row length. */
export function rowWg(D: number): number {
  let w = 32;
  while (w < 256 && w * 4 < D) w *= 2;
  return w;
}

/**
 * WGSL: `wg_sum(lid, v)`, the sum of `v` over the workgroup (of size `wg`, a power of two) through
 * workgroup memory; every thread gets the total. Call from uniform control flow.
 */
export function wgSum(wg: number, type: "f32" | "vec2<f32>" = "f32"): string {
  return `var<workgroup> red: array<${type}, ${wg}>;
fn wg_sum(lid: u32, v: ${type}) -> ${type} {
  red[lid] = v;
  workgroupBarrier();
  for (var s = ${wg / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] = red[lid] + red[lid + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}`;
}

/** Entry of a row kernel: one workgroup per row over a 2-D grid; defines `row` and `lid`, returns past `R`. */
export function rowEntry(wg: number, R: number): string {
  return `@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid3: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = wid.x + wid.y * nwg.x;
  let lid = lid3.x;
  if (row >= ${R}u) { return; }`;
}

/** A binding of a row kernel: WGSL name, dtype, what it binds. */
export type Bind = [string, DType, BindingRef];

/** A launch whose bindings are declared in order from `binds`, followed by `body`. */
export function launch(binds: readonly Bind[], body: string, workgroups: readonly [number, number, number]): Launch {
  return {
    code: `${declare(binds.map(([n, d]) => [n, d] as [string, DType]))}\n${body}`,
    bindings: binds.map((b) => b[2]),
    workgroups,
  };
}

/** Most row chunks of a column reduction (its scratch is chunks × terms × D floats). */
export const MAX_CHUNKS = 64;
const CWG = 256;

/**
 * Column sums over R rows of per-element `terms` (WGSL expressions of `i` = r·D + j and `r`), written
 * to `outs[t]` [D]. `ins` are the bindings the terms read.
 */
function columnReduce(
  R: number,
  D: number,
  ins: readonly Bind[],
  terms: readonly string[],
  outs: readonly number[],
  maxPerDim: number,
): Lowered {
  const rc = Math.max(16, Math.ceil(R / MAX_CHUNKS));
  const C = Math.max(1, Math.ceil(R / rc));
  const T = terms.length;
  const direct = C === 1;
  const dst: Bind[] = direct
    ? outs.map((o, t) => [`out${t}`, "f32", { output: o }] as Bind)
    : [["part", "f32", { scratch: 0 }]];
  const store = (t: number) => direct ? `out${t}[j] = a${t};` : `part[(${t * C}u + c) * ${D}u + j] = a${t};`;
  // Auto layouts drop unused bindings, so bind only what the terms read.
  const used = ins.filter(([n]) => terms.some((e) => new RegExp(`\\b${n}\\[`).test(e)));
  const first = launch(
    [...used, ...dst],
    `@compute @workgroup_size(${CWG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let j = wid.x * ${CWG}u + lid.x;
  let c = wid.y;
  if (j >= ${D}u) { return; }
  let r1 = min(c * ${rc}u + ${rc}u, ${R}u);
  ${terms.map((_, t) => `var a${t} = 0.0;`).join(" ")}
  for (var r = c * ${rc}u; r < r1; r++) {
    let i = r * ${D}u + j;
    ${terms.map((e, t) => `a${t} += ${e};`).join("\n    ")}
  }
  ${terms.map((_, t) => store(t)).join("\n  ")}
}`,
    [Math.ceil(D / CWG), C, 1],
  );
  if (direct) return { launches: [first] };
  const second = launch(
    [["part", "f32", { scratch: 0 }], ...outs.map((o, t) => [`out${t}`, "f32", { output: o }] as Bind)],
    `@compute @workgroup_size(${CWG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let j = (wid.x + wid.y * nwg.x) * ${CWG}u + lid.x;
  if (j >= ${D}u) { return; }
  ${terms.map((_, t) => `var a${t} = 0.0;`).join(" ")}
  for (var c = 0u; c < ${C}u; c++) {
    ${terms.map((_, t) => `a${t} += part[(${t * C}u + c) * ${D}u + j];`).join("\n    ")}
  }
  ${terms.map((_, t) => `out${t}[j] = a${t};`).join("\n  ")}
}`,
    grid(Math.ceil(D / CWG), maxPerDim),
  );
  return { launches: [first, second], scratch: [T * C * D * 4] };
}

const rmsNorm: Lowering<RmsNormAttrs> = ({ inputs: [x, w], outputs: [y], attrs }, ctx) => {
  requireDtypes("rms_norm", [x, y], ["f32"]);
  const { R, D } = rowsOf(x);
  const wg = rowWg(D);
  const scale = w ? `(${fl(attrs.offset)} + ${loadF32("w", w.dtype, "j")})` : "1.0";
  const binds: Bind[] = [["x", "f32", { input: 0 }]];
  if (w) binds.push(["w", w.dtype, { input: 1 }]);
  binds.push(["y", "f32", { output: 0 }], ["rstd", "f32", { output: 1 }]);
  const body = `${wgSum(wg)}
${rowEntry(wg, R)}
  let base = row * ${D}u;
  var ss = 0.0;
  for (var j = lid; j < ${D}u; j += ${wg}u) { let v = x[base + j]; ss += v * v; }
  let rs = inverseSqrt(wg_sum(lid, ss) / ${fl(D)} + ${fl(attrs.eps)});
  for (var j = lid; j < ${D}u; j += ${wg}u) { y[base + j] = x[base + j] * rs * ${scale}; }
  if (lid == 0u) { rstd[row] = rs; }
}`;
  return { launches: [launch(binds, body, grid(R, ctx.maxWorkgroupsPerDim))] };
};

const rmsNormBwd: Lowering<RmsNormBwdAttrs> = ({ inputs: [dy, x, rstd, w], outputs, attrs }, ctx) => {
  requireDtypes("rms_norm_bwd", [dy, x, rstd, ...outputs], ["f32"]);
  const { R, D } = rowsOf(x);
  const launches: Launch[] = [];
  let scratch: readonly number[] | undefined;
  const ins: Bind[] = [["dy", "f32", { input: 0 }], ["x", "f32", { input: 1 }], ["rstd", "f32", { input: 2 }]];
  if (attrs.dx) {
    const wg = rowWg(D);
    const binds: Bind[] = [...ins];
    if (w) binds.push(["w", w.dtype, { input: 3 }]);
    binds.push(["dx", "f32", { output: 0 }]);
    const gy = w ? `dy[base + j] * (${fl(attrs.offset)} + ${loadF32("w", w.dtype, "j")})` : "dy[base + j]";
    const body = `${wgSum(wg)}
${rowEntry(wg, R)}
  let base = row * ${D}u;
  let rs = rstd[row];
  var s = 0.0;
  for (var j = lid; j < ${D}u; j += ${wg}u) { s += ${gy} * x[base + j]; }
  let m = wg_sum(lid, s) * rs / ${fl(D)};
  for (var j = lid; j < ${D}u; j += ${wg}u) { dx[base + j] = rs * (${gy} - x[base + j] * rs * m); }
}`;
    launches.push(launch(binds, body, grid(R, ctx.maxWorkgroupsPerDim)));
  }
  if (attrs.dw) {
    const cr = columnReduce(R, D, ins, ["dy[i] * x[i] * rstd[r]"], [attrs.dx ? 1 : 0], ctx.maxWorkgroupsPerDim);
    launches.push(...cr.launches);
    scratch = cr.scratch;
  }
  return { launches, scratch };
};

const layerNorm: Lowering<LayerNormAttrs> = ({ inputs, outputs: [y], attrs }, ctx) => {
  const x = inputs[0];
  requireDtypes("layer_norm", [x, y], ["f32"]);
  const { R, D } = rowsOf(x);
  const wg = rowWg(D);
  const binds: Bind[] = [["x", "f32", { input: 0 }]];
  if (attrs.hasW) binds.push(["w", inputs[1].dtype, { input: 1 }]);
  if (attrs.hasB) binds.push(["b", inputs[binds.length].dtype, { input: binds.length }]);
  binds.push(["y", "f32", { output: 0 }], ["mean", "f32", { output: 1 }], ["rstd", "f32", { output: 2 }]);
  const wj = attrs.hasW ? ` * ${loadF32("w", inputs[1].dtype, "j")}` : "";
  const bj = attrs.hasB ? ` + ${loadF32("b", inputs[inputs.length - 1].dtype, "j")}` : "";
  const body = `${wgSum(wg)}
${rowEntry(wg, R)}
  let base = row * ${D}u;
  var s = 0.0;
  for (var j = lid; j < ${D}u; j += ${wg}u) { s += x[base + j]; }
  let mu = wg_sum(lid, s) / ${fl(D)};
  var v = 0.0;
  for (var j = lid; j < ${D}u; j += ${wg}u) { let d = x[base + j] - mu; v += d * d; }
  let rs = inverseSqrt(wg_sum(lid, v) / ${fl(D)} + ${fl(attrs.eps)});
  for (var j = lid; j < ${D}u; j += ${wg}u) { y[base + j] = (x[base + j] - mu) * rs${wj}${bj}; }
  if (lid == 0u) { mean[row] = mu; rstd[row] = rs; }
}`;
  return { launches: [launch(binds, body, grid(R, ctx.maxWorkgroupsPerDim))] };
};

const layerNormBwd: Lowering<LayerNormBwdAttrs> = ({ inputs: [dy, x, mean, rstd, w], outputs, attrs }, ctx) => {
  requireDtypes("layer_norm_bwd", [dy, x, mean, rstd, ...outputs], ["f32"]);
  const { R, D } = rowsOf(x);
  const launches: Launch[] = [];
  let scratch: readonly number[] | undefined;
  const ins: Bind[] = [
    ["dy", "f32", { input: 0 }],
    ["x", "f32", { input: 1 }],
    ["mean", "f32", { input: 2 }],
    ["rstd", "f32", { input: 3 }],
  ];
  if (attrs.dx) {
    const wg = rowWg(D);
    const binds: Bind[] = [...ins];
    if (attrs.hasW) binds.push(["w", w.dtype, { input: 4 }]);
    binds.push(["dx", "f32", { output: 0 }]);
    const gy = attrs.hasW ? `dy[base + j] * ${loadF32("w", w.dtype, "j")}` : "dy[base + j]";
    const body = `${wgSum(wg, "vec2<f32>")}
${rowEntry(wg, R)}
  let base = row * ${D}u;
  let mu = mean[row];
  let rs = rstd[row];
  var s = vec2<f32>(0.0);
  for (var j = lid; j < ${D}u; j += ${wg}u) { let g = ${gy}; s += vec2<f32>(g, g * (x[base + j] - mu) * rs); }
  let m = wg_sum(lid, s) / ${fl(D)};
  for (var j = lid; j < ${D}u; j += ${wg}u) {
    dx[base + j] = rs * (${gy} - m.x - (x[base + j] - mu) * rs * m.y);
  }
}`;
    launches.push(launch(binds, body, grid(R, ctx.maxWorkgroupsPerDim)));
  }
  const terms: string[] = [], outs: number[] = [];
  let k = attrs.dx ? 1 : 0;
  if (attrs.dw) terms.push("dy[i] * (x[i] - mean[r]) * rstd[r]"), outs.push(k++);
  if (attrs.db) terms.push("dy[i]"), outs.push(k++);
  if (terms.length) {
    const cr = columnReduce(R, D, ins, terms, outs, ctx.maxWorkgroupsPerDim);
    launches.push(...cr.launches);
    scratch = cr.scratch;
  }
  return { launches, scratch };
};

/** Lowerings of this family by op name. */
export const lowerings: Record<string, Lowering> = {
  rms_norm: rmsNorm as Lowering,
  rms_norm_bwd: rmsNormBwd as Lowering,
  layer_norm: layerNorm as Lowering,
  layer_norm_bwd: layerNormBwd as Lowering,
};
