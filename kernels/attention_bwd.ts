/**
 * WGSL flash-attention backward (the FlashAttention-2 scheme, no atomics), three launches:
 * 1. rows: per (b, h, i) the pair (lse_i, Δ_i = Σ_d dO·O − dlse_i) into a scratch buffer;
 * 2. dK, dV: one workgroup per (batch, kv head, block of BKV·TN keys), thread t owning TN key rows
 *    (k, v and the dk, dv accumulators private); it loops over the query heads of the group and the
 *    queries that can see the block, BQT at a time (unrolled), recomputing P = exp(s − lse) and
 *    dS = P ∘ (dO·Vᵀ − Δ) for its keys: dV += Pᵀ·dO, dK += dSᵀ·Q;
 * 3. dQ: one workgroup per (batch, query head, block of BQ·TM queries), streaming over the keys like
 *    the forward: dQ += dS·K.
 * Scores are recomputed in both 2 and 3 (no L×L buffer, no float atomics). Every launch binds at most
 * 8 storage buffers (the WebGPU default limit).
 * @module
 */
import type { AttentionBwdAttrs } from "../engine/graph/ops/attention.ts";
import type { KernelContext, Lowered, LowerNode } from "./kernel.ts";
import {
  attentionLaunch,
  attentionTuning,
  type AttnBind,
  entry,
  keyRange,
  nodeDims,
  range,
  scoreCode,
  stepRows,
  visibleExpr,
} from "./attention_fwd.ts";

const WG = 64;

