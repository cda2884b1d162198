/**
 * Shapes of every value of a lowered ONNX graph at concrete sizes, for the ops the lowerings emit (ai.onnx opset 18
 * and com.microsoft's FusedMatMul). symbolic.ts runs it on each probe model and fits each dim as a polynomial of the
 * sizes: the symbolic model then names the dims of every intermediate value (`L`, `4*L`), which ONNX Runtime's own
 * inference cannot do past a Reshape, Expand or Slice whose target is computed at run time. Its memory planner
 * only reuses a buffer whose shape it knows to be equal, so every unnamed dim leaves a buffer it cannot reuse,
 * and it searches a list of such buffers for each value: on a 135M LoRA step (19,815 nodes) that search was
 * most of the session's build.
 *
 * An op it does not know, or an input whose shape or values it lacks, leaves that op's outputs out (and what
 * depends on them): a value left out is one ONNX Runtime infers alone, as before.
 *
 * @example
 * ```ts
 * import { OnnxBuilder } from "./builder.ts";
 * import { ONNX_TYPE } from "./proto.ts";
 * const b = new OnnxBuilder();
 * const x = b.input("x", ONNX_TYPE.FLOAT, [2, 3]);
 * const y = b.reshape(b.op1("Relu", [x]), [3, 2]);
 * const shapes = inferShapes(b.model("m").graph);
 * console.assert(shapes.get(y)!.join() === "3,2");
 * ```
 * @module
 */
import type { GraphDef, NodeDef, TensorDef } from "./proto.ts";
import { ONNX_TYPE } from "./proto.ts";
import { broadcastShapes } from "../../graph/broadcast.ts";

type Dims = number[];

/** Ops whose one output has their first input's shape. */
const SAME = new Set([
  "Abs",
  "Cast",
  "Ceil",
  "Clip",
  "Cos",
  "CumSum",
  "Elu",
  "Erf",
  "Exp",
  "Floor",
  "Gelu",
  "HardSigmoid",
  "Identity",
  "IsInf",
  "IsNaN",
  "LeakyRelu",
  "Log",
  "LogSoftmax",
  "Neg",
  "Not",
  "Reciprocal",
  "Relu",
  "Round",
  "Sigmoid",
  "Sign",
  "Sin",
  "Softmax",
  "Softplus",
  "Sqrt",
  "Tanh",
  "ScatterElements",
  "ScatterND",
  "Trilu",
]);

/** Ops whose one output is the broadcast of all their inputs. */
const BROADCAST = new Set([
  "Add",
  "And",
  "Div",
  "Equal",
  "Greater",
  "GreaterOrEqual",
  "Less",
  "LessOrEqual",
  "Max",
  "Min",
  "Mod",
  "Mul",
  "Or",
  "Pow",
  "Sub",
  "Where",
  "Xor",
]);

const REDUCE = new Set([
  "ReduceSum",
  "ReduceMean",
  "ReduceMax",
  "ReduceMin",
  "ReduceProd",
  "ReduceLogSumExp",
  "ReduceL2",
  "ReduceSumSquare",
]);

/** Small integer tensors' values are followed (shape arithmetic); larger ones are not needed. */
const MAX_VALUES = 64;

/** Integer values of an INT64 or INT32 constant, or undefined for another type (or no raw data). */
export function intsOf(t: TensorDef): number[] | undefined {
  const raw = t.raw;
  if (!raw) return undefined;
  if (t.dataType === ONNX_TYPE.INT64) {
    return Array.from(new BigInt64Array(raw.slice().buffer), Number);
  }
  if (t.dataType === ONNX_TYPE.INT32) return Array.from(new Int32Array(raw.slice().buffer));
  return undefined;
}

/** The broadcast of `shapes` (numpy's rules), or undefined where they do not broadcast. */
function broadcastDims(shapes: readonly Dims[]): Dims | undefined {
  try {
    return broadcastShapes(...shapes);
  } catch {
    return undefined;
  }
}

