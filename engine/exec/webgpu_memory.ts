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
import { lowerFused } from "../../kernels/fused.ts";
import { packIntervals, type PackItem } from "./pack.ts";
import { type Plan, planGraph, type PlanStep, valueBytes } from "./plan.ts";
import { type FusedUnit, fuseSteps, type Fusion, fusionDefault } from "./fuse.ts";

/** The limits memory is laid out under. */
export interface MemoryLimits {
  /** Largest buffer (an arena never exceeds it). */
  readonly maxBufferBytes: number;
  /** Largest storage binding (a value above it is segmented). */
  readonly maxBindingBytes: number;
  /** Offset alignment of every placed value (the adapter's storage offset alignment, at least 16). */
  readonly align: number;
  /** Storage buffers one kernel may bind (the adapter's maxStorageBuffersPerShaderStage; fusion stays within it). */
  readonly maxStorageBuffers?: number;
}

/** Caps below the adapter's own limits (e.g. to test the segmented paths on an adapter with large ones). */
export interface LimitCaps {
  maxStorageBufferBindingSize?: number;
  maxBufferSize?: number;
}

/** The limits of an adapter, each lowered to its cap where one is given. */
export function memoryLimits(
  adapter: {
    maxBufferSize: number;
    maxStorageBufferBindingSize: number;
    minStorageBufferOffsetAlignment: number;
    maxStorageBuffersPerShaderStage?: number;
  },
  caps: LimitCaps = {},
): MemoryLimits {
  const align = Math.max(16, adapter.minStorageBufferOffsetAlignment);
  const buffer = Math.min(adapter.maxBufferSize, caps.maxBufferSize ?? Infinity);
  const binding = Math.min(adapter.maxStorageBufferBindingSize, caps.maxStorageBufferBindingSize ?? Infinity, buffer);
  // Bindings of values start at aligned offsets; keep the limits themselves multiples of 4.
  return {
    maxBufferBytes: Math.floor(buffer / 4) * 4,
    maxBindingBytes: Math.floor(binding / 4) * 4,
    align,
    maxStorageBuffers: adapter.maxStorageBuffersPerShaderStage,
  };
}

/**
 * Most storage buffers a fused kernel binds: the adapter's limit, capped at 16 so that a plan made without a
 * device (the memory plan, {@link plannedDeviceBytes}) groups the nodes as every adapter with 16 or more does.
 */
export const FUSE_MAX_BINDINGS = 16;

/**
 * The WebGPU plan of `graph`: {@link planGraph} with elementwise fusion (engine/exec/fuse.ts) when `fuse`, under
 * `lim`. Nodes that read or write a value over one storage binding (segmented) are never fused.
 */
