/**
 * One ONNX model for every size of a graph: the graph is traced again at a grid of probe sizes (symbolic_fit.ts),
 * each probe is lowered as usual (lower.ts), and the probe models are compared. Every number that changes with the
 * sizes is fitted as a polynomial of them; the model is then rewritten so that those numbers are computed at run
 * time from the `Shape` of its inputs:
 *
 * - an integer constant whose values change (a Reshape, Expand or Slice target, a ScatterND bound) becomes a Concat
 *   of its elements, each computed from the sizes;
 * - an integer constant whose dims change and whose values count 0, 1, 2, ... along one axis (a mask's row and
 *   column indices, cache slot indices) becomes a `Range` expanded to its dims;
 * - a dim of a model input or output that changes becomes a `dim_param` named after its polynomial (`B`, `B*L`);
 * - the names and shapes of the lowered inputs, params, outputs and states are fitted the same way.
 *
 * Anything else that changes (the node list, an attribute, a float constant, a constant that is no range) means the
 * graph has no symbolic model: the executor then builds a session for its own sizes, as before. A later trace at
 * other sizes reuses the model when its structure is the probes' and each of its numbers is its polynomial's value
 * at its sizes ({@link matchSymbolic}).
 *
 * @example
 * ```ts
 * const sym = buildSymbolic(graph, { sizes: { B: 4, L: 128 }, trace: ({ B, L }) => traceEvalStep(model, B, L) }, {});
 * if ("model" in sym) {
 *   const lowered = instantiate(sym, [4, 128]); // the lowered names and shapes at these sizes
 * }
 * ```
 * @module
 */
import type { Graph } from "../../graph/graph.ts";
import type { SymbolicSizes } from "../executor.ts";
import { type LoweredGraph, lowerGraph, type LowerOptions } from "./lower.ts";
import { type ModelDef, type NodeDef, ONNX_TYPE, type TensorDef } from "./proto.ts";
import { fittedInfo, merged, reshapeInfo } from "./symbolic_graph.ts";
import { inferShapes, intsOf } from "./shape_infer.ts";
import { mark } from "../../util/timings.ts";
import {
  fitFlats,
  fitPoly,
  type Flat,
  flatMatches,
  flattenGraph,
  iotaAxis,
  isConstant,
  type Poly,
  polyAt,
  polyName,
  type ProbeGrid,
  probeGrid,
  pureSymbol,
} from "./symbolic_fit.ts";

/** A graph's model for every size: its fitted structure and the ONNX model with symbolic dims. */
export interface SymbolicModel {
  symbols: readonly string[];
  /** The traced graph's structure and its numbers' polynomials (what a later trace must match). */
  skeleton: string;
  polys: Poly[];
  /** The model, with dim_params and run-time shape computations. */
  model: ModelDef;
  /** The lowered graph's inputs, params, outputs, states and scatters of the first probe, and their polynomials. */
  meta: Omit<LoweredGraph, "model">;
  metaPolys: Poly[];
}

/** Lowered graph metadata with every number (and every digit run of a name) mapped through `f`, in a fixed order. */
function mapNums<T>(v: T, f: (n: number) => number): T {
  const go = (x: unknown): unknown => {
    if (typeof x === "number") return f(x);
    if (typeof x === "string") return x.replace(/\d+/g, (d) => String(f(Number(d))));
    if (Array.isArray(x)) return x.map(go);
    if (x && typeof x === "object") return Object.fromEntries(Object.entries(x).map(([k, y]) => [k, go(y)]));
    return x;
  };
  return go(v) as T;
}

function flatOf(v: unknown): Flat {
  const nums: number[] = [];
  const skeleton = JSON.stringify(mapNums(v, (n) => (nums.push(n), 0)));
  return { skeleton, nums };
}

const sizesOf = (symbols: readonly string[], point: readonly number[]) =>
  Object.fromEntries(symbols.map((s, i) => [s, point[i]]));

/**
 * The symbolic model of `graph` (traced at `sym.sizes`), or why there is none. `flat` is `flattenGraph(graph)` when the
 * caller has it.
 */
