/**
 * Lowers a traced graph to one ONNX model: graph inputs stay inputs, params become inputs named
 * `param/<name>` (or initializers, for a self-contained export), constants become initializers, every
 * live node is lowered by the table below in the planner's order, and every param an effect op writes
 * comes out as an output `state/<name>` holding its new value (the executor stores it back).
 *
 * f16/bf16 values are FLOAT in the model, rounded to their dtype after the op that makes them (a Cast
 * there and back), so the model computes what the reference executor computes at f32 precision.
 *
 * @example
 * ```ts
 * const lowered = lowerGraph(graph);
 * const session = await ort.InferenceSession.create(encodeModel(lowered.model));
 * ```
 * @module
 */
import type { Graph } from "../../graph/graph.ts";
import { getOp } from "../../graph/op.ts";
import type { DType } from "../../graph/types.ts";
import { planGraph } from "../plan.ts";
import { OnnxBuilder } from "./builder.ts";
import { attentionLowerings } from "./lower_attention.ts";
import { basicLowerings } from "./lower_basic.ts";
import { embeddingScatterAdd, nnLowerings } from "./lower_nn.ts";
import { trainLowerings } from "./lower_train.ts";
import { tieInPlaceStates } from "./inplace.ts";
import { quantLowerings } from "./lower_quant.ts";
import { optim8Lowerings } from "./lower_optim8.ts";
import { groupedLowerings } from "./lower_grouped.ts";
import { topkLowerings } from "./lower_topk.ts";
import { recomputeInputs } from "./recompute.ts";
import { type OnnxLowering, onnxTypeOf } from "./lower_types.ts";
import { type ModelDef, ONNX_TYPE } from "./proto.ts";

/** Every op's ONNX lowering. */
export const onnxLowerings: Record<string, OnnxLowering> = {
  ...basicLowerings,
  ...nnLowerings,
  ...attentionLowerings,
  ...trainLowerings,
  ...quantLowerings,
  ...optim8Lowerings,
  ...groupedLowerings,
  ...topkLowerings,
};

/** Little-endian bytes of values in the ONNX type a dtype lives in. */
export function onnxBytes(data: ArrayLike<number>, dtype: DType): Uint8Array {
  const a = dtype === "i32"
    ? Int32Array.from(data)
    : dtype === "u32"
    ? BigInt64Array.from(Array.from(data, (v) => BigInt(v >>> 0)))
    : Float32Array.from(data);
  return new Uint8Array(a.buffer);
}

/** One model input or output and where it comes from. */
export interface LoweredValue {
  /** Name in the ONNX model. */
  onnx: string;
  /** Graph input, param or output name. */
  name: string;
  shape: readonly number[];
  dtype: DType;
}

/** A lowered graph. */
export interface LoweredGraph {
  model: ModelDef;
  inputs: LoweredValue[];
  params: LoweredValue[];
  outputs: LoweredValue[];
  /**
   * Params written by effect ops: their new values come out as `onnx`; with `inPlaceStates`, `inPlace` says
   * whether that output may be the buffer of the param's input itself (see inplace.ts).
   */
  states: (LoweredValue & { inPlace?: boolean })[];
  /**
   * With `hostScatter`: `scatter_rows` writes left to the caller, who copies rows of `value` into the stored
   * `param` at `index` after the run (in place, no copy of the whole target inside the model).
   */
  scatters: { param: string; index: string; value: string; shape: readonly number[] }[];
}

/** Options of {@link lowerGraph}. */
export interface LowerOptions {
  /** Graph outputs to produce (default all). */
  outputs?: readonly string[];
  /** Param data to embed as initializers (self-contained export); other params stay inputs. */
  initializers?: (name: string) => ArrayLike<number> | undefined;
  /** Model name. */
  name?: string;
  /**
   * Leave `scatter_rows` (KV-cache row writes) to the caller: the model outputs the rows and their indices
   * instead of a new copy of the whole target (see {@link LoweredGraph.scatters}). Only for a param that one
   * effect writes.
   */
  hostScatter?: boolean;
  /**
   * Order every state's writer after every reader of the param's old value (inplace.ts), so the caller may pass
   * the param's own buffer as the preallocated output of its new value.
   */
  inPlaceStates?: boolean;
  /**
   * Name param inputs and state outputs by their index (`param/3`, `state/0`), not by their names, and keep equal
   * constants apart: a model whose param names hold its sizes (KV caches) stays one model for every size, whatever
   * constants its sizes happen to equal (symbolic.ts).
   */
  indexNames?: boolean;
  /**
   * The fused LM head's chunking (lower_linear_ce.ts): "auto" (default), "off" or a chunk count;
   * `WHETSTONE_ONNX_CE_CHUNKS` overrides it.
   */
  headChunks?: string;
}