export function planWebGpu(
  graph: Graph,
  outputs: readonly string[] | undefined,
  lim: MemoryLimits,
  fuse: boolean = fusionDefault(),
): { plan: Plan; fusion?: Fusion } {
  let fusion: Fusion | undefined;
  const maxBindings = Math.min(lim.maxStorageBuffers ?? FUSE_MAX_BINDINGS, FUSE_MAX_BINDINGS);
  const plan = planGraph(
    graph,
    outputs,
    lim.align,
    fuse
      ? (g, order, root, outs) =>
        (fusion = fuseSteps(g, order, root, outs, { maxBindings, maxBindingBytes: lim.maxBindingBytes })).steps
      : undefined,
  );
  return { plan, fusion };
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
  /** Step index (into `plan.steps`) → one slot per scratch buffer of its lowering. */
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
 * Lays out `plan`'s memory: op results by their liveness, inputs and consts over the whole step, each step's
 * scratch (`scratch`: index into `plan.steps` → byte sizes) at its own step; segmented values segment by segment.
 */
export function layoutMemory(
  plan: Plan,
  scratch: ReadonlyMap<number, readonly number[]>,
  lim: MemoryLimits,
  segments: ReadonlyMap<number, SegmentLayout>,
): MemoryLayout {
  const graph = plan.graph;
  const end = plan.steps.length;
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
  plan.steps.forEach((st, step) => {
    for (const bytes of scratch.get(step) ?? []) {
      if (bytes > lim.maxBindingBytes) {
        throw new Error(
          `${stepLabel(graph, st)} asks for a ${bytes}-byte scratch buffer; ` +
            `this adapter binds at most ${lim.maxBindingBytes} bytes`,
        );
      }
      add(Math.ceil(bytes / 4) * 4, step, step, { node: step });
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
 * The buffer range binding `b` of step `n` (a node or a fused unit) refers to. `segs(id)` gives a value's
 * locations (one, or one per segment); `scratch` the step's scratch buffers. Throws naming the node and the tensor
 * when the binding is misaligned, binds a segmented value whole, or exceeds the binding limit.
 */
export function resolveBinding(
  graph: Graph,
  n: Pick<LoweredStep, "label" | "op" | "inputs" | "outputs">,
  b: BindingRef,
  segs: (id: number) => Loc[],
  scratch: readonly Loc[],
  lim: MemoryLimits & { minStorageBufferOffsetAlignment: number },
): Loc {
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
        throw new Error(`${n.label} binds segment ${b.segment} of ${what}, which has ${list.length}`);
      }
      loc = list[b.segment];
    } else if (list.length > 1) {
      throw new Error(
        `${n.label} binds ${what} whole: ${valueBytes(v)} bytes, over this adapter's storage binding ` +
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
      `${n.label} binds ${loc.size} bytes of ${what}; this adapter binds at most ${lim.maxBindingBytes}`,
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

/** One plan step as it runs: a node, or a fused unit of several (engine/exec/fuse.ts). */
export interface LoweredStep {
  /** How errors name it: `node 12 "add"`, or `fused nodes 3, 4 "fused(matmul,add)"`. */
  readonly label: string;
  readonly op: string;
  /** Value ids its bindings `{ input: i }` / `{ output: i }` refer to. */
  readonly inputs: readonly number[];
  readonly outputs: readonly number[];
  readonly lowered: Lowered;
  /** Indices of inputs the kernel writes (the op's effects). */
  readonly effects: readonly number[];
  /** Whether an operand is stored in segments (its launches bind segments: dispatch batching leaves them alone). */
  readonly segmented: boolean;
}

/** The op a plan step runs: its node's, or `fused(op,op,…)` for a unit of several. */
function stepOp(graph: Graph, step: PlanStep): string {
  if (step.nodes.length === 1) return graph.nodes[step.nodes[0]].op;
  const ops = step.nodes.filter((ni) => !getOp(graph.nodes[ni].op).view).map((ni) => graph.nodes[ni].op);
  return `fused(${ops.join(",")})`;
}

/** How errors name a plan step. */
export function stepLabel(graph: Graph, step: PlanStep): string {
  const op = stepOp(graph, step);
  return step.nodes.length === 1 ? `node ${step.nodes[0]} "${op}"` : `fused nodes ${step.nodes.join(", ")} "${op}"`;
}

/**
 * Lowers every step of `plan` with `ctx` (views have no kernel; fused units, `fusion`'s, one kernel each), naming
 * the node when one fails; keyed by step index. Nodes alike (op, operand infos and segments, attrs: every layer of a
 * model) are lowered once.
 */
export function lowerPlan(
  plan: Plan,
  ctx: KernelContext,
  segOf: (root: number) => SegmentLayout | undefined,
  units?: ReadonlyMap<PlanStep, FusedUnit>,
): Map<number, LoweredStep> {
  const graph = plan.graph;
  const out = new Map<number, LoweredStep>();
  const seen = new Map<string, Lowered>();
  plan.steps.forEach((step, si) => {
    const label = stepLabel(graph, step);
    const unit = units?.get(step);
    if (unit) {
      const ids = [...unit.inputs, ...unit.outputs];
      const seg = ids.find((id) => segOf(plan.root[id]));
      if (seg !== undefined) {
        throw new Error(`internal: ${label} binds value ${seg}, which is stored in segments; fusion must leave it out`);
      }
      let lowered: Lowered;
      try {
        lowered = lowerFused(unit.spec, ctx);
      } catch (e) {
        throw new Error(`lowering ${label}: ${(e as Error).message}`);
      }
      const op = stepOp(graph, step);
      out.set(si, { label, op, inputs: unit.inputs, outputs: unit.outputs, lowered, effects: [], segmented: false });
      return;
    }
    if (step.nodes.length !== 1) throw new Error(`internal: step ${si} has ${step.nodes.length} nodes but no unit`);
    const ni = step.nodes[0];
    const n = graph.nodes[ni];
    if (getOp(n.op).view) return;
    const node: LowerNode = {
      inputs: n.inputs.map((i) => graph.values[i]),
      outputs: n.outputs.map((o) => graph.values[o]),
      attrs: n.attrs,
      segments: nodeSegments(graph, plan, ni, segOf),
    };
    const base = { label, op: n.op, inputs: n.inputs, outputs: n.outputs, segmented: !!node.segments };
    const effects = getOp(n.op).effects ?? [];
    const key = JSON.stringify([n.op, node.inputs.map(info), node.outputs.map(info), n.attrs, node.segments]);
    const known = seen.get(key);
    if (known) {
      out.set(si, { ...base, lowered: known, effects });
      return;
    }
    try {
      const l = lowering(n.op)(node, ctx);
      seen.set(key, l);
      out.set(si, { ...base, lowered: l, effects });
    } catch (e) {
      throw new Error(
        `lowering node ${ni} "${n.op}" (${node.inputs.map(fmtInfo).join("; ")}): ${(e as Error).message}`,
      );
    }
  });
  return out;
}

/**
 * Device bytes the WebGPU executor would own for `graph` under `lim` (default: no limits that bind): its arenas,
 * holding intermediates, inputs, constants and kernel scratch. Parameters and optimizer states are not counted
 * (they live in the executor's store; those over a binding are taken as segmented, as the store keeps them).
 * Every binding of every kernel is checked against `lim` as the executor checks it, so a graph the executor would
 * refuse (a tensor over the binding limit that its kernel cannot read in segments) throws here, naming it. The plan
 * is fused as the executor fuses it (`fuse`: the executor's default, WHETSTONE_FUSE).
 */
export function plannedDeviceBytes(
  graph: Graph,
  outputs?: readonly string[],
  lim: MemoryLimits = { maxBufferBytes: 2 ** 52, maxBindingBytes: 2 ** 52, align: 256 },
  fuse: boolean = fusionDefault(),
): number {
  const { plan, fusion } = planWebGpu(graph, outputs, lim, fuse);
  const segments = graphSegments(graph, plan, lim);
  const params = new Map<number, SegmentLayout | undefined>();
  for (const id of graph.params.values()) params.set(id, segmentLayout(graph.values[id], lim.maxBindingBytes));
  const segOf = (r: number) => segments.get(r) ?? params.get(r);
  const lowered = lowerPlan(plan, planningContext(lim), segOf, fusion?.units);
  const scratch = new Map([...lowered].map(([si, l]) => [si, l.lowered.scratch ?? []]));
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
  for (const [si, low] of lowered) {
    const sc = slotLocs(layout.scratch.get(si) ?? []);
    for (const l of low.lowered.launches) for (const b of l.bindings) resolveBinding(graph, low, b, locsOf, sc, check);
  }
  return layout.totalBytes;
}
