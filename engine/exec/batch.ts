/**
 * Dispatch batching for the WebGPU executor: after lowering, launches that touch disjoint memory (no launch writes
 * bytes another one reads or writes) and whose workgroups fit one size (kernels/merge.ts) are merged into one dispatch
 * (kernels/merge.ts) — e.g. the AdamW updates of every trainable tensor, the squared-norm reductions of every
 * gradient, the independent matmuls of a LoRA linear's backward.
 *
 * A launch may move up to an earlier batch within a window of launches when it is independent of every launch it
 * passes, so the order of dependent launches never changes. Bindings of the same bytes with the same type are
 * bound once; a batch stays within the adapter's storage-buffer and workgroup-memory limits.
 * @module
 */
import { grid } from "../../kernels/kernel.ts";
import {
  fitsThreads,
  mergedWorkgroups,
  mergeKernels,
  type MergePart,
  type ParsedKernel,
  parseKernel,
  threadsOf,
} from "../../kernels/merge.ts";

/** A bound byte range of a buffer. */
export interface BoundRange<B> {
  readonly buffer: B;
  readonly offset: number;
  readonly size: number;
}

/** A lowered launch with its bindings resolved to byte ranges. */
export interface PendingLaunch<B> {
  readonly code: string;
  readonly entry?: string;
  readonly workgroups: readonly [number, number, number];
  readonly ranges: readonly BoundRange<B>[];
  /** Whether the launch may write each binding. */
  readonly written: readonly boolean[];
  /** Never merged (e.g. launches of a node over segmented values, which run segment by segment in order). */
  readonly alone?: boolean;
}

/** Limits a batch must respect. */
export interface BatchLimits {
  readonly maxBindings: number;
  readonly maxWorkgroupStorage: number;
  readonly maxWorkgroupsPerDim: number;
  /** How many launches ahead a launch may be pulled from (default 256). */
  readonly window?: number;
  /** Most WGSL characters of a batch's kernels together (default {@link MAX_BATCH_CODE}). */
  readonly maxCode?: number;
}

/**
 * Most WGSL characters merged into one dispatch: a shader compiler's time grows faster than its code, and on lavapipe
 * (LLVM) two 32×32 register-block matmuls merged (~380k characters) compiled in 71 s where each alone took 13 s, so
 * a model's first step ran for minutes. Such kernels (a 16×32 block: ~100k characters) run alone; the small kernels batching
 * is for (optimizer updates, reductions, GPU matmul tiles) stay far below.
 */
export const MAX_BATCH_CODE = 64 * 1024;

const overlap = <B>(a: BoundRange<B>, b: BoundRange<B>) =>
  a.buffer === b.buffer && a.offset < b.offset + b.size && b.offset < a.offset + a.size;

/** True when `a` and `b` may run in either order (or at once). */
function independent<B>(a: PendingLaunch<B>, b: PendingLaunch<B>): boolean {
  for (let i = 0; i < a.ranges.length; i++) {
    for (let j = 0; j < b.ranges.length; j++) {
      if ((a.written[i] || b.written[j]) && overlap(a.ranges[i], b.ranges[j])) return false;
    }
  }
  return true;
}

/** A batch being formed: its launches and the distinct bindings they share. */
class Batch<B> {
  readonly members: { launch: PendingLaunch<B>; kernel: ParsedKernel; map: number[] }[] = [];
  readonly bound: { range: BoundRange<B>; type: string; written: boolean }[] = [];
  workgroupBytes = 0;
  /** WGSL characters of the members' kernels. */
  code = 0;

  threads = 0;

  /** The merged binding indices `l` would use (new ones appended virtually), and how many bindings that makes. */
  plan(l: PendingLaunch<B>, k: ParsedKernel): { map: number[]; total: number } {
    const map: number[] = [];
    let total = this.bound.length;
    const extra: { range: BoundRange<B>; type: string }[] = [];
    k.bindings.forEach((b, i) => {
      const r = l.ranges[i];
      const same = (x: { range: BoundRange<B>; type: string }) =>
        x.type === b.type && x.range.buffer === r.buffer && x.range.offset === r.offset && x.range.size === r.size;
      let at = this.bound.findIndex(same);
      if (at < 0) {
        const e = extra.findIndex(same);
        at = e >= 0 ? this.bound.length + e : (extra.push({ range: r, type: b.type }), total++);
      }
      map.push(at);
    });
    return { map, total };
  }

  add(l: PendingLaunch<B>, k: ParsedKernel, map: number[]): void {
    map.forEach((j, i) => {
      if (j < this.bound.length) this.bound[j].written ||= l.written[i];
      else this.bound[j] = { range: l.ranges[i], type: k.bindings[i].type, written: l.written[i] };
    });
    this.members.push({ launch: l, kernel: k, map });
    this.workgroupBytes += k.workgroupBytes;
    this.code += l.code.length;
    this.threads = Math.max(this.threads, threadsOf(k));
  }
}

/**
 * Merges `launches` (in run order) into fewer dispatches. Launches that cannot be parsed for merging pass through
 * unchanged; the result runs in an order that keeps every dependent pair in its original order.
 */
export function batchLaunches<B>(launches: readonly PendingLaunch<B>[], lim: BatchLimits): PendingLaunch<B>[] {
  const window = lim.window ?? 256;
  const maxCode = lim.maxCode ?? MAX_BATCH_CODE;
  const parsed = launches.map((l) => (l.alone || l.code.length > maxCode ? undefined : parseKernel(l.code, l.entry)));
  const placed = new Uint8Array(launches.length);
  const out: PendingLaunch<B>[] = [];
  for (let i = 0; i < launches.length; i++) {
    if (placed[i]) continue;
    placed[i] = 1;
    const k = parsed[i];
    if (!k || k.bindings.length !== launches[i].ranges.length) {
      out.push(launches[i]);
      continue;
    }
    const batch = new Batch<B>();
    batch.add(launches[i], k, batch.plan(launches[i], k).map);
    const passed: PendingLaunch<B>[] = [];
    for (let j = i + 1; j < launches.length && j <= i + window; j++) {
      if (placed[j]) continue;
      const l = launches[j], kj = parsed[j];
      const ok = kj && kj.bindings.length === l.ranges.length &&
        fitsThreads([...batch.members.map((m) => m.kernel), kj], Math.max(batch.threads, threadsOf(kj))) &&
        batch.workgroupBytes + kj.workgroupBytes <= lim.maxWorkgroupStorage &&
        batch.code + l.code.length <= maxCode &&
        batch.members.every((m) => independent(m.launch, l)) && passed.every((p) => independent(p, l));
      const fit = ok ? batch.plan(l, kj!) : undefined;
      if (fit && fit.total <= lim.maxBindings) {
        batch.add(l, kj!, fit.map);
        placed[j] = 1;
      } else passed.push(l);
    }
    out.push(batch.members.length === 1 ? launches[i] : merged(batch, lim));
  }
  return out;
}

function merged<B>(batch: Batch<B>, lim: BatchLimits): PendingLaunch<B> {
  const parts: MergePart[] = batch.members.map((m) => ({
    kernel: m.kernel,
    workgroups: m.launch.workgroups,
    bindingMap: m.map,
  }));
  const code = mergeKernels(parts, batch.bound.map((b) => b.type));
  return {
    code,
    workgroups: grid(mergedWorkgroups(parts), lim.maxWorkgroupsPerDim),
    ranges: batch.bound.map((b) => b.range),
    written: batch.bound.map((b) => b.written),
  };
}