const attrI = (n: NodeDef, k: string, dflt: number): number => (n.attrs?.[k] as { i?: number } | undefined)?.i ?? dflt;
const attrInts = (n: NodeDef, k: string): number[] | undefined =>
  (n.attrs?.[k] as { ints?: number[] } | undefined)?.ints;
const axisOf = (a: number, rank: number) => (a < 0 ? a + rank : a);

function matmulDims(a: Dims, b: Dims): Dims | undefined {
  if (!a.length || !b.length) return undefined;
  const a2 = a.length === 1 ? [1, a[0]] : a, b2 = b.length === 1 ? [b[0], 1] : b;
  if (a2.at(-1) !== b2.at(-2)) return undefined;
  const batch = broadcastDims([a2.slice(0, -2), b2.slice(0, -2)]);
  if (!batch) return undefined;
  const out = [...batch, a2.at(-2)!, b2.at(-1)!];
  if (a.length === 1) out.splice(-2, 1);
  if (b.length === 1) out.pop();
  return out;
}

function swapLast(d: Dims): Dims {
  return d.length < 2 ? d : [...d.slice(0, -2), d.at(-1)!, d.at(-2)!];
}

function reshapeDims(x: Dims, target: readonly number[], allowZero: boolean): Dims | undefined {
  const out = target.map((t, k) => (t === 0 && !allowZero ? x[k] : t));
  const n = x.reduce((p, q) => p * q, 1);
  const free = out.indexOf(-1);
  if (free >= 0) {
    const rest = out.reduce((p, q, k) => (k === free ? p : p * q), 1);
    if (rest === 0 || n % rest) return undefined;
    out[free] = n / rest;
  }
  return out.some((d) => d === undefined || d < 0) || out.reduce((p, q) => p * q, 1) !== n ? undefined : out;
}

function sliceDims(x: Dims, starts: number[], ends: number[], axes?: number[], steps?: number[]): Dims | undefined {
  const out = [...x];
  for (let k = 0; k < starts.length; k++) {
    const a = axisOf(axes?.[k] ?? k, x.length), step = steps?.[k] ?? 1, n = x[a];
    if (a >= x.length || step === 0) return undefined;
    const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v < 0 ? v + n : v, lo), hi);
    const s = step > 0 ? clamp(starts[k], 0, n) : clamp(starts[k], 0, n - 1);
    const e = step > 0 ? clamp(ends[k], 0, n) : clamp(ends[k], -1, n - 1);
    out[a] = Math.max(0, Math.ceil((e - s) / step));
  }
  return out;
}

