/**
 * WGSL for the fused LM head + cross-entropy: the node is lowered into per-chunk launches of the
 * matmul and cross-entropy kernels, bound to byte ranges of the node's buffers and to two chunk
 * scratch buffers, so the [N, V] logits never exist.
 * @module
 */
import type { LinearCeAttrs, LinearCeBwdAttrs } from "../engine/graph/ops/linear_ce.ts";
import type { TensorInfo } from "../engine/graph/types.ts";
import { type BindingRef, declare, type KernelContext, type Launch, type Lowered, type Lowering } from "./kernel.ts";
import { lowerings as matmul } from "./matmul.ts";
import { lowerings as softmax } from "./softmax.ts";

const CHUNK_BYTES = 16 * 1024 * 1024;

/** Rows per chunk: a multiple of 64 (so byte offsets stay aligned), logits chunk about 16 MiB. */
export function chunkRows(N: number, V: number, requested: number): number {
  const want = requested > 0 ? requested : Math.floor(CHUNK_BYTES / (V * 4));
  return Math.min(Math.max(64, Math.floor(want / 64) * 64), Math.ceil(N / 64) * 64);
}

/** Embeds a sub-lowering: maps its input/output refs, appends its scratch to ours. */
function embed(sub: Lowered, map: (r: BindingRef) => BindingRef, scratch: number[]): Launch[] {
  const base = scratch.length;
  scratch.push(...(sub.scratch ?? []));
  return sub.launches.map((l) => ({
    ...l,
    bindings: l.bindings.map((b) => ("scratch" in b ? { ...b, scratch: base + b.scratch } : map(b))),
  }));
}

const io = (b: BindingRef) => ("input" in b ? `i${b.input}` : "output" in b ? `o${b.output}` : `s${b.scratch}`);

/** `labels` counted by the loss (as the cross-entropy kernels count them). */
const COUNTS = (V: number, ignore: number) => `(t != ${ignore} && t >= 0 && t < ${V})`;

function reduceLaunch(N: number, V: number, a: LinearCeAttrs, refs: BindingRef[], scaleOnly: boolean): Launch {
  // scaleOnly: out = g / count (mean) or g; else out = Σ rowloss / count (mean) or Σ rowloss.
  const decl = scaleOnly
    ? declare([["labels", "i32"], ["g", "f32"], ["out", "f32"]])
    : declare([["labels", "i32"], ["rowloss", "f32"], ["out", "f32"]]);
  const add = scaleOnly ? "acc += vec2<f32>(0.0, 1.0);" : "acc += vec2<f32>(rowloss[r], 1.0);";
  const fin = scaleOnly
    ? (a.reduction === "mean" ? "g[0] / max(part[0].y, 1.0)" : "g[0]")
    : (a.reduction === "mean" ? "select(0.0, part[0].x / part[0].y, part[0].y > 0.0)" : "part[0].x");
  const code = `${decl}
var<workgroup> part: array<vec2<f32>, 256>;
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid3: vec3<u32>) {
  let lid = lid3.x;
  var acc = vec2<f32>(0.0);
  for (var r = lid; r < ${N}u; r += 256u) { let t = labels[r]; if ${COUNTS(V, a.ignoreIndex)} { ${add} } }
  part[lid] = acc;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s = s >> 1u) {
    if (lid < s) { part[lid] = part[lid] + part[lid + s]; }
    workgroupBarrier();
  }
  if (lid == 0u) { out[0] = ${fin}; }
}`;
  return { code, bindings: refs, workgroups: [1, 1, 1] };
}

function accumulateLaunch(n: number, dst: BindingRef, src: BindingRef, ctx: KernelContext): Launch {
  const code = `${declare([["dst", "f32"], ["src", "f32"]])}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = (wid.x + wid.y * nwg.x) * 256u + lid.x;
  if (i < ${n}u) { dst[i] = dst[i] + src[i]; }
}`;
  const groups = Math.ceil(n / 256);
  const y = Math.ceil(groups / ctx.maxWorkgroupsPerDim);
  return { code, bindings: [dst, src], workgroups: [Math.ceil(groups / y), y, 1] };
}

type Ref = (r: BindingRef) => BindingRef;
const f32 = (shape: number[]): TensorInfo => ({ shape, dtype: "f32" });
const i32 = (shape: number[]): TensorInfo => ({ shape, dtype: "i32" });

