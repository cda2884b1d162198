/**
 * Flash attention, "tiles" form: the per-block products are done matmul-style, each thread owning a
 * register block, with the streamed operand read per thread and the other one uniform across the
 * workgroup (what software adapters such as lavapipe run fastest: one scalar load per SIMD batch).
 *
 * Forward, one workgroup per (batch, query head, block of BQ queries), T = D4·RG threads:
 * 1. S: thread t takes key kb + t and computes its score against all BQ queries (BQ accumulators,
 *    q rows uniform), masked and soft-capped, into a BQ×T tile in workgroup memory;
 * 2. row statistics: one thread per query row updates the running max and sum and turns its scores
 *    into probabilities in place;
 * 3. O += P·V: thread (g, c) owns vec4 column c of BQ/RG query rows (V rows per thread, P uniform).
 * Backward: dQ the same way (S and dP = dO·Vᵀ in step 1, dS in the tile, dQ += dS·K in step 3);
 * dK, dV with the roles swapped (a workgroup per key block, threads over queries in step 1).
 * @module
 */
import type { AttentionAttrs, AttentionBwdAttrs, AttentionDims } from "../engine/graph/ops/attention.ts";
import { type BindingRef, declare, grid, type KernelContext, type Launch } from "./kernel.ts";
import { attentionPrelude, keyRange, scoreCode, storeRow, visibleExpr } from "./attention_fwd.ts";

/** Block sizes of the tiles form. */
export interface TileShape {
  /** Rows (queries, or keys for dK/dV) a workgroup owns. */
  rows: number;
  /** Row groups: T = D4·rg threads; each thread of step 3 owns rows/rg rows. */
  rg: number;
}

const range = (n: number) => [...Array(n).keys()];

type Bind = { name: string; dtype?: "i32"; ref: BindingRef };

function launch(d: AttentionDims, a: AttentionAttrs, binds: Bind[], body: string, n: number, ctx: KernelContext, rows: string[]): Launch {
  return {
    code: `${declare(binds.map((x) => [x.name, x.dtype ?? "f32"] as [string, "f32" | "i32"]))}
${attentionPrelude(d, a, rows)}
${body}`,
    bindings: binds.map((x) => x.ref),
    workgroups: grid(n, ctx.maxWorkgroupsPerDim),
  };
}

const entry = (t: number) =>
  `@compute @workgroup_size(${t})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>)`;