export function buildSymbolic(
  graph: Graph,
  sym: SymbolicSizes,
  opts: LowerOptions,
  flat = flattenGraph(graph),
): SymbolicModel | { why: string } {
  const symbols = Object.keys(sym.sizes);
  const grid = probeGrid(symbols);
  const graphs: Graph[] = [];
  for (const point of grid.points) {
    try {
      graphs.push(sym.trace(sizesOf(symbols, point)));
    } catch (e) {
      return { why: `tracing at ${JSON.stringify(sizesOf(symbols, point))} failed: ${(e as Error).message}` };
    }
  }
  mark(`symbolic: ${grid.points.length} probe traces`);
  const flats = graphs.map(flattenGraph);
  const fit = fitFlats(flats, grid);
  if ("why" in fit) return fit;
  mark("symbolic: flatten and fit the probe traces");
  if (!flatMatches(flat, flats[0].skeleton, fit.polys, symbols.map((s) => sym.sizes[s]))) {
    return { why: "the graph at its own sizes is not the probes' graph at those sizes" };
  }
  let lowered: LoweredGraph[];
  try {
    lowered = graphs.map((g) => lowerGraph(g, { ...opts, indexNames: true }));
  } catch (e) {
    return { why: (e as Error).message };
  }
  mark("symbolic: lower the probes");
  const meta = lowered.map(({ model: _, ...m }) => m);
  const metaFit = fitFlats(meta.map(flatOf), grid);
  if ("why" in metaFit) return { why: `inputs and outputs: ${metaFit.why}` };
  const model = symbolicModel(lowered.map((l) => l.model), grid);
  if ("why" in model) return model;
  mark("symbolic: fit the lowered models");
  return {
    symbols,
    skeleton: flats[0].skeleton,
    polys: fit.polys,
    model: model.model,
    meta: meta[0],
    metaPolys: metaFit.polys,
  };
}

/** Whether a trace (flattened) at `sizes` is the symbolic model's graph. */
export function matchSymbolic(sm: Omit<SymbolicModel, "model">, flat: Flat, sizes: readonly number[]): boolean {
  return flatMatches(flat, sm.skeleton, sm.polys, sizes);
}

/** The lowered graph of the symbolic model at `sizes`: its inputs', params', outputs' and states' names and shapes. */
export function instantiate(sm: Omit<SymbolicModel, "model">, sizes: readonly number[]): Omit<LoweredGraph, "model"> {
  let j = 0;
  return mapNums(sm.meta, () => polyAt(sm.metaPolys[j++], sizes));
}

/** Whether two byte arrays hold the same bytes (no string of a large constant is built). */
function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Run-time shape arithmetic prepended to a model: int64 [1] tensors of the sizes and of polynomials of them. */
class ShapeMath {
  readonly nodes: NodeDef[] = [];
  readonly inits: TensorDef[] = [];
  private n = 0;
  private memo = new Map<string, string>();

  constructor(private readonly sources: ({ input: string; axis: number } | undefined)[]) {}

  private name(): string {
    return `sym:${this.n++}`;
  }

  private node(opType: string, inputs: string[], attrs?: NodeDef["attrs"], output = this.name()): string {
    this.nodes.push({ opType, inputs, outputs: [output], attrs });
    return output;
  }

  /** An int64 constant of `dims` (memoized). */
  i64(values: readonly number[], dims: readonly number[] = [values.length]): string {
    const key = `c|${dims.join(",")}|${values.join(",")}`;
    let hit = this.memo.get(key);
    if (!hit) {
      const raw = new Uint8Array(BigInt64Array.from(values, (v) => BigInt(v)).buffer);
      this.inits.push({ name: hit = this.name(), dims: [...dims], dataType: ONNX_TYPE.INT64, raw });
      this.memo.set(key, hit);
    }
    return hit;
  }