const forward: Lowering<LinearCeAttrs> = ({ inputs: [h, w], attrs }, ctx) => {
  const [N, D] = h.shape, V = w.shape[0];
  const R = chunkRows(N, V, attrs.chunk);
  const scratch: number[] = [R * V * 4, N * 4];
  const S_LOGITS = 0, S_ROWLOSS = 1;
  const launches: Launch[] = [];
  for (let r0 = 0; r0 < N; r0 += R) {
    const rc = Math.min(R, N - r0);
    const mm = matmul.matmul({
      inputs: [f32([rc, D]), w],
      outputs: [f32([rc, V])],
      attrs: { transA: false, transB: true },
    }, ctx);
    const mmMap: Ref = (b) =>
      "input" in b && b.input === 0
        ? { input: 0, offset: r0 * D * 4, size: rc * D * 4 }
        : "input" in b
        ? { input: 1 }
        : { scratch: S_LOGITS, size: rc * V * 4 };
    launches.push(...embed(mm, mmMap, scratch));
    const ce = softmax.cross_entropy({
      inputs: [f32([rc, V]), i32([rc])],
      outputs: [f32([rc]), f32([rc])],
      attrs: { ignoreIndex: attrs.ignoreIndex, reduction: "none" },
    }, ctx);
    const ceMap: Ref = (b) => {
      switch (io(b)) {
        case "i0":
          return { scratch: S_LOGITS, size: rc * V * 4 };
        case "i1":
          return { input: 2, offset: r0 * 4, size: rc * 4 };
        case "o0":
          return { scratch: S_ROWLOSS, offset: r0 * 4, size: rc * 4 };
        default:
          return { output: 1, offset: r0 * 4, size: rc * 4 };
      }
    };
    launches.push(...embed(ce, ceMap, scratch));
  }
  launches.push(reduceLaunch(N, V, attrs, [{ input: 2 }, { scratch: S_ROWLOSS }, { output: 0 }], false));
  return { launches, scratch };
};

const backward: Lowering<LinearCeBwdAttrs> = ({ inputs: [, h, w], attrs }, ctx) => {
  const [N, D] = h.shape, V = w.shape[0];
  const R = chunkRows(N, V, attrs.chunk);
  const chunks = Math.ceil(N / R);
  const S_LOGITS = 0, S_DL = 1, S_SCALE = 2, S_DW = 3;
  const scratch: number[] = [R * V * 4, R * V * 4, 4, attrs.needW && chunks > 1 ? V * D * 4 : 4];
  const dhOut = 0, dwOut = attrs.needH ? 1 : 0;
  const launches: Launch[] = [reduceLaunch(N, V, attrs, [{ input: 3 }, { input: 0 }, { scratch: S_SCALE }], true)];
  for (let r0 = 0, c = 0; r0 < N; r0 += R, c++) {
    const rc = Math.min(R, N - r0);
    const hc: BindingRef = { input: 1, offset: r0 * D * 4, size: rc * D * 4 };
    const logits: BindingRef = { scratch: S_LOGITS, size: rc * V * 4 };
    const dl: BindingRef = { scratch: S_DL, size: rc * V * 4 };
    const mm = matmul.matmul({
      inputs: [f32([rc, D]), w],
      outputs: [f32([rc, V])],
      attrs: { transA: false, transB: true },
    }, ctx);
    launches.push(...embed(mm, (b) => (io(b) === "i0" ? hc : io(b) === "i1" ? { input: 2 } : logits), scratch));
    const bwd = softmax.cross_entropy_bwd({
      inputs: [f32([]), f32([rc, V]), i32([rc]), f32([rc])],
      outputs: [f32([rc, V])],
      attrs: { ignoreIndex: attrs.ignoreIndex, reduction: "sum" },
    }, ctx);
    const bwdMap: Ref = (b) => {
      switch (io(b)) {
        case "i0":
          return { scratch: S_SCALE };
        case "i1":
          return logits;
        case "i2":
          return { input: 3, offset: r0 * 4, size: rc * 4 };
        case "i3":
          return { input: 4, offset: r0 * 4, size: rc * 4 };
        default:
          return dl;
      }
    };
    launches.push(...embed(bwd, bwdMap, scratch));
    if (attrs.needH) {
      // dh[r0:r0+rc] = dl [rc, V] · W [V, D]
      const m = matmul.matmul({
        inputs: [f32([rc, V]), w],
        outputs: [f32([rc, D])],
        attrs: { transA: false, transB: false },
      }, ctx);
      const dh: BindingRef = { output: dhOut, offset: r0 * D * 4, size: rc * D * 4 };
      launches.push(...embed(m, (b) => (io(b) === "i0" ? dl : io(b) === "i1" ? { input: 2 } : dh), scratch));
    }
    if (attrs.needW) {
      // dW (+)= dlᵀ [V, rc] · h_c [rc, D]
      const m = matmul.matmul({
        inputs: [f32([rc, V]), f32([rc, D])],
        outputs: [f32([V, D])],
        attrs: { transA: true, transB: false },
      }, ctx);
      const dst: BindingRef = c === 0 ? { output: dwOut } : { scratch: S_DW };
      launches.push(...embed(m, (b) => (io(b) === "i0" ? dl : io(b) === "i1" ? hc : dst), scratch));
      if (c > 0) launches.push(accumulateLaunch(V * D, { output: dwOut }, { scratch: S_DW }, ctx));
    }
  }
  return { launches, scratch };
};

/** Lowerings of this family by op name. */
export const lowerings: Record<string, Lowering> = {
  linear_cross_entropy: forward as Lowering,
  linear_cross_entropy_bwd: backward as Lowering,
};
