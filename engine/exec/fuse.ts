/**
 * Elementwise fusion for the WebGPU planner: groups chains of elementwise ops (arithmetic, broadcasts inside the
 * chain, activations and their backward ops, casts to f32) into one kernel each, and attaches a group
 *
 * - as the epilogue of a matmul or reduction whose result only the group reads (bias, residual add, scale, …),
 * - as the prologue of a reduction when the group computes nothing but the reduction's input (Σ x², …).
 *
 * Values produced and consumed inside a unit are computed in registers and get no arena slot. The WGSL comes from
 * kernels/fused.ts; the planner (plan.ts) takes the units as its steps.
 *
 * A unit runs where its last node ran, so it is only formed when every value it stores is read by no other node
 * before that point (which also rules out cycles through nodes outside it). Nodes with effects are never fused and
 * still run last. Views (reshape) of values inside a unit are followed: they share the value's index. Nodes that read
 * or write a value over `maxBindingBytes` (stored in segments, kernels/segments.ts) are never fused.
 * @module
 */
import type { Graph } from "../graph/graph.ts";
import { getOp } from "../graph/op.ts";
import { DTYPE_BYTES, numel, type TensorInfo } from "../graph/types.ts";
import type { PlanStep } from "./plan.ts";
import { ANCHOR_OPS, type FusedOp, type FusedSpec, FUSIBLE_OPS } from "../../kernels/fused.ts";

/** Fusion options. */
export interface FuseOptions {
  /** Most storage buffers one kernel may bind (the adapter's maxStorageBuffersPerShaderStage). */
  maxBindings: number;
  /**
   * Largest storage binding: a node reading or writing a value over it (stored in segments, kernels/segments.ts)
   * is never fused. Default: no limit.
   */
  maxBindingBytes?: number;
}

/** A fused unit: what its kernel binds, and the spec kernels/fused.ts lowers. */
export interface FusedUnit {
  /** Value ids bound as inputs: the anchor's bound operands, then the group's external inputs. */
  readonly inputs: number[];
  /** Value ids stored. */
  readonly outputs: number[];
  readonly spec: FusedSpec;
  /** The graph nodes it replaces (for error messages and counts). */
  readonly nodes: number[];
}

/** The result of {@link fuseSteps}: plan steps, and for the fused ones, their units. */
export interface Fusion {
  readonly steps: PlanStep[];
  readonly units: Map<PlanStep, FusedUnit>;
}

interface Group {
  members: number[];
  domain: number;
  anchor?: number;
  prologue?: Group;
  /** Set when this group became another unit's prologue. */
  absorbed?: boolean;
}

/** Environment switch: `WHETSTONE_FUSE=off` (or 0/false) turns fusion off by default. */
export function fusionDefault(): boolean {
  let v: string | undefined;
  try {
    v = Deno.env.get("WHETSTONE_FUSE");
  } catch {
    v = undefined; // no env permission: the default
  }
  return !(v && /^(off|0|false|no)$/i.test(v.trim()));
}

