/**
 * WGSL flash-attention backward (the FlashAttention-2 scheme, no atomics), three launches:
 * 1. rows: per (b, h, i) the pair (lse_i, Δ_i = Σ_d dO·O − dlse_i) into a scratch buffer;
 * 2. dK, dV: one workgroup per (batch, kv head, block of BKV keys), one thread per key row, looping
 *    over the query heads of the group and the query blocks that can see the keys (Q and dO staged
 *    in workgroup memory), recomputing P = exp(s − lse) on the fly;
 * 3. dQ: one workgroup per (batch, query head, block of BQ queries), one thread per query row,
 *    streaming over key blocks like the forward.
 * Bindings stay within 8 storage buffers per launch (the WebGPU default limit).
 * @module
 */
import type { AttentionBwdAttrs } from "../engine/graph/ops/attention.ts";
import { type BindingRef, declare, entry1d, grid, type KernelContext, linearIndex, type LowerNode, type Lowered } from "./kernel.ts";
import {
  attentionInputs,
  attentionPrelude,
  attentionTuning,
  keyRange,
  scoreCode,
  storeRow,
  tileDecl,
  tileLoad,
  visibleExpr,
} from "./attention_fwd.ts";
import { tilesDkv, tilesDq } from "./attention_tiles.ts";

const WG = 64;