/** Lowering of `attention_bwd`: q, k, v, o, lse, dO[, segments][, dlse] → dq, dk, dv. */
export function lowerAttentionBwd(node: LowerNode<AttentionBwdAttrs>, ctx: KernelContext): Lowered {
  const a = node.attrs;
  const d = nodeDims(node.inputs, a, 6);
  const { B, L, Hq, Hkv } = d;
  const { bq, tm, bk, bkv, tn, bqt, shared } = attentionTuning(ctx, d);
  const rowsN = B * Hq * L;

  // 1. (lse, Δ) per row.
  const rowBinds: AttnBind[] = [
    { name: "O", ref: { input: 3 }, row: true },
    { name: "LSE", ref: { input: 4 } },
    { name: "DO", ref: { input: 5 }, row: true },
  ];
  if (a.dlse) rowBinds.push({ name: "DLSE", ref: { input: a.segmented ? 7 : 6 } });
  rowBinds.push({ name: "SCR", ref: { scratch: 0 } });
  const rows = attentionLaunch(
    d,
    a,
    rowBinds,
    `${entry(WG)} {
  let gid = (wid.x + wid.y * nwg.x) * ${WG}u + lid.x;
  if (gid >= ${rowsN}u) { return; }
  let i = gid % L;
  let h = (gid / L) % HQ;
  let b = gid / (L * HQ);
  let o = ((b * L + i) * HQ + h) * D;
  var acc = vec4<f32>(0.0);
  for (var c = 0u; c < D4; c++) { acc += ld_DO(o, c) * ld_O(o, c); }
  SCR[2u * gid] = LSE[gid];
  SCR[2u * gid + 1u] = acc.x + acc.y + acc.z + acc.w${a.dlse ? " - DLSE[gid]" : ""};
}`,
    Math.ceil(rowsN / WG),
    ctx,
  );

  const common: AttnBind[] = [
    { name: "Q", ref: { input: 0 }, row: true },
    { name: "K", ref: { input: 1 }, row: true },
    { name: "V", ref: { input: 2 }, row: true },
    { name: "DO", ref: { input: 5 }, row: true },
    ...(a.segmented ? [{ name: "SEG", ref: { input: 6 }, dtype: "i32" as const }] : []),
    { name: "SCR", ref: { scratch: 0 } },
  ];

  // 2. dK, dV.
  const nk = bkv * tn;
  const nkb = Math.ceil(L / nk);
  const nwgKv = nkb * Hkv * B;
  const N = range(tn), Rq = range(bqt);
  const sq = stepRows(shared, bqt, "qb", (i) => `((b * L + ${i}) * HQ + h) * D`, ["Q", "DO"], bkv);
  const dkv = attentionLaunch(
    d,
    a,
    [...common, { name: "DK", ref: { output: 1 }, row: true }, { name: "DV", ref: { output: 2 }, row: true }],
    `${sq.decl}
${entry(bkv)} {
  let w = wid.x + wid.y * nwg.x;
  if (w >= ${nwgKv}u) { return; }
  let k0 = (w % ${nkb}u) * ${nk}u;
  let hk = (w / ${nkb}u) % HKV;
  let b = w / ${nkb * Hkv}u;
  var kk: array<vec4<f32>, ${tn}u * D4>;
  var vv: array<vec4<f32>, ${tn}u * D4>;
  var dk: array<vec4<f32>, ${tn}u * D4>;
  var dv: array<vec4<f32>, ${tn}u * D4>;
  ${
      N.map((n) =>
        `let j${n} = k0 + ${n}u * ${bkv}u + lid.x;
  let ko${n} = ((b * L + min(j${n}, L - 1u)) * HKV + hk) * D;
  ${a.segmented ? `let sj${n} = SEG[b * L + min(j${n}, L - 1u)];` : ""}`
      ).join("\n  ")
    }
  for (var c = 0u; c < D4; c++) {
    ${
      N.map((n) =>
        `kk[${n}u * D4 + c] = ld_K(ko${n}, c) * SCALE; vv[${n}u * D4 + c] = ld_V(ko${n}, c);
    dk[${n}u * D4 + c] = vec4<f32>(0.0); dv[${n}u * D4 + c] = vec4<f32>(0.0);`
      ).join("\n    ")
    }
  }
  let qStart = ${a.causal ? "k0" : "0u"};
  let qEnd = ${a.window ? `min(L, k0 + ${nk - 1}u + WIN)` : "L"};
  for (var g = 0u; g < GRP; g++) {
    let h = hk * GRP + g;
    for (var qb = qStart; qb < qEnd; qb += ${bqt}u) {
      ${sq.pre}
      ${N.map((n) => Rq.map((r) => `var s${n}_${r} = 0.0; var dp${n}_${r} = 0.0;`).join(" ")).join("\n      ")}
      for (var c = 0u; c < D4; c++) {
        ${N.map((n) => `let k${n} = kk[${n}u * D4 + c]; let v${n} = vv[${n}u * D4 + c];`).join(" ")}
        ${
      Rq.map((r) =>
        `{ let qc = ${sq.at("Q", r)}; let oc = ${sq.at("DO", r)}; ${
          N.map((n) => `s${n}_${r} += dot(qc, k${n}); dp${n}_${r} += dot(oc, v${n});`).join(" ")
        } }`
      ).join("\n        ")
    }
      }
      ${
      Rq.map((r) =>
        `{ let i = qb + ${r}u; let ri = 2u * ((b * HQ + h) * L + min(i, L - 1u)); let lse = SCR[ri]; let dl = SCR[ri + 1u];
        ${a.segmented ? "let si = SEG[b * L + min(i, L - 1u)];" : ""}
        ${
          N.map((n) =>
            `{ ${scoreCode(a, `s${n}_${r}`)} let vis = ${visibleExpr(a, "i", `j${n}`, "si", `sj${n}`)};
          let p = select(0.0, exp(s - lse), vis); s${n}_${r} = p; dp${n}_${r} = p * (dp${n}_${r} - dl) * dsda; }`
          ).join("\n        ")
        } }`
      ).join("\n      ")
    }
      for (var c = 0u; c < D4; c++) {
        ${Rq.map((r) => `let q${r} = ${sq.at("Q", r)}; let o${r} = ${sq.at("DO", r)};`).join(" ")}
        ${
      N.map((n) =>
        `dv[${n}u * D4 + c] += ${Rq.map((r) => `s${n}_${r} * o${r}`).join(" + ")};
        dk[${n}u * D4 + c] += ${Rq.map((r) => `dp${n}_${r} * q${r}`).join(" + ")};`
      ).join("\n        ")
    }
      }
      ${sq.post}
    }
  }
  ${
      N.map((n) =>
        `if (j${n} < L) {
    for (var c = 0u; c < D4; c++) { st_DK(ko${n}, c, dk[${n}u * D4 + c] * SCALE); st_DV(ko${n}, c, dv[${n}u * D4 + c]); }
  }`
      ).join("\n  ")
    }
}`,
    nwgKv,
    ctx,
  );

  // 3. dQ.
  const nq = bq * tm;
  const nqb = Math.ceil(L / nq);
  const nwgQ = nqb * Hq * B;
  const kr = keyRange(a, "q0", nq);
  const M = range(tm), R = range(bk);
  const sk = stepRows(shared, bk, "kb", (j) => `((b * L + ${j}) * HKV + hk) * D`, ["K", "V"], bq);
  const dq = attentionLaunch(
    d,
    a,
    [...common, { name: "DQ", ref: { output: 0 }, row: true }],
    `${sk.decl}
${entry(bq)} {
  let w = wid.x + wid.y * nwg.x;
  if (w >= ${nwgQ}u) { return; }
  let q0 = (w % ${nqb}u) * ${nq}u;
  let h = (w / ${nqb}u) % HQ;
  let b = w / ${nqb * Hq}u;
  let hk = h / GRP;
  var qq: array<vec4<f32>, ${tm}u * D4>;
  var dd: array<vec4<f32>, ${tm}u * D4>;
  var dq: array<vec4<f32>, ${tm}u * D4>;
  ${
      M.map((m) =>
        `let i${m} = q0 + ${m}u * ${bq}u + lid.x;
  let qo${m} = ((b * L + min(i${m}, L - 1u)) * HQ + h) * D;
  let ri${m} = 2u * ((b * HQ + h) * L + min(i${m}, L - 1u));
  let lse${m} = SCR[ri${m}];
  let dl${m} = SCR[ri${m} + 1u];
  ${a.segmented ? `let si${m} = SEG[b * L + min(i${m}, L - 1u)];` : ""}`
      ).join("\n  ")
    }
  for (var c = 0u; c < D4; c++) {
    ${
      M.map((m) =>
        `qq[${m}u * D4 + c] = ld_Q(qo${m}, c) * SCALE; dd[${m}u * D4 + c] = ld_DO(qo${m}, c);
    dq[${m}u * D4 + c] = vec4<f32>(0.0);`
      ).join("\n    ")
    }
  }
  let kEnd = ${kr.end};
  for (var kb = ${kr.start}; kb < kEnd; kb += ${bk}u) {
    ${sk.pre}
    ${M.map((m) => R.map((r) => `var s${m}_${r} = 0.0; var dp${m}_${r} = 0.0;`).join(" ")).join("\n    ")}
    for (var c = 0u; c < D4; c++) {
      ${M.map((m) => `let q${m} = qq[${m}u * D4 + c]; let o${m} = dd[${m}u * D4 + c];`).join(" ")}
      ${
      R.map((r) =>
        `{ let kc = ${sk.at("K", r)}; let vc = ${sk.at("V", r)}; ${
          M.map((m) => `s${m}_${r} += dot(q${m}, kc); dp${m}_${r} += dot(o${m}, vc);`).join(" ")
        } }`
      ).join("\n      ")
    }
    }
    ${a.segmented ? R.map((r) => `let sj${r} = SEG[b * L + min(kb + ${r}u, L - 1u)];`).join(" ") : ""}
    ${
      M.map((m) =>
        R.map((r) =>
          `{ ${scoreCode(a, `s${m}_${r}`)} let vis = ${visibleExpr(a, `i${m}`, `kb + ${r}u`, `si${m}`, `sj${r}`)};
    s${m}_${r} = select(0.0, exp(s - lse${m}) * (dp${m}_${r} - dl${m}) * dsda, vis); }`
        ).join("\n    ")
      ).join("\n    ")
    }
    for (var c = 0u; c < D4; c++) {
      ${R.map((r) => `let k${r} = ${sk.at("K", r)};`).join(" ")}
      ${M.map((m) => `dq[${m}u * D4 + c] += ${R.map((r) => `s${m}_${r} * k${r}`).join(" + ")};`).join("\n      ")}
    }
    ${sk.post}
  }
  ${
      M.map((m) =>
        `if (i${m} < L) {
    for (var c = 0u; c < D4; c++) { st_DQ(qo${m}, c, dq[${m}u * D4 + c] * SCALE); }
  }`
      ).join("\n  ")
    }
}`,
    nwgQ,
    ctx,
  );
  return { launches: [rows, dkv, dq], scratch: [8 * rowsN] };
}