/** Forward, tiles form. */
export function tilesForward(d: AttentionDims, a: AttentionAttrs, sh: TileShape, ctx: KernelContext): Launch {
  const d4 = Math.ceil(d.D / 4);
  const { rows: bq, rg } = sh;
  const T = d4 * rg, rpt = bq / rg;
  const nqb = Math.ceil(d.L / bq);
  const nwg = nqb * d.Hq * d.B;
  const kr = keyRange(a, "q0", bq);
  const binds: Bind[] = [{ name: "Q", ref: { input: 0 } }, { name: "K", ref: { input: 1 } }, { name: "V", ref: { input: 2 } }];
  if (a.segmented) binds.push({ name: "SEG", dtype: "i32", ref: { input: 3 } });
  binds.push({ name: "O", ref: { output: 0 } }, { name: "LSE", ref: { output: 1 } });
  const R = range(bq), K = range(rpt);
  const row = (k: number) => (rg === 1 ? `${k}u` : `g * ${rpt}u + ${k}u`);
  const body = `const BQ = ${bq}u;
const T = ${T}u;
var<workgroup> ps: array<f32, ${bq * T}>;
${entry(T)} {
  let w = wid.x + wid.y * nwg.x;
  if (w >= ${nwg}u) { return; }
  let q0 = (w % ${nqb}u) * BQ;
  let h = (w / ${nqb}u) % HQ;
  let b = w / ${nqb * d.Hq}u;
  let hk = h / GRP;
  let t = lid.x;
  let c = t % D4;
  let g = t / D4;
  ${R.map((r) => `let qo${r} = ((b * L + min(q0 + ${r}u, L - 1u)) * HQ + h) * D;`).join("\n  ")}
  ${a.segmented ? R.map((r) => `let si${r} = SEG[b * L + min(q0 + ${r}u, L - 1u)];`).join("\n  ") : ""}
  // Running max and sum of every row of the block (the same in every thread), this thread's O rows.
  ${R.map((r) => `var m${r} = NEG; var l${r} = 0.0;`).join("\n  ")}
  ${K.map((k) => `var o${k} = vec4<f32>(0.0);`).join("\n  ")}
  let kEnd = ${kr.end};
  for (var kb = (${kr.start} / T) * T; kb < kEnd; kb += T) {
    // 1. scores of key j = kb + t against the block's queries (q rows uniform)
    let j = kb + t;
    let ko = ((b * L + min(j, L - 1u)) * HKV + hk) * D;
    ${a.segmented ? "let sj = SEG[b * L + min(j, L - 1u)];" : ""}
    ${R.map((r) => `var s${r} = 0.0;`).join("\n    ")}
    for (var cc = 0u; cc < D4; cc++) {
      let kc = ld_K(ko, cc);
      ${R.map((r) => `s${r} += dot(ld_Q(qo${r}, cc), kc);`).join("\n      ")}
    }
    ${
    R.map((r) =>
      `{ let i = q0 + ${r}u; ${scoreCode(a, `s${r} * SCALE`)}
      s${r} = select(NEG, s, i < L && ${visibleExpr(a, "i", "j", `si${r}`, "sj")}); }
    ps[${r}u * T + t] = s${r};`
    ).join("\n    ")
  }
    workgroupBarrier();
    // 2. new row maxima (uniform reads), this key's probabilities
    ${R.map((r) => `var mb${r} = m${r};`).join("\n    ")}
    for (var u = 0u; u < T; u++) {
      ${R.map((r) => `mb${r} = max(mb${r}, ps[${r}u * T + u]);`).join("\n      ")}
    }
    workgroupBarrier();
    ${R.map((r) => `ps[${r}u * T + t] = select(0.0, exp(s${r} - mb${r}), s${r} > HALF_NEG);`).join("\n    ")}
    ${R.map((r) => `let al${r} = exp(m${r} - mb${r}); m${r} = mb${r}; l${r} = l${r} * al${r};`).join("\n    ")}
    workgroupBarrier();
    // 3. O += P·V on this thread's rows and column chunk; row sums from the same uniform reads
    ${rg === 1 ? "" : `var alv = array<f32, ${bq}>(${R.map((r) => `al${r}`).join(", ")});`}
    ${K.map((k) => `o${k} = o${k} * ${rg === 1 ? `al${k}` : `alv[${row(k)}]`};`).join("\n    ")}
    for (var u = 0u; u < T; u++) {
      let v = ld_V(((b * L + min(kb + u, L - 1u)) * HKV + hk) * D, c);
      ${R.map((r) => `let p${r} = ps[${r}u * T + u]; l${r} += p${r};`).join("\n      ")}
      ${K.map((k) => `o${k} += ${rg === 1 ? `p${k}` : `ps[(${row(k)}) * T + u]`} * v;`).join("\n      ")}
    }
    workgroupBarrier();
  }
  ${rg === 1 ? "" : `var lv = array<f32, ${bq}>(${R.map((r) => `l${r}`).join(", ")});
  var mv = array<f32, ${bq}>(${R.map((r) => `m${r}`).join(", ")});`}
  ${
    K.map((k) =>
      `{ let r = ${row(k)}; let i = q0 + r;
    let lr = ${rg === 1 ? `l${k}` : "lv[r]"};
    if (i < L) {
      let qo = ((b * L + i) * HQ + h) * D;
      ${storeRow("O", d.D, "qo", `o${k} * select(0.0, 1.0 / lr, lr > 0.0)`)}
      if (c == 0u) { LSE[(b * HQ + h) * L + i] = select(0.0, ${rg === 1 ? `m${k}` : "mv[r]"} + log(lr), lr > 0.0); }
    } }`
    ).join("\n  ")
  }
}`;
  return launch(d, a, binds, body, nwg, ctx, ["Q", "K", "V"]);
}

