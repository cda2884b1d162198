/**
 * WGSL for the fused LM head + cross-entropy: the node is lowered into per-chunk launches of the
 * matmul and cross-entropy kernels, bound to byte ranges of the node's buffers and to two chunk
 * scratch buffers, so the [N, V] logits never exist.
 *
 * A weight stored in segments of whole rows (kernels/segments.ts; a vocabulary too large for one storage
 * binding) is multiplied segment by segment: each segment's logits columns go through a small scratch into
 * the chunk's logits, dh sums the segments' products, and each segment of dW gets its own product.
 * @module
 */
import type { LinearCeAttrs, LinearCeBwdAttrs } from "../engine/graph/ops/linear_ce.ts";
import type { TensorInfo } from "../engine/graph/types.ts";
import {
  type BindingRef,
  declare,
  embedLowered,
  grid,
  type KernelContext,
  type Launch,
  type Lowering,
  type SegmentLayout,
} from "./kernel.ts";
import { generateMatmul, lowerings as matmul, pickMatmulConfig } from "./matmul.ts";
import { lowerings as softmax } from "./softmax.ts";
import { copyCode } from "./elementwise.ts";
import { segmentElems, segmentRows } from "./segments.ts";

const CHUNK_BYTES = 16 * 1024 * 1024;

/**
 * Rows per chunk: a multiple of 64 (so byte offsets stay aligned), logits chunk about 16 MiB and within one
 * storage binding (`maxBindingBytes`) where 64 rows fit.
 */
export function chunkRows(N: number, V: number, requested: number, maxBindingBytes = Infinity): number {
  const want = Math.min(requested > 0 ? requested : Math.floor(CHUNK_BYTES / (V * 4)), maxBindingBytes / (V * 4));
  return Math.min(Math.max(64, Math.floor(want / 64) * 64), Math.ceil(N / 64) * 64);
}

/** A block of the weight's rows: v0 to v0 + vs, bound as `ref` (segment `seg` of a segmented weight). */
interface Block {
  v0: number;
  vs: number;
  ref: BindingRef;
  seg?: number;
}

/** The weight's row blocks: all V rows, or one per segment. */
function weightBlocks(w: TensorInfo, layout: SegmentLayout | undefined): Block[] {
  const [V, D] = w.shape;
  if (!layout) return [{ v0: 0, vs: V, ref: { input: 1 } as BindingRef, seg: undefined }];
  const rows = segmentRows(layout, D, "linear_cross_entropy weight");
  return Array.from({ length: layout.count }, (_, s) => ({
    v0: s * rows,
    vs: segmentElems(layout, s) / D,
    ref: { input: 1, segment: s } as BindingRef,
    seg: s,
  }));
}

/** A strided f32 copy of `shape` elements between two bindings (a column block of logits and a dense one). */
function copyLaunch(
  from: { ref: BindingRef; shape: number[]; strides: number[]; base: number },
  to: { ref: BindingRef; shape: number[]; strides: number[]; base: number },
  shape: number[],
  ctx: KernelContext,
): Launch {
  const code = copyCode(f32(from.shape), f32(to.shape), shape, from.strides, from.base, to.strides, to.base);
  return {
    code,
    bindings: [from.ref, to.ref],
    workgroups: grid(Math.ceil((shape[0] * shape[1]) / 256), ctx.maxWorkgroupsPerDim),
  };
}

/**
 * Launches computing the logits of rows `hc` (rc of them) into `logits` ([rc, V]) block by block of the weight;
 * a segmented weight's blocks go through scratch `tmp` ([rc, vs]).
 */
