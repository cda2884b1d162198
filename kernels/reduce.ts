/**
 * WGSL for sum, mean and max over axes. Few long reductions (e.g. a global norm) use one
 * workgroup per output with a tree in workgroup memory; many short ones use a thread per output.
 * A source stored in segments (kernels/segments.ts) is read through an accessor that picks the segment,
 * so the sum runs in the same order as over one buffer.
 * @module
 */
import { numel, stridesOf, type TensorInfo } from "../engine/graph/types.ts";
import {
  type BindingRef,
  declare,
  entry1d,
  grid,
  type KernelContext,
  linearIndex,
  type Lowered,
  type Lowering,
  type SegmentLayout,
  storeF32,
} from "./kernel.ts";
import { segmentedReader } from "./segments.ts";
import { offsetCode } from "./elementwise.ts";

const WG = 256;

/** The reductions. */
export type ReduceKind = "sum" | "mean" | "max";

/**
 * Hooks replacing a reduction's input load and output store (see kernels/fused.ts): `code` declares the
 * bindings (in the order of `bindings`) and the functions `load`/`store` call.
 */
export interface ReduceHooks {
  readonly code: string;
  readonly load: (idx: string) => string;
  readonly store: (idx: string, val: string) => string;
  readonly bindings: readonly BindingRef[];
}

/**
 * One reduction of `x` over `axes` into `o`: the kernel, with its load and store replaced by `hooks` when given.
 * `xLayout` is the segment layout of `x` when it is stored in segments (read through an accessor; not with hooks:
 * fusion leaves segmented values out).
 */
export function reduceKernel(
  kind: ReduceKind,
  x: TensorInfo,
  o: TensorInfo,
  axes: readonly number[],
  ctx: KernelContext,
  hooks?: ReduceHooks,
  xLayout?: SegmentLayout,
): Lowered {
  if (hooks && xLayout) throw new Error("internal: a fused reduction cannot read a segmented source");
  const st = stridesOf(x.shape);
  const keptShape = x.shape.filter((_, i) => !axes.includes(i));
  const keptStrides = st.filter((_, i) => !axes.includes(i));
  const redShape = axes.map((a) => x.shape[a]);
  const redStrides = axes.map((a) => st[a]);
  const nOut = numel(keptShape);
  const nRed = numel(redShape);
  const init = kind === "max" ? "-3.4028234663852886e38" : "0.0";
  const comb = kind === "max" ? "acc = max(acc, v);" : "acc = acc + v;";
  const fin = kind === "mean" ? `acc / ${nRed}.0` : "acc";
  const src = segmentedReader("src", x, xLayout, { input: 0 });
  const decl = hooks ? hooks.code : `${declare([...src.decls, ["dst", o.dtype]])}\n${src.fns}`;
  const load = hooks ? hooks.load("o1") : src.load("o1");
  const store = hooks ? hooks.store("gid", fin) : storeF32("dst", o.dtype, "gid", fin);
  const bindings = hooks ? hooks.bindings : [...src.refs, { output: 0 }];
  const redOffset = offsetCode(redShape, [redStrides], "j").replaceAll("o0", "o1");
  if (nOut >= 1024 || nRed <= 64) {
    const code = `${decl}
${entry1d(WG)} {
  ${linearIndex(WG)}
  if (gid >= ${nOut}u) { return; }
  var o0 = 0u;
  ${offsetCode(keptShape, [keptStrides])}
  var acc = ${init};
  for (var j = 0u; j < ${nRed}u; j++) {
    var o1 = o0;
    ${redOffset}
    let v = ${load};
    ${comb}
  }
  ${store}
}`;
    return { launches: [{ code, bindings, workgroups: grid(Math.ceil(nOut / WG), ctx.maxWorkgroupsPerDim) }] };
  }
  const code = `${decl}
var<workgroup> part: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let gid = wid.x + wid.y * nwg.x;
  var o0 = 0u;
  ${offsetCode(keptShape, [keptStrides])}
  var acc = ${init};
  if (gid < ${nOut}u) {
    for (var j = lid.x; j < ${nRed}u; j += ${WG}u) {
      var o1 = o0;
      ${redOffset}
      let v = ${load};
      ${comb}
    }
  }
  part[lid.x] = acc;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) {
    if (lid.x < s) {
      let v = part[lid.x + s];
      acc = part[lid.x];
      ${comb}
      part[lid.x] = acc;
    }
    workgroupBarrier();
  }
  if (lid.x == 0u && gid < ${nOut}u) {
    acc = part[0];
    ${store}
  }
}`;
  return { launches: [{ code, bindings, workgroups: grid(nOut, ctx.maxWorkgroupsPerDim) }] };
}

function reduceLowering(kind: ReduceKind): Lowering {
  return ({ inputs: [x], outputs: [o], attrs, segments }, ctx) =>
    reduceKernel(kind, x, o, attrs.axes as number[], ctx, undefined, segments?.inputs[0]);
}

/** Lowerings of this family by op name. */
export const lowerings: Record<string, Lowering> = {
  sum: reduceLowering("sum"),
  mean: reduceLowering("mean"),
  max: reduceLowering("max"),
};