/** Groups the ordered nodes of `graph` into plan steps, fusing elementwise chains (see the module doc). */
export function fuseSteps(
  graph: Graph,
  order: readonly number[],
  root: Int32Array,
  outputs: Map<string, number>,
  opts: FuseOptions,
): Fusion {
  const nodes = graph.nodes, values = graph.values;
  const pos = new Map<number, number>();
  order.forEach((n, i) => pos.set(n, i));
  const isView = (n: number) => getOp(nodes[n].op).view === true;
  // Consumers (non-view nodes) of each root; roots that are graph outputs.
  const uses = new Map<number, number[]>();
  for (const ni of order) {
    if (isView(ni)) continue;
    for (const v of nodes[ni].inputs) {
      const r = root[v];
      if (!uses.has(r)) uses.set(r, []);
      uses.get(r)!.push(ni);
    }
  }
  const isOut = new Set([...outputs.values()].map((v) => root[v]));
  const producer = (v: number): number | undefined => values[root[v]].node;
  const f32 = (ids: readonly number[]) => ids.every((o) => values[o].dtype === "f32");
  const maxBytes = opts.maxBindingBytes ?? Infinity;
  const segmented = (ni: number) =>
    [...nodes[ni].inputs, ...nodes[ni].outputs].some((v) => {
      const r = values[root[v]];
      return Math.ceil((numel(r.shape) * DTYPE_BYTES[r.dtype]) / 4) * 4 > maxBytes;
    });
  const fusible = (ni: number) => {
    const n = nodes[ni];
    if (segmented(ni)) return false;
    if (!FUSIBLE_OPS.has(n.op) || (getOp(n.op).effects?.length ?? 0) > 0 || !f32(n.outputs)) return false;
    const m = numel(values[n.outputs[0]].shape);
    return m > 0 && n.outputs.every((o) => numel(values[o].shape) === m);
  };
  const anchorable = (ni: number) => {
    const n = nodes[ni];
    if (segmented(ni)) return false;
    return ANCHOR_OPS.has(n.op) && n.outputs.length === 1 && f32(n.outputs) && numel(values[n.outputs[0]].shape) > 0;
  };

  /** The nodes a unit runs, its stored roots and external inputs; undefined when it may not be formed. */
  const analyse = (members: readonly number[], anchor?: number, prologue?: readonly number[]) => {
    const all = [...(prologue ?? []), ...(anchor !== undefined ? [anchor] : []), ...members];
    const inUnit = new Set(all);
    const last = Math.max(...all.map((n) => pos.get(n)!));
    const produced = new Set<number>();
    for (const n of all) for (const o of nodes[n].outputs) produced.add(root[o]);
    const stores: number[] = [];
    for (const r of produced) {
      const outside = (uses.get(r) ?? []).filter((u) => !inUnit.has(u));
      if (outside.some((u) => pos.get(u)! <= last)) return undefined;
      if (outside.length || isOut.has(r)) stores.push(r);
    }
    const exts = new Set<number>();
    for (const n of [...(prologue ?? []), ...members]) {
      for (const v of nodes[n].inputs) if (!produced.has(root[v])) exts.add(v);
    }
    const anchorBound = anchor === undefined || prologue?.length ? 0 : nodes[anchor].op === "matmul" ? 2 : 1;
    if (anchorBound + exts.size + stores.length > opts.maxBindings) return undefined;
    return { stores, exts: [...exts], produced, last };
  };

  /** Whether `members` read a matmul result of their domain's size (a possible epilogue anchor). */
  const matmulAnchors = (members: readonly number[], domain: number) =>
    members.some((m) =>
      nodes[m].inputs.some((v) => {
        const a = producer(v);
        return a !== undefined && nodes[a].op === "matmul" && anchorable(a) && numel(values[root[v]].shape) === domain;
      })
    );

  // 1. Elementwise groups, greedily in order: a node joins the groups of its producers when the result is legal.
  const groups: Group[] = [];
  const groupOf = new Map<number, Group>();
  for (const ni of order) {
    if (!fusible(ni)) continue;
    let g: Group = { members: [ni], domain: numel(values[nodes[ni].outputs[0]].shape) };
    const cands = new Set<Group>();
    for (const v of nodes[ni].inputs) {
      const p = producer(v);
      const pg = p === undefined ? undefined : groupOf.get(p);
      if (pg && pg.domain === g.domain) cands.add(pg);
    }
    for (const pg of [...cands].sort((a, b) => pos.get(b.members.at(-1)!)! - pos.get(a.members.at(-1)!)!)) {
      const members = [...pg.members, ...g.members].sort((a, b) => pos.get(a)! - pos.get(b)!);
      // A node joining two groups that could each take a matmul as their anchor joins only one: merged, only one
      // could, and the other matmul's result would wait in memory for the group (e.g. SwiGLU after gate and up).
      if (g.members.length > 1 && matmulAnchors(pg.members, g.domain) && matmulAnchors(g.members, g.domain)) continue;
      if (!analyse(members)) continue;
      const merged: Group = { members, domain: g.domain };
      for (const m of members) groupOf.set(m, merged);
      groups.splice(groups.indexOf(pg), 1);
      if (groups.includes(g)) groups.splice(groups.indexOf(g), 1);
      g = merged;
    }
    for (const m of g.members) groupOf.set(m, g);
    if (!groups.includes(g)) groups.push(g);
  }

  // 2. Reduction prologues: the part of a group that only computes a reduction's input (its cone) moves into the
  // reduction, so that input is never stored; the rest of the group stays a unit of its own.
  const prologueOf = new Map<number, Group>();
  for (const ni of order) {
    if (!anchorable(ni) || nodes[ni].op === "matmul") continue;
    const v = nodes[ni].inputs[0], r = root[v];
    const p = producer(v);
    const g = p === undefined ? undefined : groupOf.get(p);
    if (!g || g.absorbed || g.domain !== numel(values[v].shape) || isOut.has(r)) continue;
    if (nodes[p!].outputs.length !== 1 || (uses.get(r) ?? []).some((u) => u !== ni)) continue;
    const cone = new Set([p!]);
    for (const m of [...g.members].reverse()) {
      if (cone.has(m)) continue;
      const outs = nodes[m].outputs.map((o) => root[o]);
      const us = outs.flatMap((o) => uses.get(o) ?? []);
      if (!outs.some((o) => isOut.has(o)) && us.length && us.every((u) => cone.has(u))) cone.add(m);
    }
    const pro = g.members.filter((m) => cone.has(m)), rest = g.members.filter((m) => !cone.has(m));
    if ((rest.length && !analyse(rest)) || !analyse([], ni, pro)) continue;
    const pg: Group = { members: pro, domain: g.domain, absorbed: true };
    if (rest.length) g.members = rest;
    else groups.splice(groups.indexOf(g), 1);
    for (const m of pro) groupOf.set(m, pg);
    prologueOf.set(ni, pg);
  }

  // 3. Epilogues: a group takes the latest matmul / reduction whose result it reads at its own index.
  const anchored = new Set<number>();
  for (const g of groups) {
    if (g.absorbed) continue;
    const cands = new Set<number>();
    for (const m of g.members) {
      for (const v of nodes[m].inputs) {
        const a = producer(v);
        if (a === undefined || groupOf.has(a) || anchored.has(a) || !anchorable(a)) continue;
        if (numel(values[root[v]].shape) === g.domain) cands.add(a);
      }
    }
    for (const a of [...cands].sort((x, y) => pos.get(y)! - pos.get(x)!)) {
      const pro = prologueOf.get(a);
      if (!analyse(g.members, a, pro?.members)) continue;
      g.anchor = a;
      g.prologue = pro;
      anchored.add(a);
      break;
    }
  }
  // Reductions with a prologue but no epilogue are units of their own.
  for (const [r, pro] of prologueOf) {
    if (!anchored.has(r)) groups.push({ members: [], domain: 0, anchor: r, prologue: pro });
  }

  // 4. Units → specs; then every node into a step, in order of where it runs.
  const units: { nodes: number[]; unit: FusedUnit; internal: number[]; at: number }[] = [];
  const unitOf = new Map<number, number>();
  for (const g of groups) {
    if (g.absorbed) continue;
    if (g.anchor === undefined && g.members.length < 2) continue; // a lone op keeps its own kernel
    const a = analyse(g.members, g.anchor, g.prologue?.members)!;
    const unitNodes = [...(g.prologue?.members ?? []), ...(g.anchor !== undefined ? [g.anchor] : []), ...g.members];
    const unit = buildUnit(graph, root, g, a.exts, a.stores);
    const internal = [...a.produced].filter((r) => !a.stores.includes(r));
    const idx = units.length;
    units.push({ nodes: unitNodes, unit, internal, at: a.last });
    for (const n of unitNodes) unitOf.set(n, idx);
  }
  const internalRoots = new Set(units.flatMap((u) => u.internal));
  const keyed: { key: number; tie: number; step: PlanStep; unit?: FusedUnit }[] = [];
  for (const u of units) {
    const step: PlanStep = { nodes: u.nodes, internal: u.internal };
    keyed.push({ key: u.at, tie: 0, step, unit: u.unit });
  }
  const viewsOf = new Map<number, number[]>();
  for (const ni of order) {
    if (unitOf.has(ni)) continue;
    if (isView(ni)) {
      const p = producer(nodes[ni].inputs[0]);
      const ui = p === undefined ? undefined : unitOf.get(p);
      if (ui !== undefined && internalRoots.has(root[nodes[ni].inputs[0]])) {
        if (!viewsOf.has(ui)) viewsOf.set(ui, []);
        viewsOf.get(ui)!.push(ni);
        continue;
      }
      const at = Math.max(pos.get(ni)!, ui === undefined ? -1 : units[ui].at);
      keyed.push({ key: at, tie: 1 + pos.get(ni)!, step: { nodes: [ni] } });
      continue;
    }
    keyed.push({ key: pos.get(ni)!, tie: 0, step: { nodes: [ni] } });
  }
  for (const [ui, vs] of viewsOf) {
    const k = keyed.find((e) => e.unit === units[ui].unit)!;
    k.step = { nodes: [...k.step.nodes, ...vs], internal: units[ui].internal };
  }
  keyed.sort((x, y) => x.key - y.key || x.tie - y.tie);
  const map = new Map<PlanStep, FusedUnit>();
  for (const k of keyed) if (k.unit) map.set(k.step, k.unit);
  return { steps: keyed.map((k) => k.step), units: map };
}