/** dQ, tiles form: like the forward with dS = P ∘ (dO·Vᵀ − Δ) in the tile and dQ += dS·K. */
export function tilesDq(d: AttentionDims, a: AttentionBwdAttrs, sh: TileShape, ctx: KernelContext, common: Bind[]): Launch {
  const d4 = Math.ceil(d.D / 4);
  const { rows: bq, rg } = sh;
  const T = d4 * rg, rpt = bq / rg;
  const nqb = Math.ceil(d.L / bq);
  const nwg = nqb * d.Hq * d.B;
  const kr = keyRange(a, "q0", bq);
  const R = range(bq), K = range(rpt);
  const body = `const BQ = ${bq}u;
const T = ${T}u;
var<workgroup> ps: array<f32, ${bq * T}>;
${entry(T)} {
  let w = wid.x + wid.y * nwg.x;
  if (w >= ${nwg}u) { return; }
  let q0 = (w % ${nqb}u) * BQ;
  let h = (w / ${nqb}u) % HQ;
  let b = w / ${nqb * d.Hq}u;
  let hk = h / GRP;
  let t = lid.x;
  let c = t % D4;
  let g = t / D4;
  ${R.map((r) => `let qo${r} = ((b * L + min(q0 + ${r}u, L - 1u)) * HQ + h) * D;`).join("\n  ")}
  ${R.map((r) => `let ro${r} = 2u * ((b * HQ + h) * L + min(q0 + ${r}u, L - 1u));`).join("\n  ")}
  ${R.map((r) => `let lse${r} = SCR[ro${r}]; let dl${r} = SCR[ro${r} + 1u];`).join("\n  ")}
  ${a.segmented ? R.map((r) => `let si${r} = SEG[b * L + min(q0 + ${r}u, L - 1u)];`).join("\n  ") : ""}
  ${K.map((k) => `var dq${k} = vec4<f32>(0.0);`).join("\n  ")}
  let kEnd = ${kr.end};
  for (var kb = (${kr.start} / T) * T; kb < kEnd; kb += T) {
    let j = kb + t;
    let ko = ((b * L + min(j, L - 1u)) * HKV + hk) * D;
    ${a.segmented ? "let sj = SEG[b * L + min(j, L - 1u)];" : ""}
    ${R.map((r) => `var s${r} = 0.0; var dp${r} = 0.0;`).join("\n    ")}
    for (var cc = 0u; cc < D4; cc++) {
      let kc = ld_K(ko, cc);
      let vc = ld_V(ko, cc);
      ${R.map((r) => `s${r} += dot(ld_Q(qo${r}, cc), kc); dp${r} += dot(ld_DO(qo${r}, cc), vc);`).join("\n      ")}
    }
    ${
    R.map((r) =>
      `{ let i = q0 + ${r}u; ${scoreCode(a, `s${r} * SCALE`)}
      let ds = exp(s - lse${r}) * (dp${r} - dl${r}) * dsda;
      ps[${r}u * T + t] = select(0.0, ds, i < L && ${visibleExpr(a, "i", "j", `si${r}`, "sj")}); }`
    ).join("\n    ")
  }
    workgroupBarrier();
    for (var u = 0u; u < T; u++) {
      let kv = ld_K(((b * L + min(kb + u, L - 1u)) * HKV + hk) * D, c);
      ${K.map((k) => `dq${k} += ps[(${rg === 1 ? `${k}u` : `g * ${rpt}u + ${k}u`}) * T + u] * kv;`).join("\n      ")}
    }
    workgroupBarrier();
  }
  ${
    K.map((k) =>
      `{ let i = q0 + g * ${rpt}u + ${k}u;
    if (i < L) { let qo = ((b * L + i) * HQ + h) * D; ${storeRow("DQ", d.D, "qo", `dq${k} * SCALE`)} } }`
    ).join("\n  ")
  }
}`;
  return launch(d, a, [...common, { name: "DQ", ref: { output: 0 } }], body, nwg, ctx, ["Q", "K", "V", "DO"]);
}

/**
 * dK, dV, tiles form: a workgroup per (batch, kv head, block of BKV keys); for each query head of
 * the group and each block of T queries that can see the keys, thread t takes query qb + t and
 * computes P and dS against all the block's keys (k, v rows uniform) into two tiles, then thread
 * (g, c) adds dV += Pᵀ·dO and dK += dSᵀ·Q on its keys and column chunk.
 */
