/**
 * Where the WebGPU executor keeps a compiled graph's memory, within any adapter's limits.
 *
 * Every byte a graph owns — its intermediates, its inputs and constants, and the scratch of each kernel — is
 * packed by liveness ({@link packIntervals}) into as many arena buffers as `maxBufferSize` requires, each value
 * wholly inside one arena. A kernel's scratch is live only while its node runs, so it shares bytes with values
 * that are dead by then; inputs and constants live for the whole step. A value (or parameter) larger than one
 * storage binding (`maxStorageBufferBindingSize`) is stored as segments (kernels/segments.ts), each placed on its
 * own, and kernels that support it bind it segment by segment; any other binding above the limit is an error at
 * compile time naming the node, the tensor, its bytes and the limit.
 *
 * {@link plannedDeviceBytes} makes the same layout without a device, for the memory plan of a training step.
 * @module
 */
import type { Graph } from "../graph/graph.ts";
import { getOp } from "../graph/op.ts";
import { fmtInfo, type TensorInfo } from "../graph/types.ts";
import type { BindingRef, KernelContext, Lowered, LowerNode, SegmentLayout } from "../../kernels/kernel.ts";
import { elemBytes, segmentElems, segmentLayout } from "../../kernels/segments.ts";
import { lowering } from "../../kernels/mod.ts";
import { packIntervals, type PackItem } from "./pack.ts";
import { type Plan, planGraph, valueBytes } from "./plan.ts";

/** The limits memory is laid out under. */
export interface MemoryLimits {
  /** Largest buffer (an arena never exceeds it). */
  readonly maxBufferBytes: number;
  /** Largest storage binding (a value above it is segmented). */
  readonly maxBindingBytes: number;
  /** Offset alignment of every placed value (the adapter's storage offset alignment, at least 16). */
  readonly align: number;
}

/** Caps below the adapter's own limits (e.g. to test the segmented paths on an adapter with large ones). */
export interface LimitCaps {
  maxStorageBufferBindingSize?: number;
  maxBufferSize?: number;
}

/** The limits of an adapter, each lowered to its cap where one is given. */
export function memoryLimits(
  adapter: { maxBufferSize: number; maxStorageBufferBindingSize: number; minStorageBufferOffsetAlignment: number },
  caps: LimitCaps = {},
): MemoryLimits {
  const align = Math.max(16, adapter.minStorageBufferOffsetAlignment);
  const buffer = Math.min(adapter.maxBufferSize, caps.maxBufferSize ?? Infinity);
  const binding = Math.min(adapter.maxStorageBufferBindingSize, caps.maxStorageBufferBindingSize ?? Infinity, buffer);
  // Bindings of values start at aligned offsets; keep the limits themselves multiples of 4.
  return { maxBufferBytes: Math.floor(buffer / 4) * 4, maxBindingBytes: Math.floor(binding / 4) * 4, align };
}

/** A byte range of one arena. */
export interface Slot {
  readonly arena: number;
  readonly offset: number;
  readonly size: number;
}

/** A compiled graph's memory: the arenas' sizes and every value's and scratch buffer's slots. */
export interface MemoryLayout {
  /** Bytes of each arena buffer. */
  readonly arenaBytes: number[];
  /** Sum of {@link arenaBytes}. */
  readonly totalBytes: number;
  /** Root value id (op, input or const) → its slot, or one slot per segment. */
  readonly values: Map<number, Slot[]>;
  /** Node index → one slot per scratch buffer of its lowering. */
  readonly scratch: Map<number, Slot[]>;
}

/** The segment layout of every value of `graph` that the graph stores itself (op results, inputs, consts). */
export function graphSegments(graph: Graph, plan: Plan, lim: MemoryLimits): Map<number, SegmentLayout> {
  const out = new Map<number, SegmentLayout>();
  for (const v of graph.values) {
    if (v.kind === "param" || (v.kind === "op" && plan.root[v.id] !== v.id)) continue;
    const l = segmentLayout(v, lim.maxBindingBytes);
    if (l) out.set(v.id, l);
  }
  return out;
}

/** The {@link LowerNode.segments} of node `ni`: the layouts of its segmented operands, or undefined when none is. */
export function nodeSegments(
  graph: Graph,
  plan: Plan,
  ni: number,
  segOf: (root: number) => SegmentLayout | undefined,
): LowerNode["segments"] {
  const n = graph.nodes[ni];
  const of = (id: number) => segOf(plan.root[id]);
  const inputs = n.inputs.map(of), outputs = n.outputs.map(of);
  return [...inputs, ...outputs].some((l) => l) ? { inputs, outputs } : undefined;
}

/**
 * Lays out `plan`'s memory: op results by their liveness, inputs and consts over the whole step, each node's
 * scratch (`scratch`: node index → byte sizes) at its own step; segmented values segment by segment.
 */