/** Lowering of `attention_bwd`: q, k, v, o, lse, dO[, segments][, dlse] → dq, dk, dv. */
export function lowerAttentionBwd(node: LowerNode<AttentionBwdAttrs>, ctx: KernelContext): Lowered {
  const a = node.attrs;
  const { dims } = attentionInputs(node.inputs, a, 6);
  const { B, L, Hq, Hkv, D } = dims;
  const d4 = Math.ceil(D / 4);
  const tune = attentionTuning(ctx, dims, a.segmented);
  const { bq, bk, bkv, bqt, shared } = tune;
  type Bind = { name: string; dtype?: "i32"; ref: BindingRef };
  const seg: Bind[] = a.segmented ? [{ name: "SEG", dtype: "i32", ref: { input: 6 } }] : [];
  const rowsN = B * Hq * L;
  const kAt = shared ? "kt[r * D4 + c]" : "ld_K(kro, c)";
  const vAt = shared ? "vt[r * D4 + c]" : "ld_V(kro, c)";
  const qAt = shared ? "qt[r * D4 + c]" : "ld_Q(qo, c)";
  const dAt = shared ? "dt[r * D4 + c]" : "ld_DO(qo, c)";
  const launch = (list: Bind[], body: string, workgroups: number, rows: string[]) => ({
    code: `${declare(list.map((x) => [x.name, x.dtype ?? "f32"] as [string, "f32" | "i32"]))}
${attentionPrelude(dims, a, rows)}
${body}`,
    bindings: list.map((x) => x.ref),
    workgroups: grid(workgroups, ctx.maxWorkgroupsPerDim),
  });

  // 1. (lse, Δ) per row.
  const rowsBinds: Bind[] = [{ name: "O", ref: { input: 3 } }, { name: "LSE", ref: { input: 4 } }, { name: "DO", ref: { input: 5 } }];
  if (a.dlse) rowsBinds.push({ name: "DLSE", ref: { input: a.segmented ? 7 : 6 } });
  rowsBinds.push({ name: "SCR", ref: { scratch: 0 } });
  const rows = launch(
    rowsBinds,
    `${entry1d(WG)} {
  ${linearIndex(WG)}
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
    ["O", "DO"],
  );

  const common = [
    { name: "Q", ref: { input: 0 } },
    { name: "K", ref: { input: 1 } },
    { name: "V", ref: { input: 2 } },
    { name: "DO", ref: { input: 5 } },
    ...seg,
    { name: "SCR", ref: { scratch: 0 } },
  ];
  const entry = (wg: number) =>
    `@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>)`;

  if (tune.form === "tiles") {
    const dkv = tilesDkv(dims, a, { rows: tune.tkv, rg: tune.rg }, ctx, common);
    const dq = tilesDq(dims, a, { rows: tune.tq, rg: tune.rg }, ctx, common);
    return { launches: [rows, dkv, dq], scratch: [8 * rowsN] };
  }

  // 2. dK, dV: thread per key j; loop over group heads and the query blocks that see the block.
  const nkb = Math.ceil(L / bkv);
  const nwgKv = nkb * Hkv * B;
  const dkv = launch(
    [...common, { name: "DK", ref: { output: 1 } }, { name: "DV", ref: { output: 2 } }],
    `const BKV = ${bkv}u;
const BQT = ${bqt}u;
${shared ? `${tileDecl(["qt", "dt"], bqt, D, a.segmented)}\nvar<workgroup> rt: array<vec2<f32>, ${bqt}>;` : ""}
${entry(bkv)} {
  let w = wid.x + wid.y * nwg.x;
  if (w >= ${nwgKv}u) { return; }
  let k0 = (w % ${nkb}u) * BKV;
  let hk = (w / ${nkb}u) % HKV;
  let b = w / ${nkb * Hkv}u;
  let j = k0 + lid.x;
  let valid = j < L;
  let jj = min(j, L - 1u);
  let ko = ((b * L + jj) * HKV + hk) * D;
  var kr: array<vec4<f32>, D4>;
  var vr: array<vec4<f32>, D4>;
  var dk: array<vec4<f32>, D4>;
  var dv: array<vec4<f32>, D4>;
  for (var c = 0u; c < D4; c++) {
    kr[c] = ld_K(ko, c) * SCALE;
    vr[c] = ld_V(ko, c);
    dk[c] = vec4<f32>(0.0);
    dv[c] = vec4<f32>(0.0);
  }
  ${a.segmented ? "let sj = SEG[b * L + jj];" : ""}
  let qStart = ${a.causal ? "(k0 / BQT) * BQT" : "0u"};
  let qEnd = ${a.window ? "min(L, k0 + BKV - 1u + WIN)" : "L"};
  for (var g = 0u; g < GRP; g++) {
    let h = hk * GRP + g;
    for (var qb = qStart; qb < qEnd; qb += BQT) {
      ${shared ? `for (var e = lid.x; e < BQT * D4; e += BKV) {
        let qo = ((b * L + min(qb + e / D4, L - 1u)) * HQ + h) * D;
        qt[e] = ld_Q(qo, e % D4);
        dt[e] = ld_DO(qo, e % D4);
      }
      for (var e = lid.x; e < BQT; e += BKV) {
        let i = min(qb + e, L - 1u);
        let r = (b * HQ + h) * L + i;
        rt[e] = vec2<f32>(SCR[2u * r], SCR[2u * r + 1u]);
        ${a.segmented ? "segt[e] = SEG[b * L + i];" : ""}
      }
      workgroupBarrier();` : ""}
      if (valid) {
        for (var r = 0u; r < BQT; r++) {
          let i = qb + r;
          ${shared ? "" : `let qo = ((b * L + min(i, L - 1u)) * HQ + h) * D;
          let ro = (b * HQ + h) * L + min(i, L - 1u);`}
          if (i < L && ${visibleExpr(a, "i", "j", shared ? "segt[r]" : "SEG[b * L + min(i, L - 1u)]", "sj")}) {
            var x = 0.0;
            var dp = 0.0;
            for (var c = 0u; c < D4; c++) {
              x += dot(${qAt}, kr[c]);
              dp += dot(${dAt}, vr[c]);
            }
            ${scoreCode(a, "x")}
            let p = exp(s - ${shared ? "rt[r].x" : "SCR[2u * ro]"});
            let ds = p * (dp - ${shared ? "rt[r].y" : "SCR[2u * ro + 1u]"}) * dsda;
            for (var c = 0u; c < D4; c++) {
              dv[c] += p * ${dAt};
              dk[c] += ds * ${qAt};
            }
          }
        }
      }
      ${shared ? "workgroupBarrier();" : ""}
    }
  }
  if (valid) {
    for (var c = 0u; c < D4; c++) {
      ${storeRow("DK", D, "ko", "dk[c] * SCALE")}
      ${storeRow("DV", D, "ko", "dv[c]")}
    }
  }
}`,
    nwgKv,
    ["Q", "K", "V", "DO"],
  );

  // 3. dQ: thread per query i; stream over key blocks like the forward.
  const nqb = Math.ceil(L / bq);
  const nwgQ = nqb * Hq * B;
  const kr = keyRange(a, "q0", bq);
  const dq = launch(
    [...common, { name: "DQ", ref: { output: 0 } }],
    `const BQ = ${bq}u;
const BK = ${bk}u;
${shared ? tileDecl(["kt", "vt"], bk, D, a.segmented) : ""}
${entry(bq)} {
  let w = wid.x + wid.y * nwg.x;
  if (w >= ${nwgQ}u) { return; }
  let q0 = (w % ${nqb}u) * BQ;
  let h = (w / ${nqb}u) % HQ;
  let b = w / ${nqb * Hq}u;
  let hk = h / GRP;
  let i = q0 + lid.x;
  let valid = i < L;
  let ii = min(i, L - 1u);
  let qo = ((b * L + ii) * HQ + h) * D;
  var qr: array<vec4<f32>, D4>;
  var dor: array<vec4<f32>, D4>;
  var dq: array<vec4<f32>, D4>;
  for (var c = 0u; c < D4; c++) {
    qr[c] = ld_Q(qo, c) * SCALE;
    dor[c] = ld_DO(qo, c);
    dq[c] = vec4<f32>(0.0);
  }
  let row = (b * HQ + h) * L + ii;
  let lse = SCR[2u * row];
  let delta = SCR[2u * row + 1u];
  ${a.segmented ? "let si = SEG[b * L + ii];" : ""}
  let kEnd = ${kr.end};
  for (var kb = (${kr.start} / BK) * BK; kb < kEnd; kb += BK) {
    ${shared ? tileLoad(a, "kb", "BK", "BQ") : ""}
    if (valid) {
      for (var r = 0u; r < BK; r++) {
        let j = kb + r;
        ${shared ? "" : "let kro = ((b * L + min(j, L - 1u)) * HKV + hk) * D;"}
        if (${visibleExpr(a, "i", "j", "si", shared ? "segt[r]" : "SEG[b * L + min(j, L - 1u)]")}) {
          var x = 0.0;
          var dp = 0.0;
          for (var c = 0u; c < D4; c++) {
            x += dot(qr[c], ${kAt});
            dp += dot(dor[c], ${vAt});
          }
          ${scoreCode(a, "x")}
          let ds = exp(s - lse) * (dp - delta) * dsda;
          for (var c = 0u; c < D4; c++) { dq[c] += ds * ${kAt}; }
        }
      }
    }
    ${shared ? "workgroupBarrier();" : ""}
  }
  if (valid) {
    for (var c = 0u; c < D4; c++) ${storeRow("DQ", D, "qo", "dq[c] * SCALE")}
  }
}`,
    nwgQ,
    ["Q", "K", "V", "DO"],
  );
  return { launches: [rows, dkv, dq], scratch: [8 * rowsN] };
}