export function tilesDkv(d: AttentionDims, a: AttentionBwdAttrs, sh: TileShape, ctx: KernelContext, common: Bind[]): Launch {
  const d4 = Math.ceil(d.D / 4);
  const { rows: bkv, rg } = sh;
  const T = d4 * rg, rpt = bkv / rg;
  const nkb = Math.ceil(d.L / bkv);
  const nwg = nkb * d.Hkv * d.B;
  const R = range(bkv), K = range(rpt);
  const body = `const BKV = ${bkv}u;
const T = ${T}u;
var<workgroup> pt: array<f32, ${bkv * T}>;
var<workgroup> dt: array<f32, ${bkv * T}>;
${entry(T)} {
  let w = wid.x + wid.y * nwg.x;
  if (w >= ${nwg}u) { return; }
  let k0 = (w % ${nkb}u) * BKV;
  let hk = (w / ${nkb}u) % HKV;
  let b = w / ${nkb * d.Hkv}u;
  let t = lid.x;
  let c = t % D4;
  let g = t / D4;
  ${R.map((r) => `let ko${r} = ((b * L + min(k0 + ${r}u, L - 1u)) * HKV + hk) * D;`).join("\n  ")}
  ${a.segmented ? R.map((r) => `let sj${r} = SEG[b * L + min(k0 + ${r}u, L - 1u)];`).join("\n  ") : ""}
  ${K.map((k) => `var dk${k} = vec4<f32>(0.0); var dv${k} = vec4<f32>(0.0);`).join("\n  ")}
  let qStart = ${a.causal ? "k0" : "0u"};
  let qEnd = ${a.window ? "min(L, k0 + BKV - 1u + WIN)" : "L"};
  for (var gi = 0u; gi < GRP; gi++) {
    let h = hk * GRP + gi;
    for (var qb = qStart; qb < qEnd; qb += T) {
      let i = qb + t;
      let qo = ((b * L + min(i, L - 1u)) * HQ + h) * D;
      let ro = 2u * ((b * HQ + h) * L + min(i, L - 1u));
      let lse = SCR[ro];
      let dl = SCR[ro + 1u];
      ${a.segmented ? "let si = SEG[b * L + min(i, L - 1u)];" : ""}
      ${R.map((r) => `var s${r} = 0.0; var dp${r} = 0.0;`).join("\n      ")}
      for (var cc = 0u; cc < D4; cc++) {
        let qc = ld_Q(qo, cc);
        let oc = ld_DO(qo, cc);
        ${R.map((r) => `s${r} += dot(qc, ld_K(ko${r}, cc)); dp${r} += dot(oc, ld_V(ko${r}, cc));`).join("\n        ")}
      }
      ${
    R.map((r) =>
      `{ let j = k0 + ${r}u; ${scoreCode(a, `s${r} * SCALE`)}
        let vis = i < L && ${visibleExpr(a, "i", "j", "si", `sj${r}`)};
        let p = select(0.0, exp(s - lse), vis);
        pt[${r}u * T + t] = p;
        dt[${r}u * T + t] = select(0.0, p * (dp${r} - dl) * dsda, vis); }`
    ).join("\n      ")
  }
      workgroupBarrier();
      for (var u = 0u; u < T; u++) {
        let qu = ((b * L + min(qb + u, L - 1u)) * HQ + h) * D;
        let qv = ld_Q(qu, c);
        let ov = ld_DO(qu, c);
        ${K.map((k) => `{ let r = (${rg === 1 ? `${k}u` : `g * ${rpt}u + ${k}u`}) * T + u; dv${k} += pt[r] * ov; dk${k} += dt[r] * qv; }`).join("\n        ")}
      }
      workgroupBarrier();
    }
  }
  ${
    K.map((k) =>
      `{ let j = k0 + g * ${rpt}u + ${k}u;
    if (j < L) {
      let ko = ((b * L + j) * HKV + hk) * D;
      ${storeRow("DK", d.D, "ko", `dk${k} * SCALE`)}
      ${storeRow("DV", d.D, "ko", `dv${k}`)}
    } }`
    ).join("\n  ")
  }
}`;
  return launch(
    d,
    a,
    [...common, { name: "DK", ref: { output: 1 } }, { name: "DV", ref: { output: 2 } }],
    body,
    nwg,
    ctx,
    ["Q", "K", "V", "DO"],
  );
}