export function layoutMemory(
  plan: Plan,
  scratch: ReadonlyMap<number, readonly number[]>,
  lim: MemoryLimits,
  segments: ReadonlyMap<number, SegmentLayout>,
): MemoryLayout {
  const graph = plan.graph;
  const end = plan.order.length;
  const items: PackItem[] = [];
  const owners: ({ value: number } | { node: number })[] = [];
  const sizes: number[] = [];
  const aligned = (b: number) => Math.max(lim.align, Math.ceil(b / lim.align) * lim.align);
  const add = (bytes: number, a: number, b: number, owner: { value: number } | { node: number }) => {
    items.push({ size: aligned(bytes), a, b });
    sizes.push(Math.max(4, bytes));
    owners.push(owner);
  };
  const addValue = (v: TensorInfo & { id: number }, a: number, b: number) => {
    const l = segments.get(v.id);
    if (!l) return add(valueBytes(v as never), a, b, { value: v.id });
    for (let s = 0; s < l.count; s++) add(elemBytes(segmentElems(l, s), v.dtype), a, b, { value: v.id });
  };
  for (const [r, [a, b]] of plan.live) addValue(graph.values[r], a, b);
  for (const v of graph.values) if (v.kind === "input" || v.kind === "const") addValue(v, 0, end);
  plan.order.forEach((ni, step) => {
    for (const bytes of scratch.get(ni) ?? []) {
      if (bytes > lim.maxBindingBytes) {
        throw new Error(
          `node ${ni} "${graph.nodes[ni].op}" asks for a ${bytes}-byte scratch buffer; ` +
            `this adapter binds at most ${lim.maxBindingBytes} bytes`,
        );
      }
      add(Math.ceil(bytes / 4) * 4, step, step, { node: ni });
    }
  });
  const cap = Math.floor(lim.maxBufferBytes / lim.align) * lim.align;
  const packed = packIntervals(items, cap);
  const values = new Map<number, Slot[]>(), scratchSlots = new Map<number, Slot[]>();
  owners.forEach((o, i) => {
    const slot = { ...packed.placements[i], size: sizes[i] };
    const [map, key] = "value" in o ? [values, o.value] : [scratchSlots, o.node];
    const list = map.get(key) ?? [];
    list.push(slot);
    map.set(key, list);
  });
  const arenaBytes = packed.arenaBytes.map((b) => Math.max(256, b));
  return { arenaBytes, totalBytes: arenaBytes.reduce((a, b) => a + b, 0), values, scratch: scratchSlots };
}

/** A bindable byte range of a buffer. */
export interface Loc {
  readonly buffer: GPUBuffer;
  readonly offset: number;
  readonly size: number;
}

/**
 * The buffer range binding `b` of node `ni` refers to. `segs(id)` gives a value's locations (one, or one per
 * segment); `scratch` the node's scratch buffers. Throws naming the node and the tensor when the binding is
 * misaligned, binds a segmented value whole, or exceeds the binding limit.
 */
export function resolveBinding(
  graph: Graph,
  ni: number,
  b: BindingRef,
  segs: (id: number) => Loc[],
  scratch: readonly Loc[],
  lim: MemoryLimits & { minStorageBufferOffsetAlignment: number },
): Loc {
  const n = graph.nodes[ni];
  let loc: Loc;
  let what: string;
  if ("scratch" in b) {
    loc = scratch[b.scratch];
    what = `scratch buffer ${b.scratch}`;
  } else {
    const id = "input" in b ? n.inputs[b.input] : n.outputs[b.output];
    const v = graph.values[id];
    what = `${"input" in b ? `input ${b.input}` : `output ${b.output}`}${v.name ? ` "${v.name}"` : ""} (${fmtInfo(v)})`;
    const list = segs(id);
    if (b.segment !== undefined) {
      if (!(b.segment >= 0 && b.segment < list.length)) {
        throw new Error(`node ${ni} "${n.op}" binds segment ${b.segment} of ${what}, which has ${list.length}`);
      }
      loc = list[b.segment];
    } else if (list.length > 1) {
      throw new Error(
        `node ${ni} "${n.op}" binds ${what} whole: ${valueBytes(v)} bytes, over this adapter's storage binding ` +
          `limit of ${lim.maxBindingBytes} bytes, and its WebGPU kernel does not read it in segments`,
      );
    } else loc = list[0];
  }
  if (b.offset !== undefined || b.size !== undefined) {
    const off = b.offset ?? 0;
    if (off % lim.minStorageBufferOffsetAlignment) {
      throw new Error(`node "${n.op}" binds at byte offset ${off}, not a multiple of the adapter's alignment`);
    }
    loc = { buffer: loc.buffer, offset: loc.offset + off, size: b.size ?? loc.size - off };
  }
  if (loc.size > lim.maxBindingBytes) {
    throw new Error(
      `node ${ni} "${n.op}" binds ${loc.size} bytes of ${what}; this adapter binds at most ${lim.maxBindingBytes}`,
    );
  }
  return loc;
}

