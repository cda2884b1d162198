/**
 * Segmented tensors: a value larger than one storage binding (the adapter's `maxStorageBufferBindingSize`) is
 * stored as several segments — separate buffers or arena ranges, each bindable — of `elems` elements each (the
 * last one shorter). The executor decides which values are segmented ({@link segmentLayout}) and tells a lowering
 * through {@link LowerNode.segments}; a kernel that supports such an operand binds it segment by segment
 * (`{ input: i, segment: s }`), either launching once per segment (elementwise, optimizer updates, embedding
 * gradient) or reading through a generated accessor that picks the segment ({@link segmentedReader}). Binding a
 * segmented value whole is a compile-time error naming the tensor, its bytes and the limit.
 *
 * Segments hold whole rows (last axis) where a row fits, so row-wise kernels (embedding, the LM head) see
 * contiguous rows; their element count is a multiple of 4 (packed f16/bf16 words never straddle two segments).
 * The layout counts 4 bytes an element whatever the dtype, so same-shaped values of any dtype split alike.
 * @module
 */
import { type DType, DTYPE_BYTES, numel, type TensorInfo } from "../engine/graph/types.ts";
import { type BindingRef, loadF32, type SegmentLayout } from "./kernel.ts";

export type { SegmentLayout } from "./kernel.ts";

/** Device bytes of `n` elements of `dtype`, rounded up to 4. */
export function elemBytes(n: number, dtype: DType): number {
  return Math.ceil((n * DTYPE_BYTES[dtype]) / 4) * 4;
}

/**
 * The segment layout of a value of `info` when its bytes exceed `maxBindingBytes`, else undefined (one binding).
 */
export function segmentLayout(info: TensorInfo, maxBindingBytes: number): SegmentLayout | undefined {
  const total = numel(info.shape);
  if (elemBytes(total, info.dtype) <= maxBindingBytes) return undefined;
  const row = info.shape.length >= 2 ? info.shape[info.shape.length - 1] : 0;
  let elems = 0;
  if (row > 0 && row * 4 <= maxBindingBytes) {
    let rows = Math.floor(maxBindingBytes / (row * 4));
    while (rows > 0 && (rows * row) % 4) rows--;
    elems = rows * row;
  }
  if (!elems) elems = Math.floor(maxBindingBytes / 16) * 4;
  if (elems <= 0) throw new Error(`a storage binding limit of ${maxBindingBytes} bytes cannot hold a segment`);
  return { elems, count: Math.ceil(total / elems), total };
}

/** Elements of segment `s` of `l`. */
export function segmentElems(l: SegmentLayout, s: number): number {
  return Math.min(l.elems, l.total - s * l.elems);
}

/** Rows of `rowElems` elements per segment; throws when segments do not hold whole rows. */
export function segmentRows(l: SegmentLayout, rowElems: number, what: string): number {
  if (l.elems % rowElems) {
    throw new Error(`${what}: segments of ${l.elems} elements do not hold whole rows of ${rowElems}`);
  }
  return l.elems / rowElems;
}

/** A WGSL operand that may be segmented: its binding declarations and refs, helper functions and a reader. */
export interface SegmentedOperand {
  /** Binding names and storage dtypes, in binding order (one, or one per segment). */
  readonly decls: [string, DType][];
  /** The binding refs matching {@link decls}. */
  readonly refs: BindingRef[];
  /** WGSL functions to put at module scope ("" when not segmented). */
  readonly fns: string;
  /** WGSL expression reading element `idx` (a u32 expression) as f32. */
  load(idx: string): string;
}

/**
 * An operand read through an accessor: unsegmented, `name[idx]` as {@link loadF32} reads it; segmented, one
 * binding per segment `name_s` and a function `name_ld(i)` that picks the segment.
 */
export function segmentedReader(
  name: string,
  info: TensorInfo,
  layout: SegmentLayout | undefined,
  ref: { input: number } | { output: number },
): SegmentedOperand {
  if (!layout) {
    return { decls: [[name, info.dtype]], refs: [ref], fns: "", load: (idx) => loadF32(name, info.dtype, idx) };
  }
  const names = Array.from({ length: layout.count }, (_, s) => `${name}_${s}`);
  const cases = names.map((nm, s) =>
    `${s === layout.count - 1 ? "default" : `case ${s}u`}: { return ${loadF32(nm, info.dtype, "j")}; }`
  );
  const fns = `fn ${name}_ld(i: u32) -> f32 {
  let s = i / ${layout.elems}u;
  let j = i - s * ${layout.elems}u;
  switch s {
    ${cases.join("\n    ")}
  }
}`;
  return {
    decls: names.map((nm) => [nm, info.dtype]),
    refs: names.map((_, s) => ({ ...ref, segment: s })),
    fns,
    load: (idx) => `${name}_ld(${idx})`,
  };
}

/** One launch of a kernel split over segments: elements `base` to `base + len` (segment `seg` when split). */
export interface FlatRange {
  readonly base: number;
  readonly len: number;
  readonly seg?: number;
}

/**
 * The launches of a kernel over `n` elements indexed alike in its same-sized operands: one over all of them when
 * none is segmented, else one per segment. Segmented operands must hold all `n` elements in the same layout.
 */
export function flatRanges(n: number, layouts: readonly (SegmentLayout | undefined)[], op: string): FlatRange[] {
  const segd = layouts.filter((l): l is SegmentLayout => l !== undefined);
  if (!segd.length) return [{ base: 0, len: n }];
  const l = segd[0];
  for (const m of segd) {
    if (m.total !== n || m.elems !== l.elems) {
      throw new Error(
        `WebGPU kernel "${op}" over ${n} elements: its segmented operands must hold all of them in segments of ` +
          `one size, got ${m.total} elements in segments of ${m.elems} beside ${l.elems}`,
      );
    }
  }
  return Array.from({ length: l.count }, (_, s) => ({ base: s * l.elems, len: segmentElems(l, s), seg: s }));
}

/** The binding of an operand in range `r`: its segment when it is segmented, else all of it. */
export function rangeRef<R extends BindingRef>(ref: R, layout: SegmentLayout | undefined, r: FlatRange): BindingRef {
  return layout && r.seg !== undefined ? { ...ref, segment: r.seg } : ref;
}