  /** Size i as an int64 [1], from the Shape of the input that has it as a dim. */
  private size(i: number): string {
    const key = `s|${i}`;
    let hit = this.memo.get(key);
    if (!hit) {
      const src = this.sources[i];
      if (!src) throw new Error(`no model input has size ${i} as a dim`);
      hit = this.node("Shape", [src.input], { start: { i: src.axis }, end: { i: src.axis + 1 } });
      this.memo.set(key, hit);
    }
    return hit;
  }

  /** The polynomial's value as an int64 [1]. */
  poly(p: Poly): string {
    if (isConstant(p)) return this.i64([p[0]]);
    const key = `p|${p.join(",")}`;
    let hit = this.memo.get(key);
    if (hit) return hit;
    let sum: string | undefined;
    for (let m = 0; m < p.length; m++) {
      if (!p[m]) continue;
      let t: string | undefined;
      for (let i = 0; (1 << i) <= m; i++) if ((m >> i) & 1) t = t ? this.node("Mul", [t, this.size(i)]) : this.size(i);
      t = t === undefined ? this.i64([p[m]]) : p[m] === 1 ? t : this.node("Mul", [t, this.i64([p[m]])]);
      sum = sum ? this.node("Add", [sum, t]) : t;
    }
    this.memo.set(key, hit = sum!);
    return hit;
  }

  /** A vector [n] of polynomials' values: runs of constants as one constant, the rest computed, concatenated. */
  vector(polys: readonly Poly[]): string {
    const parts: string[] = [];
    let run: number[] = [];
    for (const p of polys) {
      if (isConstant(p)) {
        run.push(p[0]);
        continue;
      }
      if (run.length) parts.push(this.i64(run));
      run = [];
      parts.push(this.poly(p));
    }
    if (run.length) parts.push(this.i64(run));
    return parts.length === 1 ? parts[0] : this.node("Concat", parts, { axis: { i: 0 } });
  }

  /** Writes the tensor `name` of `dims` (polynomials) and data type from the flat int64 values `flat`. */
  shaped(name: string, flat: string, dims: readonly Poly[], dataType: number): void {
    const typed = dataType === ONNX_TYPE.INT64 ? flat : this.node("Cast", [flat], { to: { i: dataType } });
    this.node("Reshape", [typed, dims.length ? this.vector(dims) : this.i64([], [0])], undefined, name);
  }

  /** A scalar int64 of the polynomial's value. */
  scalar(p: Poly): string {
    return this.node("Reshape", [this.poly(p), this.i64([], [0])]);
  }

  /** Writes the tensor `name` of `dims` whose elements count along `axis` (see iotaAxis). */
  iota(name: string, dims: readonly Poly[], axis: number, dataType: number): void {
    const r = this.node("Range", [this.i64([0], []), this.scalar(dims[axis]), this.i64([1], [])]);
    const ones = dims.map((_, a) => (a === axis ? [-1] : [1]));
    const col = this.node("Reshape", [r, this.i64(ones.map((o) => o[0]))]);
    if (dataType === ONNX_TYPE.INT64) this.node("Expand", [col, this.vector(dims)], undefined, name);
    else this.node("Cast", [this.node("Expand", [col, this.vector(dims)])], { to: { i: dataType } }, name);
  }
}

/** Fits one column of probe values (grid points, then the check point); undefined when it is no polynomial. */
function fitColumn(values: readonly number[], grid: ProbeGrid): Poly | undefined {
  const p = fitPoly(values, grid);
  return p && polyAt(p, grid.points.at(-1)!) === values.at(-1) ? p : undefined;
}

