/**
 * Reverse-mode differentiation over a traced graph. Only values on a path from a chosen parameter
 * to the loss get gradients; frozen inputs never do, so they cost no gradient memory.
 *
 * @example
 * ```ts
 * const [gw] = backward(loss, [w]); // appends the backward nodes to loss.graph
 * ```
 * @module
 */
import type { Graph, Tensor } from "./graph.ts";
import { getOp } from "./op.ts";
import { fmtInfo, isFloat } from "./types.ts";
import { add } from "./ops/elementwise.ts";
import { expand } from "./ops/shape.ts";

/**
 * Appends the gradient computation of `loss` w.r.t. each of `wrt` to the graph and returns the
 * gradients in the same order (a zero tensor where the loss does not depend on it).
 * `seed` is d(objective)/d(loss); defaults to ones.
 */
export function backward(loss: Tensor, wrt: readonly Tensor[], seed?: Tensor): Tensor[] {
  const g = loss.graph;
  const nNodes = g.nodes.length;
  const needs = new Set<number>();
  for (const w of wrt) {
    if (w.graph !== g) throw new Error("backward: a parameter belongs to another graph");
    if (!isFloat(w.dtype)) throw new Error(`backward: cannot differentiate w.r.t. ${fmtInfo(w)} (not float)`);
    needs.add(w.id);
  }
  // Forward pass: which values depend on a parameter.
  for (let i = 0; i < nNodes; i++) {
    const n = g.nodes[i];
    if (n.inputs.some((v) => needs.has(v))) { for (const o of n.outputs) if (isFloat(g.values[o].dtype)) needs.add(o); }
  }
  const wrtIds = new Set(wrt.map((w) => w.id));
  const grads = new Map<number, Tensor>();
  grads.set(loss.id, seed ?? expand(g.scalar(1, loss.dtype), loss.shape));
  // Checkpointed segments, by their last node: entering one (backwards), its forward is traced again from
  // the same inputs, and its gradient rules read the recomputed values (gradients stay keyed by the originals).
  const segEnd = new Map<number, { start: number; end: number }>();
  for (const s of g.checkpoints) if (s.end <= nNodes) segEnd.set(s.end - 1, s);
  let recomputed = new Map<number, Tensor>();
  const view = (v: number) => recomputed.get(v) ?? g.tensor(v);
  for (let i = nNodes - 1; i >= 0; i--) {
    const seg = segEnd.get(i);
    if (seg) recomputed = recompute(g, seg, grads);
    const n = g.nodes[i];
    const outGrads = n.outputs.map((o) => grads.get(o));
    if (outGrads.every((x) => x === undefined)) continue;
    const need = n.inputs.map((v) => needs.has(v));
    if (!need.some(Boolean)) continue;
    const def = getOp(n.op);
    if (!def.grad) throw new Error(`op "${n.op}" has no gradient rule, but a parameter's gradient flows through it`);
    const ins = n.inputs.map(view);
    const res = def.grad({
      inputs: ins,
      outputs: n.outputs.map(view),
      grads: outGrads,
      attrs: n.attrs,
      needs: need,
    });
    res.forEach((gi, k) => {
      if (!gi || !need[k]) return;
      const x = ins[k], id = n.inputs[k];
      if (gi.shape.join() !== x.shape.join()) {
        throw new Error(`gradient rule of "${n.op}" gave ${fmtInfo(gi)} for input ${k} of shape ${fmtInfo(x)}`);
      }
      const prev = grads.get(id);
      grads.set(id, prev ? add(prev, gi) : gi);
    });
    for (const o of n.outputs) if (!wrtIds.has(o)) grads.delete(o);
  }
  return wrt.map((w) => grads.get(w.id) ?? expand(g.scalar(0, w.dtype), w.shape));
}

/**
 * Traces the nodes of `seg` again (appended now, so they run just before the backward that reads them) when a
 * gradient reaches the segment; returns original value id → recomputed tensor (empty when none is needed).
 */
function recompute(g: Graph, seg: { start: number; end: number }, grads: Map<number, Tensor>): Map<number, Tensor> {
  const map = new Map<number, Tensor>();
  let reached = false;
  for (let i = seg.start; i < seg.end && !reached; i++) reached = g.nodes[i].outputs.some((o) => grads.has(o));
  if (!reached) return map;
  const start = g.nodes.length;
  for (let i = seg.start; i < seg.end; i++) {
    const n = g.nodes[i];
    const outs = g.apply(n.op, n.inputs.map((v) => map.get(v) ?? g.tensor(v)), n.attrs);
    n.outputs.forEach((o, k) => map.set(o, outs[k]));
  }
  if (g.nodes.length > start) g.recomputed.push({ start, end: g.nodes.length });
  return map;
}
