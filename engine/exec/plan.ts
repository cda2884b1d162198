/**
 * Planning shared by the executors: dead-node elimination, node order (effects last), view
 * aliasing, liveness, and the arena layout of every intermediate (peak bytes known before running).
 * @module
 */
import type { Graph } from "../graph/graph.ts";
import { getOp } from "../graph/op.ts";
import { DTYPE_BYTES, numel, type Value } from "../graph/types.ts";
import { packIntervals } from "./pack.ts";

/** A graph ready to run: live nodes in order and memory slots for op outputs. */
export interface Plan {
  readonly graph: Graph;
  /** Node ids in execution order (side-effect nodes last). */
  readonly order: number[];
  /** Value id → root value id whose storage it shares (views point to their source). */
  readonly root: Int32Array;
  /** Root op value id → byte offset in the arena. */
  readonly offsets: Map<number, number>;
  /** Root op value id → byte size (aligned). */
  readonly sizes: Map<number, number>;
  /** Arena bytes needed: the peak of live intermediates. */
  readonly arenaBytes: number;
  /** Outputs to keep alive to the end. */
  readonly outputs: Map<string, number>;
  /**
   * Root op value id → the steps (indices into {@link steps}) it is live over, first to last inclusive; outputs
   * live to `steps.length`. Internal roots have none. Executors that lay memory out themselves (WebGPU: several
   * arenas, kernel scratch) pack these.
   */
  readonly live: Map<number, readonly [number, number]>;
  /** The nodes grouped into the units that run as one (one per node unless a grouper fused some). */
  readonly steps: readonly PlanStep[];
}

/** Nodes that run as one unit (e.g. one fused kernel); `internal` roots live only inside it and get no storage. */
export interface PlanStep {
  readonly nodes: readonly number[];
  readonly internal?: readonly number[];
}

/**
 * Groups the ordered live nodes into steps (see engine/exec/fuse.ts). Every node of `order` must land in exactly
 * one step, and the steps must keep every value's producer before its consumers.
 */
export type Grouper = (
  graph: Graph,
  order: readonly number[],
  root: Int32Array,
  outputs: Map<string, number>,
) => PlanStep[];

/** Bytes a value occupies, rounded up to 4. */
export function valueBytes(v: Value): number {
  return Math.ceil((numel(v.shape) * DTYPE_BYTES[v.dtype]) / 4) * 4;
}

/**
 * Plans `graph` for the named outputs (all graph outputs when omitted). Nodes with effects are always
 * kept and run after every other node, so they never overwrite a value that something still reads.
 */
export function planGraph(graph: Graph, outputs?: readonly string[], align = 256, group?: Grouper): Plan {
  const outs = new Map<string, number>();
  for (const name of outputs ?? graph.outputs.keys()) {
    const id = graph.outputs.get(name);
    if (id === undefined) {
      throw new Error(`no graph output "${name}"; outputs are: ${[...graph.outputs.keys()].join(", ") || "(none)"}`);
    }
    outs.set(name, id);
  }
  const nodes = graph.nodes;
  // Liveness of nodes: backwards from outputs and effects.
  const liveVal = new Uint8Array(graph.values.length);
  const liveNode = new Uint8Array(nodes.length);
  for (const id of outs.values()) liveVal[id] = 1;
  for (let i = nodes.length - 1; i >= 0; i--) {
    const n = nodes[i];
    const eff = (getOp(n.op).effects?.length ?? 0) > 0;
    if (eff || n.outputs.some((o) => liveVal[o])) {
      liveNode[i] = 1;
      for (const v of n.inputs) liveVal[v] = 1;
    }
  }
  const normal: number[] = [], effects: number[] = [];
  for (let i = 0; i < nodes.length; i++) {
    if (!liveNode[i]) continue;
    ((getOp(nodes[i].op).effects?.length ?? 0) > 0 ? effects : normal).push(i);
  }
  const order = [...normal, ...effects];

  // Views share their source's storage.
  const root = new Int32Array(graph.values.length).map((_, i) => i);
  for (const i of order) {
    const n = nodes[i];
    if (getOp(n.op).view) root[n.outputs[0]] = root[n.inputs[0]];
  }
  const steps: PlanStep[] = group ? group(graph, order, root, outs) : order.map((n) => ({ nodes: [n] }));
  const internal = new Set(steps.flatMap((s) => s.internal ?? []));
  // Liveness intervals (in steps) of op-produced roots that get storage.
  const first = new Map<number, number>(), last = new Map<number, number>();
  steps.forEach(({ nodes: ns }, step) => {
    for (const ni of ns) {
      const n = nodes[ni];
      for (const o of n.outputs) {
        const r = root[o];
        if (graph.values[r].kind !== "op" || internal.has(r)) continue;
        if (!first.has(r)) first.set(r, step);
        last.set(r, Math.max(last.get(r) ?? step, step));
      }
      for (const v of n.inputs) {
        const r = root[v];
        if (graph.values[r].kind === "op" && !internal.has(r)) last.set(r, Math.max(last.get(r) ?? step, step));
      }
    }
  });
  for (const id of outs.values()) {
    const r = root[id];
    if (internal.has(r)) throw new Error(`internal: output value ${id} was planned without storage`);
    if (graph.values[r].kind === "op") last.set(r, steps.length);
  }
  // Greedy offset assignment (engine/exec/pack.ts): largest first, at the lowest offset free over its interval.
  const sizes = new Map<number, number>();
  const live = new Map<number, readonly [number, number]>();
  const roots = [...first.keys()];
  const items = roots.map((r) => {
    const size = Math.ceil(valueBytes(graph.values[r]) / align) * align || align;
    sizes.set(r, size);
    live.set(r, [first.get(r)!, last.get(r)!]);
    return { size, a: first.get(r)!, b: last.get(r)! };
  });
  const packed = packIntervals(items);
  const offsets = new Map<number, number>();
  roots.forEach((r, i) => offsets.set(r, packed.placements[i].offset));
  const arenaBytes = packed.arenaBytes[0] ?? 0;
  return { graph, order, root, offsets, sizes, arenaBytes, outputs: outs, live, steps };
}