const info = (t: TensorInfo) => [t.shape, t.dtype];

/** A kernel context for planning without a device (a software adapter's defaults; scratch sizes only). */
function planningContext(lim: MemoryLimits): KernelContext {
  return {
    f16: false,
    maxWorkgroupsPerDim: 65535,
    maxWorkgroupStorage: 16384,
    maxInvocations: 256,
    maxBindingBytes: lim.maxBindingBytes,
    tuned: new Map(),
  };
}

/**
 * Lowers every live node of `plan` with `ctx` (views have no kernel), naming the node when one fails. Nodes alike
 * (op, operand infos and segments, attrs: every layer of a model) are lowered once.
 */
export function lowerPlan(
  plan: Plan,
  ctx: KernelContext,
  segOf: (root: number) => SegmentLayout | undefined,
): Map<number, Lowered> {
  const graph = plan.graph;
  const out = new Map<number, Lowered>();
  const seen = new Map<string, Lowered>();
  for (const ni of plan.order) {
    const n = graph.nodes[ni];
    if (getOp(n.op).view) continue;
    const node: LowerNode = {
      inputs: n.inputs.map((i) => graph.values[i]),
      outputs: n.outputs.map((o) => graph.values[o]),
      attrs: n.attrs,
      segments: nodeSegments(graph, plan, ni, segOf),
    };
    const key = JSON.stringify([n.op, node.inputs.map(info), node.outputs.map(info), n.attrs, node.segments]);
    const known = seen.get(key);
    if (known) {
      out.set(ni, known);
      continue;
    }
    try {
      const l = lowering(n.op)(node, ctx);
      seen.set(key, l);
      out.set(ni, l);
    } catch (e) {
      throw new Error(
        `lowering node ${ni} "${n.op}" (${node.inputs.map(fmtInfo).join("; ")}): ${(e as Error).message}`,
      );
    }
  }
  return out;
}

/**
 * Device bytes the WebGPU executor would own for `graph` under `lim` (default: no limits that bind): its arenas,
 * holding intermediates, inputs, constants and kernel scratch. Parameters and optimizer states are not counted
 * (they live in the executor's store; those over a binding are taken as segmented, as the store keeps them).
 * Every binding of every kernel is checked against `lim` as the executor checks it, so a graph the executor would
 * refuse (a tensor over the binding limit that its kernel cannot read in segments) throws here, naming it.
 */
export function plannedDeviceBytes(
  graph: Graph,
  outputs?: readonly string[],
  lim: MemoryLimits = { maxBufferBytes: 2 ** 52, maxBindingBytes: 2 ** 52, align: 256 },
): number {
  const plan = planGraph(graph, outputs, lim.align);
  const segments = graphSegments(graph, plan, lim);
  const params = new Map<number, SegmentLayout | undefined>();
  for (const id of graph.params.values()) params.set(id, segmentLayout(graph.values[id], lim.maxBindingBytes));
  const segOf = (r: number) => segments.get(r) ?? params.get(r);
  const lowered = lowerPlan(plan, planningContext(lim), segOf);
  const scratch = new Map([...lowered].map(([ni, l]) => [ni, l.scratch ?? []]));
  const layout = layoutMemory(plan, scratch, lim, segments);
  // The executor's binding checks, on stand-in buffers.
  const none = undefined as unknown as GPUBuffer;
  const slotLocs = (slots: readonly Slot[]) => slots.map((sl) => ({ buffer: none, offset: sl.offset, size: sl.size }));
  const locsOf = (id: number): Loc[] => {
    const r = plan.root[id];
    const v = graph.values[r];
    if (v.kind === "param") {
      const l = params.get(r);
      const sizes = l
        ? Array.from({ length: l.count }, (_, s) => elemBytes(segmentElems(l, s), v.dtype))
        : [Math.max(4, valueBytes(v))];
      return sizes.map((size) => ({ buffer: none, offset: 0, size }));
    }
    const locs = slotLocs(layout.values.get(r) ?? []);
    return locs.length === 1 && r !== id ? [{ ...locs[0], size: Math.max(4, valueBytes(graph.values[id])) }] : locs;
  };
  const check = { ...lim, minStorageBufferOffsetAlignment: Math.min(lim.align, 256) };
  for (const [ni, low] of lowered) {
    const sc = slotLocs(layout.scratch.get(ni) ?? []);
    for (const l of low.launches) for (const b of l.bindings) resolveBinding(graph, ni, b, locsOf, sc, check);
  }
  return layout.totalBytes;
}
