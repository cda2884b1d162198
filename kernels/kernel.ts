/**
 * The contract between the WebGPU executor and the kernel families in `kernels/`: a lowering turns
 * one graph node into one or more compute launches with WGSL source, bindings and a grid.
 *
 * Conventions every kernel follows:
 * - Bindings are `@group(0) @binding(i)` in the order of {@link Launch.bindings}, all declared
 *   `var<storage, read_write>` (intermediates share arena buffers; WebGPU forbids mixing read-only
 *   and writable usages of one buffer in a dispatch).
 * - A tensor larger than one storage binding comes in segments ({@link LowerNode.segments},
 *   kernels/segments.ts); a lowering that supports it binds `{ input: i, segment: s }`, else binding it
 *   whole fails at compile time. Scratch stays within `ctx.maxBindingBytes`.
 * - f32 compute. i32/u32 stored as such; f16/bf16 stored packed two per u32 word.
 * - Shapes are static: they are baked into the WGSL as constants, so every shape gets its own
 *   pipeline, built once at plan time.
 * @module
 */
import type { Attrs, DType, TensorInfo } from "../engine/graph/types.ts";

/** A node as a lowering sees it. */
export interface LowerNode<A extends Attrs = Attrs> {
  readonly inputs: readonly TensorInfo[];
  readonly outputs: readonly TensorInfo[];
  readonly attrs: A;
  /**
   * Layouts of the inputs and outputs stored in segments because they exceed one storage binding
   * (kernels/segments.ts); absent when none is. A lowering that binds a segmented operand whole fails at
   * compile time, naming it.
   */
  readonly segments?: {
    readonly inputs: readonly (SegmentLayout | undefined)[];
    readonly outputs: readonly (SegmentLayout | undefined)[];
  };
}

/** How a segmented value is laid out: `count` segments of `elems` elements, `total` elements in all. */
export interface SegmentLayout {
  readonly elems: number;
  readonly count: number;
  readonly total: number;
}

/**
 * What a binding refers to: a node input, a node output, or a scratch buffer of the node — whole, or
 * a byte range of it (`offset` a multiple of the adapter's storage offset alignment, 256 at most). For a
 * segmented input or output (see {@link LowerNode.segments}), `segment` picks one segment, and a range is
 * within that segment.
 */
export type BindingRef = ({ input: number } | { output: number } | { scratch: number }) & {
  offset?: number;
  size?: number;
  segment?: number;
};

/** One dispatch. */
export interface Launch {
  readonly code: string;
  readonly entry?: string;
  readonly bindings: readonly BindingRef[];
  readonly workgroups: readonly [number, number, number];
}

/** A node lowered: its launches (run in order) and the byte sizes of its scratch buffers. */
export interface Lowered {
  readonly launches: readonly Launch[];
  readonly scratch?: readonly number[];
}

/** Adapter facts a lowering may use to choose kernels. */
export interface KernelContext {
  readonly f16: boolean;
  readonly maxWorkgroupsPerDim: number;
  readonly maxWorkgroupStorage: number;
  readonly maxInvocations: number;
  /**
   * Subgroup size kernels may assume (lane = local invocation index mod it); 0 or absent: no
   * subgroup kernels (feature absent, size varying, or its known-answer probe failed).
   */
  readonly subgroupSize?: number;
  /** The caller allows matmul f32 operands to be rounded to f16 (the matmul's f16 variant). */
  readonly matmulF16Operands?: boolean;
  /**
   * The largest storage binding in bytes (the adapter's, or a lower cap); a lowering sizes its scratch within
   * it. Undefined: no limit to respect.
   */
  readonly maxBindingBytes?: number;
  /** Tuned parameters by key (e.g. matmul configs per shape class), filled by the tuner. */
  readonly tuned: Map<string, unknown>;
}

/** A lowering: node → launches. */
export type Lowering<A extends Attrs = Attrs> = (node: LowerNode<A>, ctx: KernelContext) => Lowered;

