/**
 * Activation checkpointing on ONNX Runtime: the nodes `backward` appends to recompute a checkpointed segment
 * (`Graph.recomputed`) are the segment's own ops on the same inputs, so the builder's memo and ONNX Runtime's common
 * subexpression elimination would merge them with the forward's — keeping every activation alive until its backward,
 * as if nothing were checkpointed. The recomputation instead reads each value it takes from outside its range (a
 * segment's input, a mask or rotary table made once) through a barrier: the value itself (a Reshape is a view, no copy),
 * under a name neither can merge, because its target shape is chosen at run time by the value's first element
 * (`Where(x[0] != 0, Shape(x), Shape(x))`: the same shape either way, nothing constant folding can remove).
 *
 * @example
 * ```ts
 * const recomputeIns = recomputeInputs(graph, b);
 * const ins = recomputeIns(nodeIndex, n.inputs.map((id) => names.get(id)!));
 * ```
 * @module
 */
import type { Graph } from "../../graph/graph.ts";
import { numel } from "../../graph/types.ts";
import type { OnnxBuilder } from "./builder.ts";
import { ONNX_TYPE } from "./proto.ts";

/**
 * For the node at `ni` (a graph node index) and the ONNX names of its inputs: the names it reads, with every input a
 * recomputed range takes from outside itself behind a barrier (see the module doc); other nodes' unchanged.
 */
export function recomputeInputs(graph: Graph, b: OnnxBuilder): (ni: number, ins: readonly string[]) => string[] {
  const rangeOf = new Map<number, { start: number; end: number }>();
  for (const r of graph.recomputed) for (let i = r.start; i < r.end; i++) rangeOf.set(i, r);
  const barriers = new Map<string, string>();
  return (ni, ins) => {
    const r = rangeOf.get(ni);
    if (!r) return [...ins];
    const n = graph.nodes[ni];
    return ins.map((name, k) => {
      const v = graph.values[n.inputs[k]];
      if (v.kind !== "op" || v.node === undefined || (v.node >= r.start && v.node < r.end)) return name;
      if (numel(v.shape) === 0) return name;
      const key = `${r.start}:${v.id}`;
      let out = barriers.get(key);
      if (!out) barriers.set(key, out = barrier(b, name));
      return out;
    });
  };
}

/** `x` under a name of its own: Reshape(x, Where(x[0] != 0, Shape(x), Shape(x))). */
function barrier(b: OnnxBuilder, x: string): string {
  const first = b.op1("Slice", [b.reshape(x, [-1]), b.i64([0]), b.i64([1])]);
  const dims = b.op1("Shape", [x]); // not the traced dims: right for symbolic ones too
  return b.op1("Reshape", [x, b.op1("Where", [b.cast(first, ONNX_TYPE.BOOL), dims, dims])]);
}