/** The kernel spec of a group: its ops in order, external inputs, stores, anchor and prologue. */
function buildUnit(graph: Graph, root: Int32Array, g: Group, exts: number[], stores: number[]): FusedUnit {
  const nodes = graph.nodes, values = graph.values;
  const a = g.anchor === undefined ? undefined : nodes[g.anchor];
  const seed = a ? a.outputs[0] : undefined;
  const produced = new Set<number>();
  if (seed !== undefined) produced.add(seed);
  const extIndex = new Map(exts.map((v, k) => [v, k]));
  const toOps = (members: readonly number[]): FusedOp[] =>
    members.map((ni) => {
      const n = nodes[ni];
      const ops: FusedOp = {
        op: n.op,
        attrs: n.attrs,
        inputs: n.inputs.map((v) => ({
          ref: produced.has(root[v]) ? { val: root[v] } : { ext: extIndex.get(v)! },
          shape: values[v].shape,
        })),
        shape: values[n.outputs[0]].shape,
        outputs: [...n.outputs],
      };
      for (const o of n.outputs) produced.add(o);
      return ops;
    });
  const proOps = g.prologue ? toOps(g.prologue.members) : undefined;
  const ops = toOps(g.members);
  const info = (v: number): TensorInfo => ({ shape: values[v].shape, dtype: values[v].dtype });
  const bound = a && !g.prologue ? a.inputs.slice(0, a.op === "matmul" ? 2 : 1) : [];
  const spec: FusedSpec = {
    exts: exts.map(info),
    anchor: a
      ? { op: a.op, attrs: a.attrs, inputs: a.inputs.map(info), output: info(a.outputs[0]), seed: seed! }
      : undefined,
    prologue: proOps ? { ops: proOps, result: root[a!.inputs[0]] } : undefined,
    ops,
    stores: stores.map((r) => ({ val: r, info: info(r) })),
  };
  return {
    inputs: [...bound, ...exts],
    outputs: stores,
    spec,
    nodes: [...(g.prologue?.members ?? []), ...(g.anchor !== undefined ? [g.anchor] : []), ...g.members],
  };
}
