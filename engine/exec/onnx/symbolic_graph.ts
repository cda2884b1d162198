/**
 * Finishing touches on a symbolic model's graph (symbolic.ts): equal constants and nodes merged once the probes are
 * fitted, and the named dims of its values (computed Reshapes' outputs, and every value whose shape the probes tell)
 * that ONNX Runtime's shape inference cannot work out itself.
 * @module
 */
import { type ModelDef, type NodeDef, ONNX_TYPE, type ValueDef } from "./proto.ts";
import { isConstant, type Poly, polyName } from "./symbolic_fit.ts";

/**
 * The graph with equal small constants as one (the probes are lowered with every constant apart, so that no two
 * happen to be equal at one size only) and then equal nodes as one (same op, inputs and attributes: every op the
 * lowerings emit is deterministic), as the builder would have made it: fewer values for ONNX Runtime to plan.
 */
export function merged(g: ModelDef["graph"]): ModelDef["graph"] {
  const rename = new Map<string, string>(), seen = new Map<string, string>();
  const initializers = g.initializers.filter((t) => {
    if (!t.raw || t.raw.length > 256) return true;
    const key = `${t.dataType}|${t.dims.join(",")}|${t.raw.join(",")}`;
    const hit = seen.get(key);
    if (hit === undefined) seen.set(key, t.name);
    else rename.set(t.name, hit);
    return hit === undefined;
  });
  const kept = new Set(g.outputs.map((v) => v.name)), nodeSeen = new Map<string, string[]>(), nodes: NodeDef[] = [];
  for (const n of g.nodes) {
    const inputs = n.inputs.map((i) => rename.get(i) ?? i);
    const key = `${n.domain ?? ""}|${n.opType}|${inputs.join(",")}|${n.outputs.length}|${
      JSON.stringify(n.attrs ?? {})
    }`;
    const hit = nodeSeen.get(key);
    if (hit && !n.outputs.some((o) => kept.has(o))) {
      n.outputs.forEach((o, k) => rename.set(o, hit[k]));
      continue;
    }
    nodeSeen.set(key, n.outputs);
    nodes.push({ ...n, inputs });
  }
  return { ...g, nodes, initializers };
}

/** ONNX element types of the values of a graph, as far as the ops the lowerings emit tell. */
export function typesOf(g: ModelDef["graph"]): Map<string, number> {
  const types = new Map<string, number>();
  for (const v of [...g.inputs, ...g.initializers]) types.set(v.name, v.dataType);
  const BOOL = new Set(["Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual", "And", "Or", "Not", "IsNaN"]);
  for (const n of g.nodes) {
    const t = n.opType === "Cast"
      ? (n.attrs?.to as { i: number }).i
      : BOOL.has(n.opType)
      ? ONNX_TYPE.BOOL
      : n.opType === "Shape"
      ? ONNX_TYPE.INT64
      : n.opType === "Where"
      ? types.get(n.inputs[1])
      : n.opType === "ConstantOfShape" // its value's type, not its shape input's (float by default)
      ? (n.attrs?.value as { t?: { dataType: number } } | undefined)?.t?.dataType ?? ONNX_TYPE.FLOAT
      : types.get(n.inputs[0]);
    if (t !== undefined) { for (const o of n.outputs) types.set(o, t); }
    if (n.opType === "TopK" && n.outputs[1]) types.set(n.outputs[1], ONNX_TYPE.INT64); // its indices
  }
  return types;
}

/**
 * Shapes of the outputs of Reshapes whose targets are computed at run time, their dims named as the model's inputs
 * name theirs (`L`, `4*L`): ONNX shape inference cannot multiply symbolic dims, and without names ONNX Runtime's memory
 * planner finds no buffer of the same size to reuse (and takes time quadratic in the model's size looking for one).
 */
export function reshapeInfo(
  g: ModelDef["graph"],
  computed: ReadonlyMap<string, Poly[]>,
  symbols: readonly string[],
): ValueDef[] {
  const types = typesOf(g), out: ValueDef[] = [];
  for (const n of g.nodes) {
    const dims = n.opType === "Reshape" ? computed.get(n.inputs[1]) : undefined;
    const dataType = types.get(n.inputs[0]);
    if (!dims || dataType === undefined || dims.some((p) => isConstant(p) && p[0] < 1)) continue;
    out.push({ name: n.outputs[0], dataType, dims: dims.map((p) => (isConstant(p) ? p[0] : polyName(p, symbols))) });
  }
  return out;
}

/**
 * Shapes of the values of the symbolic graph `g` fitted from their shapes in the probe models (`probes`: one map a
 * probe, shape_infer.ts; `fit` fits one dim's column of probe values, or gives undefined): every value the graph
 * computes (not an input, output or constant) whose dims all fit, named as `reshapeInfo` names them, the values in
 * `skip` left out. ONNX Runtime's inference then keeps its planner's shapes named past computed Slices and Expands
 * (and what follows them), where its own inference loses them.
 */
export function fittedInfo(
  g: ModelDef["graph"],
  probes: readonly ReadonlyMap<string, readonly number[]>[],
  fit: (column: number[]) => Poly | undefined,
  symbols: readonly string[],
  skip: ReadonlySet<string>,
): ValueDef[] {
  const types = typesOf(g), out: ValueDef[] = [];
  const declared = new Set([...g.inputs, ...g.outputs, ...g.initializers].map((v) => v.name));
  for (const n of g.nodes) {
    for (const name of n.outputs) {
      if (!name || declared.has(name) || skip.has(name)) continue;
      const dataType = types.get(name), shapes = probes.map((p) => p.get(name));
      if (dataType === undefined || shapes.some((s) => !s || s.length !== shapes[0]!.length)) continue;
      const dims: (number | string)[] = [];
      for (let a = 0; a < shapes[0]!.length; a++) {
        const p = fit(shapes.map((s) => s![a]));
        if (!p || (isConstant(p) && p[0] < 0)) break;
        dims.push(isConstant(p) ? p[0] : polyName(p, symbols));
      }
      if (dims.length === shapes[0]!.length) out.push({ name, dataType, dims });
    }
  }
  return out;
}