const ROUND_TYPE: Partial<Record<DType, number>> = { bf16: ONNX_TYPE.BFLOAT16, f16: ONNX_TYPE.FLOAT16 };

/**
 * A tied embedding's gradient: `add(x, embedding_bwd(ids, dOut))` where the scatter feeds only that add and both
 * are [V, D] is lowered as one ScatterND into x (embeddingScatterAdd), not a zeroed [V, D] buffer, a scatter into it
 * and a third buffer for the sum (113 MB each at SmolLM2's vocabulary). Maps the embedding_bwd node to its add,
 * and `-1 - add` to the embedding_bwd node.
 */
function tiedEmbeddingGrads(graph: Graph, order: readonly number[], outputs: Map<string, number>): Map<number, number> {
  const uses = new Map<number, number[]>();
  for (const ni of order) for (const v of graph.nodes[ni].inputs) uses.set(v, [...uses.get(v) ?? [], ni]);
  const out = new Set(outputs.values());
  const tied = new Map<number, number>();
  for (const ni of order) {
    const e = graph.nodes[ni];
    if (e.op !== "embedding_bwd" || out.has(e.outputs[0])) continue;
    const u = uses.get(e.outputs[0]) ?? [];
    if (u.length !== 1) continue;
    const a = graph.nodes[u[0]];
    if (tied.has(-1 - u[0])) continue; // the add's other input is a scatter folded into it already
    const shape = graph.values[e.outputs[0]].shape.join();
    if (
      a.op !== "add" || a.inputs[0] === a.inputs[1] ||
      !a.inputs.every((id) => graph.values[id].shape.join() === shape && graph.values[id].dtype === "f32") ||
      graph.values[a.outputs[0]].dtype !== "f32"
    ) continue;
    tied.set(ni, u[0]);
    tied.set(-1 - u[0], ni);
  }
  return tied;
}