/** The shapes (and small integer values) of one node's outputs, or undefined where it cannot tell. */
function inferNode(
  n: NodeDef,
  shape: (v: string) => Dims | undefined,
  value: (v: string) => number[] | undefined,
): { dims: Dims[]; values?: (number[] | undefined)[] } | undefined {
  const op = n.domain && n.domain !== "ai.onnx" ? `${n.domain}:${n.opType}` : n.opType;
  const ins = n.inputs.map((i) => (i === "" ? undefined : shape(i)));
  const x = ins[0];
  if (SAME.has(op)) {
    if (!x) return undefined;
    const v = op === "Cast" || op === "Identity" ? value(n.inputs[0]) : undefined;
    return { dims: [x], values: [v] };
  }
  if (BROADCAST.has(op)) {
    if (ins.some((s) => !s)) return undefined;
    const d = broadcastDims(ins as Dims[]);
    if (!d) return undefined;
    let v: number[] | undefined;
    const vs = n.inputs.map(value);
    if ((op === "Add" || op === "Sub" || op === "Mul") && vs.every((q) => q) && d.length <= 1) {
      const len = d.length ? d[0] : 1;
      const at = (q: number[], k: number) => q.length === 1 ? q[0] : q[k];
      v = Array.from({ length: len }, (_, k) => {
        const [p, q] = [at(vs[0]!, k), at(vs[1]!, k)];
        return op === "Add" ? p + q : op === "Sub" ? p - q : p * q;
      });
    }
    // Where(c, s, s): the ordering ties of inplace.ts and recompute.ts choose between two equal shapes.
    if (op === "Where" && vs[1] && vs[2] && vs[1].join() === vs[2].join() && d.length <= 1) v = vs[1];
    return { dims: [d], values: [v] };
  }
  if (REDUCE.has(op)) {
    if (!x) return undefined;
    const axes = n.inputs[1] ? value(n.inputs[1]) : attrInts(n, "axes");
    if (n.inputs[1] && !axes) return undefined;
    const keep = attrI(n, "keepdims", 1) === 1;
    const all = !axes || !axes.length;
    if (all && attrI(n, "noop_with_empty_axes", 0) === 1) return { dims: [x] };
    const set = new Set((axes ?? []).map((a) => axisOf(a, x.length)));
    const d: Dims = [];
    x.forEach((e, k) => {
      if (all || set.has(k)) {
        if (keep) d.push(1);
      } else d.push(e);
    });
    return { dims: [d] };
  }
  switch (op) {
    case "MatMul": {
      const d = x && ins[1] && matmulDims(x, ins[1]);
      return d ? { dims: [d] } : undefined;
    }
    case "com.microsoft:FusedMatMul": {
      if (!x || !ins[1] || attrI(n, "transBatchA", 0) || attrI(n, "transBatchB", 0)) return undefined;
      const a = attrI(n, "transA", 0) ? swapLast(x) : x, b = attrI(n, "transB", 0) ? swapLast(ins[1]) : ins[1];
      const d = matmulDims(a, b);
      return d ? { dims: [d] } : undefined;
    }
    case "Reshape": {
      const t = value(n.inputs[1]);
      const d = x && t && reshapeDims(x, t, attrI(n, "allowzero", 0) === 1);
      return d ? { dims: [d], values: [value(n.inputs[0])] } : undefined;
    }
    case "Transpose": {
      if (!x) return undefined;
      const perm = attrInts(n, "perm") ?? x.map((_, k) => x.length - 1 - k);
      return { dims: [perm.map((p) => x[p])] };
    }
    case "Concat": {
      if (ins.some((s) => !s)) return undefined;
      const a = axisOf(attrI(n, "axis", 0), x!.length);
      const d = [...x!];
      d[a] = (ins as Dims[]).reduce((s, q) => s + q[a], 0);
      const vs = n.inputs.map(value);
      return { dims: [d], values: [d.length === 1 && vs.every((q) => q) ? vs.flatMap((q) => q!) : undefined] };
    }
    case "Slice": {
      const [s, e] = [value(n.inputs[1]), value(n.inputs[2])];
      const axes = n.inputs[3] ? value(n.inputs[3]) : undefined, steps = n.inputs[4] ? value(n.inputs[4]) : undefined;
      if (!x || !s || !e || (n.inputs[3] && !axes) || (n.inputs[4] && !steps)) return undefined;
      const d = sliceDims(x, s, e, axes, steps);
      return d ? { dims: [d] } : undefined;
    }
    case "Unsqueeze": {
      const axes = value(n.inputs[1]);
      if (!x || !axes) return undefined;
      const rank = x.length + axes.length, set = new Set(axes.map((a) => axisOf(a, rank)));
      const d: Dims = [];
      for (let k = 0, j = 0; k < rank; k++) d.push(set.has(k) ? 1 : x[j++]);
      return { dims: [d], values: [value(n.inputs[0])] };
    }
    case "Squeeze": {
      if (!x) return undefined;
      const axes = n.inputs[1] ? value(n.inputs[1]) : undefined;
      if (n.inputs[1] && !axes) return undefined;
      const set = new Set((axes ?? x.flatMap((e, k) => (e === 1 ? [k] : []))).map((a) => axisOf(a, x.length)));
      return { dims: [x.filter((_, k) => !set.has(k))], values: [value(n.inputs[0])] };
    }
    case "Shape": {
      if (!x) return undefined;
      const r = x.length, start = axisOf(attrI(n, "start", 0), r), end = axisOf(attrI(n, "end", r), r);
      const v = x.slice(Math.max(0, start), Math.min(r, end));
      return { dims: [[v.length]], values: [v] };
    }
    case "Expand": {
      const t = value(n.inputs[1]);
      const d = x && t && broadcastDims([x, t]);
      return d ? { dims: [d] } : undefined;
    }
    case "Range": {
      const [s, l, dl] = [value(n.inputs[0]), value(n.inputs[1]), value(n.inputs[2])];
      if (!s || !l || !dl || dl[0] === 0) return undefined;
      const len = Math.max(0, Math.ceil((l[0] - s[0]) / dl[0]));
      return { dims: [[len]], values: [Array.from({ length: len }, (_, k) => s[0] + k * dl[0])] };
    }
    case "Gather": {
      const idx = ins[1];
      if (!x || !idx) return undefined;
      const a = axisOf(attrI(n, "axis", 0), x.length);
      const d = [...x.slice(0, a), ...idx, ...x.slice(a + 1)];
      const xv = value(n.inputs[0]), iv = value(n.inputs[1]);
      const v = x.length === 1 && xv && iv ? iv.map((i) => xv[i < 0 ? i + xv.length : i]) : undefined;
      return { dims: [d], values: [v] };
    }
    case "GatherElements":
      return ins[1] ? { dims: [ins[1]] } : undefined;
    case "ConstantOfShape": {
      const t = value(n.inputs[0]);
      return t ? { dims: [t] } : undefined;
    }
    case "TopK": {
      const k = value(n.inputs[1]);
      if (!x || !k) return undefined;
      const d = [...x];
      d[axisOf(attrI(n, "axis", -1), x.length)] = k[0];
      return { dims: [d, d] };
    }
    case "ArgMax":
    case "ArgMin": {
      if (!x) return undefined;
      const a = axisOf(attrI(n, "axis", 0), x.length), keep = attrI(n, "keepdims", 1) === 1;
      return { dims: [keep ? x.map((e, k) => (k === a ? 1 : e)) : x.filter((_, k) => k !== a)] };
    }
    case "Tile": {
      const r = value(n.inputs[1]);
      return x && r && r.length === x.length ? { dims: [x.map((e, k) => e * r[k])] } : undefined;
    }
  }
  return undefined;
}

/**
 * The dims of the values of `g` (graph inputs, initializers and every node output it can tell), at the sizes its
 * inputs and constants give.
 */
export function inferShapes(g: GraphDef): Map<string, Dims> {
  const shapes = new Map<string, Dims>(), values = new Map<string, number[]>();
  for (const v of g.inputs) if (v.dims.every((d) => typeof d === "number")) shapes.set(v.name, v.dims as Dims);
  for (const t of g.initializers) {
    shapes.set(t.name, [...t.dims]);
    const size = t.dims.reduce((p, q) => p * q, 1);
    if (size <= MAX_VALUES) {
      const v = intsOf(t);
      if (v) values.set(t.name, v);
    }
  }
  const shape = (v: string) => shapes.get(v), value = (v: string) => values.get(v);
  for (const n of g.nodes) {
    const r = inferNode(n, shape, value);
    if (!r) continue;
    n.outputs.forEach((o, k) => {
      const d = r.dims[k];
      if (!o || !d) return;
      shapes.set(o, d);
      const v = r.values?.[k];
      if (v && v.length <= MAX_VALUES && v.length === d.reduce((p, q) => p * q, 1)) values.set(o, v);
    });
  }
  return shapes;
}