/** WGSL array element type used to store a dtype. */
export function wgslStorageType(dtype: DType): string {
  return dtype === "f32" ? "f32" : dtype === "i32" ? "i32" : "u32";
}

/** `@group(0) @binding(i) var<storage, read_write> name: array<T>;` for each binding. */
export function declare(list: readonly { name: string; dtype: DType }[] | readonly [string, DType][]): string {
  return list
    .map((b, i) => {
      const [name, dtype] = Array.isArray(b) ? b : [(b as { name: string }).name, (b as { dtype: DType }).dtype];
      return `@group(0) @binding(${i}) var<storage, read_write> ${name}: array<${wgslStorageType(dtype)}>;`;
    })
    .join("\n");
}

/**
 * WGSL expression reading element `idx` of buffer `name` of `dtype` as f32.
 * f16/bf16 read the right half of a packed u32 word.
 */
export function loadF32(name: string, dtype: DType, idx: string): string {
  switch (dtype) {
    case "f32":
      return `${name}[${idx}]`;
    case "i32":
    case "u32":
      return `f32(${name}[${idx}])`;
    case "bf16":
      return `bitcast<f32>(((${name}[(${idx}) >> 1u] >> (((${idx}) & 1u) * 16u)) & 0xffffu) << 16u)`;
    case "f16":
      return `unpack2x16float(${name}[(${idx}) >> 1u])[(${idx}) & 1u]`;
  }
}

/** WGSL statement storing f32 `val` into element `idx` of `name` (f32/i32/u32 only). */
export function storeF32(name: string, dtype: DType, idx: string, val: string): string {
  switch (dtype) {
    case "f32":
      return `${name}[${idx}] = ${val};`;
    case "i32":
      return `${name}[${idx}] = i32(${val});`;
    case "u32":
      return `${name}[${idx}] = u32(${val});`;
    default:
      throw new Error(`storing ${dtype} needs a packing kernel (two elements per word); use cast to f32`);
  }
}

/** Splits `n` workgroups into an x/y grid within the per-dimension limit. */
export function grid(n: number, maxPerDim = 65535): [number, number, number] {
  if (n <= maxPerDim) return [Math.max(1, n), 1, 1];
  const y = Math.ceil(n / maxPerDim);
  return [Math.ceil(n / y), y, 1];
}

/**
 * WGSL prelude for 1-D kernels over `n` items with workgroup size `wg`: declares `gid` as the linear
 * index across a 2-D grid. Use inside `main` after `@builtin` params `wid` and `lid`, `nwg`.
 */
export function linearIndex(wg: number): string {
  return `let gid = (wid.x + wid.y * nwg.x) * ${wg}u + lid.x;`;
}

/** Standard entry signature for 1-D kernels. */
export function entry1d(wg: number): string {
  return `@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>)`;
}

/** Requires all listed infos to be of the given dtypes; throws naming the op. */
export function requireDtypes(op: string, infos: readonly TensorInfo[], ok: readonly DType[]): void {
  for (const t of infos) {
    if (!ok.includes(t.dtype)) {
      throw new Error(`WebGPU kernel "${op}" supports ${ok.join("/")} tensors, got ${t.dtype}; cast first`);
    }
  }
}

/**
 * Embeds a sub-lowering in a larger one: maps its input/output refs with `map` and appends its scratch buffers to
 * `scratch`, renumbering its scratch refs; returns its launches.
 */
export function embedLowered(sub: Lowered, map: (r: BindingRef) => BindingRef, scratch: number[]): Launch[] {
  const base = scratch.length;
  scratch.push(...(sub.scratch ?? []));
  return sub.launches.map((l) => ({
    ...l,
    bindings: l.bindings.map((b) => ("scratch" in b ? { ...b, scratch: base + b.scratch } : map(b))),
  }));
}