/** Lowers `graph` to an ONNX model (see the module doc). */
export function lowerGraph(graph: Graph, opts: LowerOptions = {}): LoweredGraph {
  const plan = planGraph(graph, opts.outputs, 4);
  const b = new OnnxBuilder(!opts.indexNames);
  const names = new Map<number, string>();
  const used = new Set<number>();
  for (const ni of plan.order) for (const v of graph.nodes[ni].inputs) used.add(v);
  for (const id of plan.outputs.values()) used.add(id);

  const inputs: LoweredValue[] = [],
    params: LoweredValue[] = [],
    outputs: LoweredValue[] = [],
    states: LoweredGraph["states"] = [];
  for (const [name, id] of graph.inputs) {
    if (!used.has(id)) continue;
    const v = graph.values[id];
    names.set(id, b.input(name, onnxTypeOf(v.dtype), v.shape));
    inputs.push({ onnx: name, name, shape: v.shape, dtype: v.dtype });
  }
  const paramOf = new Map<number, string>();
  for (const [name, id] of graph.params) {
    paramOf.set(id, name);
    if (!used.has(id)) continue;
    const v = graph.values[id];
    const data = opts.initializers?.(name);
    if (data) {
      names.set(id, b.tensor(onnxTypeOf(v.dtype), v.shape, onnxBytes(data, v.dtype), name));
    } else {
      const onnx = `param/${opts.indexNames ? params.length : name}`;
      names.set(id, b.input(onnx, onnxTypeOf(v.dtype), v.shape));
      params.push({ onnx, name, shape: v.shape, dtype: v.dtype });
    }
  }
  for (const v of graph.values) {
    if (v.kind === "const" && used.has(v.id)) {
      names.set(v.id, b.tensor(onnxTypeOf(v.dtype), v.shape, onnxBytes(v.data!, v.dtype)));
    }
  }

  const current = new Map<number, string>(); // param value id → its value after the effects so far
  const writers = new Map<number, number>(); // param value id → effect nodes writing it
  for (const ni of plan.order) {
    const n = graph.nodes[ni];
    for (const e of getOp(n.op).effects ?? []) writers.set(n.inputs[e], (writers.get(n.inputs[e]) ?? 0) + 1);
  }
  const scatters: LoweredGraph["scatters"] = [];
  const tied = tiedEmbeddingGrads(graph, plan.order, plan.outputs);
  const recomputeIns = recomputeInputs(graph, b);
  for (const ni of plan.order) {
    const n = graph.nodes[ni];
    const def = getOp(n.op);
    if (tied.has(ni)) continue; // lowered with its add (below)
    const into = tied.get(-1 - ni);
    if (into !== undefined) {
      const e = graph.nodes[into], base = n.inputs[0] === e.outputs[0] ? n.inputs[1] : n.inputs[0];
      const ins = [base, ...e.inputs].map((id) => current.get(id) ?? names.get(id)!);
      const infos = e.inputs.map((id) => graph.values[id]);
      names.set(n.outputs[0], embeddingScatterAdd(b, ins[0], ins.slice(1), infos, e.attrs.vocab as number));
      continue;
    }
    if (opts.hostScatter && n.op === "scatter_rows" && writers.get(n.inputs[0]) === 1) {
      const param = paramOf.get(n.inputs[0])!, k = scatters.length;
      const [index, value] = [`scatter/${k}/index`, `scatter/${k}/value`];
      const [iv, vv] = [graph.values[n.inputs[1]], graph.values[n.inputs[2]]];
      b.output(names.get(n.inputs[1])!, index, onnxTypeOf(iv.dtype), iv.shape);
      b.output(current.get(n.inputs[2]) ?? names.get(n.inputs[2])!, value, onnxTypeOf(vv.dtype), vv.shape);
      scatters.push({ param, index, value, shape: graph.values[n.inputs[0]].shape });
      continue;
    }
    const lower = onnxLowerings[n.op];
    if (!lower) throw new Error(`op "${n.op}" has no ONNX lowering`);
    const ins = recomputeIns(ni, n.inputs.map((id) => current.get(id) ?? names.get(id)!));
    const outInfos = n.outputs.map((o) => graph.values[o]);
    const res = lower({
      b,
      ins,
      inInfos: n.inputs.map((id) => graph.values[id]),
      outInfos,
      attrs: n.attrs,
      constData: (i) => graph.values[n.inputs[i]].data,
      headChunks: opts.headChunks,
    });
    const effects = def.effects ?? [];
    if (res.length !== n.outputs.length + effects.length) {
      throw new Error(
        `ONNX lowering of "${n.op}" gave ${res.length} values, expected ${n.outputs.length + effects.length}`,
      );
    }
    n.outputs.forEach((o, k) => {
      const r = ROUND_TYPE[outInfos[k].dtype];
      names.set(o, r ? b.cast(b.cast(res[k], r), ONNX_TYPE.FLOAT) : res[k]);
    });
    effects.forEach((e, k) => {
      const id = n.inputs[e];
      if (!paramOf.has(id)) throw new Error(`"${n.op}" writes input ${e}, which is not a param`);
      current.set(id, res[n.outputs.length + k]);
    });
  }
  const taken = new Set(b.inputs.map((i) => i.name));
  for (const [name, id] of plan.outputs) {
    const v = graph.values[id];
    const onnx = taken.has(name) ? `out/${name}` : name;
    b.output(names.get(id)!, onnx, onnxTypeOf(v.dtype), v.shape);
    outputs.push({ onnx, name, shape: v.shape, dtype: v.dtype });
  }
  const stateInputs: string[] = [];
  for (const [id, value] of current) {
    const name = paramOf.get(id)!, v = graph.values[id];
    const onnx = `state/${opts.indexNames ? states.length : name}`;
    b.output(value, onnx, onnxTypeOf(v.dtype), v.shape);
    states.push({ onnx, name, shape: v.shape, dtype: v.dtype });
    stateInputs.push(names.get(id)!);
  }
  if (opts.inPlaceStates) {
    const io = states.map((s, k) => ({ input: stateInputs[k], output: s.onnx, shape: s.shape }));
    tieInPlaceStates(b, io).forEach((ok, k) => states[k].inPlace = ok);
  }
  return { model: b.model(opts.name ?? "whetstone"), inputs, params, outputs, states, scatters };
}