function logitsLaunches(
  w: TensorInfo,
  blocks: Block[],
  rc: number,
  hc: BindingRef,
  logits: BindingRef,
  tmp: number,
  scratch: number[],
  ctx: KernelContext,
): Launch[] {
  const [V, D] = w.shape;
  return blocks.flatMap(({ v0, vs, ref, seg }) => {
    const mm = matmul.matmul({
      inputs: [f32([rc, D]), { shape: [vs, D], dtype: w.dtype }],
      outputs: [f32([rc, vs])],
      attrs: { transA: false, transB: true },
    }, ctx);
    const out: BindingRef = seg === undefined ? logits : { scratch: tmp, size: rc * vs * 4 };
    const launches = embedLowered(mm, (b) => (io(b) === "i0" ? hc : io(b) === "i1" ? ref : out), scratch);
    if (seg === undefined) return launches;
    const dense = { ref: out, shape: [rc, vs], strides: [vs, 1], base: 0 };
    const cols = { ref: logits, shape: [rc, V], strides: [V, 1], base: v0 };
    return [...launches, copyLaunch(dense, cols, [rc, vs], ctx)];
  });
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

const forward: Lowering<LinearCeAttrs> = ({ inputs: [h, w], attrs, segments }, ctx) => {
  const [N, D] = h.shape, V = w.shape[0];
  if (segments?.inputs.some((l, i) => l && i !== 1)) {
    throw new Error("linear_cross_entropy: only the weight may be segmented");
  }
  const blocks = weightBlocks(w, segments?.inputs[1]);
  const R = chunkRows(N, V, attrs.chunk, ctx.maxBindingBytes);
  const rows = Math.min(R, N);
  const S_LOGITS = 0, S_ROWLOSS = 1, S_TMP = 2;
  const scratch: number[] = [rows * V * 4, N * 4, blocks.length > 1 ? rows * blocks[0].vs * 4 : 4];
  const launches: Launch[] = [];
  for (let r0 = 0; r0 < N; r0 += R) {
    const rc = Math.min(R, N - r0);
    const hc: BindingRef = { input: 0, offset: r0 * D * 4, size: rc * D * 4 };
    const logits: BindingRef = { scratch: S_LOGITS, size: rc * V * 4 };
    launches.push(...logitsLaunches(w, blocks, rc, hc, logits, S_TMP, scratch, ctx));
    const ce = softmax.cross_entropy({
      inputs: [f32([rc, V]), i32([rc])],
      outputs: [f32([rc]), f32([rc])],
      attrs: { ignoreIndex: attrs.ignoreIndex, reduction: "none" },
    }, ctx);
    const ceMap: Ref = (b) => {
      switch (io(b)) {
        case "i0":
          return logits;
        case "i1":
          return { input: 2, offset: r0 * 4, size: rc * 4 };
        case "o0":
          return { scratch: S_ROWLOSS, offset: r0 * 4, size: rc * 4 };
        default:
          return { output: 1, offset: r0 * 4, size: rc * 4 };
      }
    };
    launches.push(...embedLowered(ce, ceMap, scratch));
  }
  launches.push(reduceLaunch(N, V, attrs, [{ input: 2 }, { scratch: S_ROWLOSS }, { output: 0 }], false));
  return { launches, scratch };
};

const backward: Lowering<LinearCeBwdAttrs> = ({ inputs: [, h, w], outputs, attrs, segments }, ctx) => {
  const [N, D] = h.shape, V = w.shape[0];
  const dhOut = 0, dwOut = attrs.needH ? 1 : 0;
  const wSeg = segments?.inputs[2];
  const dwSeg = attrs.needW ? segments?.outputs[dwOut] : undefined;
  if (segments?.inputs.some((l, i) => l && i !== 2) || (attrs.needH && segments?.outputs[dhOut])) {
    throw new Error("linear_cross_entropy_bwd: only the weight and its gradient may be segmented");
  }
  if (attrs.needW && (dwSeg?.elems !== wSeg?.elems || outputs[dwOut].dtype !== "f32")) {
    throw new Error("linear_cross_entropy_bwd: the weight's gradient must be f32 and segmented like the weight");
  }
  const blocks = weightBlocks(w, wSeg).map((b) => ({ ...b, ref: { ...b.ref, input: 2 } as BindingRef }));
  const R = chunkRows(N, V, attrs.chunk, ctx.maxBindingBytes);
  const rows = Math.min(R, N);
  const chunks = Math.ceil(N / R);
  const split = blocks.length > 1;
  const vsMax = blocks[0].vs;
  const S_LOGITS = 0, S_DL = 1, S_SCALE = 2, S_DW = 3, S_TMP = 4;
  const scratch: number[] = [
    rows * V * 4,
    rows * V * 4,
    4,
    attrs.needW && chunks > 1 ? vsMax * D * 4 : 4,
    split ? rows * vsMax * 4 : 4,
  ];
  const launches: Launch[] = [reduceLaunch(N, V, attrs, [{ input: 3 }, { input: 0 }, { scratch: S_SCALE }], true)];
  for (let r0 = 0, c = 0; r0 < N; r0 += R, c++) {
    const rc = Math.min(R, N - r0);
    const hc: BindingRef = { input: 1, offset: r0 * D * 4, size: rc * D * 4 };
    const logits: BindingRef = { scratch: S_LOGITS, size: rc * V * 4 };
    const dl: BindingRef = { scratch: S_DL, size: rc * V * 4 };
    launches.push(...logitsLaunches(w, blocks, rc, hc, logits, S_TMP, scratch, ctx));
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
    launches.push(...embedLowered(bwd, bwdMap, scratch));
    const dh: BindingRef = { output: dhOut, offset: r0 * D * 4, size: rc * D * 4 };
    blocks.forEach(({ v0, vs, ref, seg }, k) => {
      // This block's columns of dl: all of dl, or copied out dense into S_TMP.
      const dlk: BindingRef = split ? { scratch: S_TMP, size: rc * vs * 4 } : dl;
      if (split) {
        const cols = { ref: dl, shape: [rc, V], strides: [V, 1], base: v0 };
        launches.push(copyLaunch(cols, { ref: dlk, shape: [rc, vs], strides: [vs, 1], base: 0 }, [rc, vs], ctx));
      }
      if (attrs.needH) {
        // dh[r0:r0+rc] (+)= dl_k [rc, vs] · W_k [vs, D]; later blocks continue the first one's sums in place.
        const ins = [f32([rc, vs]), { shape: [vs, D], dtype: w.dtype }];
        const mmAttrs = { transA: false, transB: false };
        const m = k === 0
          ? matmul.matmul({ inputs: ins, outputs: [f32([rc, D])], attrs: mmAttrs }, ctx)
          : generateMatmul(ins, f32([rc, D]), mmAttrs, pickMatmulConfig(ins[0], ins[1], mmAttrs, ctx), ctx, dh, true);
        launches.push(...embedLowered(m, (b) => (io(b) === "i0" ? dlk : io(b) === "i1" ? ref : dh), scratch));
      }
      if (attrs.needW) {
        // dW_k (+)= dl_kᵀ [vs, rc] · h_c [rc, D]
        const m = matmul.matmul({
          inputs: [f32([rc, vs]), f32([rc, D])],
          outputs: [f32([vs, D])],
          attrs: { transA: true, transB: false },
        }, ctx);
        const dwk: BindingRef = seg === undefined ? { output: dwOut } : { output: dwOut, segment: seg };
        const dst: BindingRef = c === 0 ? dwk : { scratch: S_DW, size: vs * D * 4 };
        launches.push(...embedLowered(m, (b) => (io(b) === "i0" ? dlk : io(b) === "i1" ? hc : dst), scratch));
        if (c > 0) launches.push(accumulateLaunch(vs * D, dwk, dst, ctx));
      }
    });
  }
  return { launches, scratch };
};

/** Lowerings of this family by op name. */
export const lowerings: Record<string, Lowering> = {
  linear_cross_entropy: forward as Lowering,
  linear_cross_entropy_bwd: backward as Lowering,
};