/** The symbolic model from the probe models (one per probe point of `grid`), or why there is none. */
function symbolicModel(models: readonly ModelDef[], grid: ProbeGrid): { model: ModelDef } | { why: string } {
  const gs = models.map((m) => m.graph), g0 = gs[0];
  const same = <T>(f: (g: ModelDef["graph"]) => T) => gs.every((g) => JSON.stringify(f(g)) === JSON.stringify(f(g0)));
  if (!same((g) => g.nodes)) return { why: "the lowered model's nodes change with the sizes" };
  if (!same((g) => g.initializers.map((t) => [t.name, t.dataType, t.dims.length]))) {
    return { why: "the lowered model's constants change with the sizes" };
  }
  if (!same((g) => [g.inputs, g.outputs].map((vs) => vs.map((v) => [v.name, v.dataType, v.dims.length])))) {
    return { why: "the lowered model's inputs or outputs change with the sizes" };
  }
  const dimsOf = (pick: (g: ModelDef["graph"]) => readonly (number | string)[]): Poly[] | undefined => {
    const out: Poly[] = [];
    for (let a = 0; a < pick(g0).length; a++) {
      const p = fitColumn(gs.map((g) => pick(g)[a] as number), grid);
      if (!p) return undefined;
      out.push(p);
    }
    return out;
  };
  // Where each size can be read at run time: the first model input with exactly that size as a dim.
  const sources: ({ input: string; axis: number } | undefined)[] = grid.symbols.map(() => undefined);
  const io = (kind: "inputs" | "outputs") =>
    g0[kind].map((v, k) => {
      const dims = dimsOf((g) => g[kind][k].dims);
      if (!dims) throw new Error(`a dim of ${kind.slice(0, -1)} "${v.name}" is no polynomial of the sizes`);
      dims.forEach((p, axis) => {
        const s = pureSymbol(p);
        if (kind === "inputs" && s >= 0) sources[s] ??= { input: v.name, axis };
      });
      return { ...v, dims: dims.map((p) => (isConstant(p) ? p[0] : polyName(p, grid.symbols))) };
    });
  let inputs, outputs;
  try {
    inputs = io("inputs"), outputs = io("outputs");
  } catch (e) {
    return { why: (e as Error).message };
  }
  const math = new ShapeMath(sources);
  const initializers: TensorDef[] = [];
  const computed = new Map<string, Poly[]>(); // computed int vectors: their elements
  try {
    for (let k = 0; k < g0.initializers.length; k++) {
      const ts = gs.map((g) => g.initializers[k]), t0 = ts[0];
      const fixed = ts.every((t) => t.dims.join() === t0.dims.join() && sameBytes(t.raw!, t0.raw!));
      if (fixed) {
        initializers.push(t0);
        continue;
      }
      const values = ts.map(intsOf);
      if (values.some((v) => !v)) throw new Error(`constant "${t0.name}" (type ${t0.dataType}) changes with the sizes`);
      const dims = dimsOf((g) => g.initializers[k].dims);
      if (!dims) throw new Error(`a dim of constant "${t0.name}" is no polynomial of the sizes`);
      if (dims.every(isConstant)) {
        const polys = values[0]!.map((_, e) => fitColumn(values.map((v) => v![e]), grid));
        if (polys.some((p) => !p)) throw new Error(`a value of constant "${t0.name}" is no polynomial of the sizes`);
        math.shaped(t0.name, math.vector(polys as Poly[]), dims, t0.dataType);
        if (dims.length === 1) computed.set(t0.name, polys as Poly[]);
      } else {
        const axis = iotaAxis(values[0]!, t0.dims);
        if (axis < 0 || !ts.every((t, p) => iotaAxis(values[p]!, t.dims) === axis)) {
          throw new Error(`constant "${t0.name}" changes size with the sizes and does not count along an axis`);
        }
        math.iota(t0.name, dims, axis, t0.dataType);
      }
    }
  } catch (e) {
    return { why: (e as Error).message };
  }
  const graph = merged({
    ...g0,
    nodes: [...math.nodes, ...g0.nodes],
    inputs,
    outputs,
    initializers: [...initializers, ...math.inits],
  });
  const reshaped = reshapeInfo(graph, computed, grid.symbols);
  const probes = gs.map(inferShapes);
  const fitted = fittedInfo(
    graph,
    probes,
    (c) => fitColumn(c, grid),
    grid.symbols,
    new Set(reshaped.map((v) => v.name)),
  );
  graph.valueInfo = [...reshaped, ...fitted];
  return { model: { ...models[0], graph } };
}
