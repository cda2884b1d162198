/**
 * Graphs and symbolic tensors. Model code runs once on {@link Tensor}s; every op call appends a
 * {@link Node} with static shapes to the tensor's {@link Graph}.
 *
 * @example
 * ```ts
 * const g = new Graph();
 * const x = g.input("x", [2, 3]);
 * const w = g.param("w", [3, 4]);
 * g.output("y", matmul(x, w));
 * ```
 *
 * The op definition interface and the op registry live here too (op.ts is their entry point for op authors): a
 * graph infers shapes through the registry and an op's gradient rule traces on tensors, so the two are one unit.
 * An op is defined once, in one place: its shape inference, its gradient rule (written with the same tracing API
 * the models use) and its reference implementation in f64. WebGPU lowerings live in `kernels/`.
 * @module
 */
import { type Attrs, type DType, fmtInfo, type Node, type TensorInfo, type Value } from "./types.ts";

/** A symbolic tensor: a handle on one value of one graph. */
export class Tensor implements TensorInfo {
  constructor(readonly graph: Graph, readonly id: number) {}
  get value(): Value {
    return this.graph.values[this.id];
  }
  get shape(): readonly number[] {
    return this.graph.values[this.id].shape;
  }
  get dtype(): DType {
    return this.graph.values[this.id].dtype;
  }
  get rank(): number {
    return this.shape.length;
  }
  toString(): string {
    return `Tensor#${this.id}${fmtInfo(this)}`;
  }
}

/** A traced computation: values, nodes in trace order, named inputs, params and outputs. */
export class Graph {
  readonly values: Value[] = [];
  readonly nodes: Node[] = [];
  readonly inputs = new Map<string, number>();
  readonly params = new Map<string, number>();
  readonly outputs = new Map<string, number>();
  /**
   * Node ranges [start, end) traced inside {@link Graph.checkpoint}: their activations are recomputed for the
   * backward pass instead of kept (see autodiff.ts).
   */
  readonly checkpoints: { start: number; end: number }[] = [];
  /**
   * Inputs the host computes from the other feeds at each run ({@link Graph.derivedInput}); executors fill them in
   * through {@link completeFeeds}.
   */
  readonly derived = new Map<string, (feeds: Record<string, ArrayLike<number>>) => ArrayLike<number>>();
  /**
   * Node ranges [start, end) that {@link backward} appended to recompute a checkpointed segment: the same ops on the
   * same inputs as the segment's, which an executor must not merge with them (the ONNX lowering keeps them apart).
   */
  readonly recomputed: { start: number; end: number }[] = [];

  #addValue(v: Omit<Value, "id">): Tensor {
    const id = this.values.length;
    for (const d of v.shape) {
      if (!Number.isInteger(d) || d < 0) {
        throw new Error(`shape [${v.shape.join(", ")}] has a dimension that is not a non-negative integer`);
      }
    }
    this.values.push({ ...v, shape: [...v.shape], id });
    return new Tensor(this, id);
  }

  /** A per-step input fed by name. */
  input(name: string, shape: readonly number[], dtype: DType = "f32"): Tensor {
    if (this.inputs.has(name)) throw new Error(`graph input "${name}" is declared twice`);
    const t = this.#addValue({ kind: "input", name, shape, dtype });
    this.inputs.set(name, t.id);
    return t;
  }

  /**
   * A per-step input the caller does not feed: at each run the executor computes it on the host from the run's
   * feeds with `from` (e.g. RoPE frequencies from the positions fed; see ops/rope_feed.ts). A feed given under
   * `name` is used as it is.
   */
  derivedInput(
    name: string,
    shape: readonly number[],
    dtype: DType,
    from: (feeds: Record<string, ArrayLike<number>>) => ArrayLike<number>,
  ): Tensor {
    const t = this.input(name, shape, dtype);
    this.derived.set(name, from);
    return t;
  }

  /** A persistent parameter or state, kept in the executor's store under `name`. */
  param(name: string, shape: readonly number[], dtype: DType = "f32"): Tensor {
    const old = this.params.get(name);
    if (old !== undefined) {
      const v = this.values[old];
      if (v.dtype !== dtype || v.shape.join() !== shape.join()) {
        throw new Error(`param "${name}" declared as ${fmtInfo(v)} and again as [${shape.join(", ")}] ${dtype}`);
      }
      return new Tensor(this, old);
    }
    const t = this.#addValue({ kind: "param", name, shape, dtype });
    this.params.set(name, t.id);
    return t;
  }

  /** A constant baked into the graph. */
  constant(data: ArrayLike<number>, shape: readonly number[], dtype: DType = "f32"): Tensor {
    const n = shape.reduce((a, b) => a * b, 1);
    if (data.length !== n) {
      throw new Error(`constant of shape [${shape.join(", ")}] needs ${n} values, got ${data.length}`);
    }
    return this.#addValue({ kind: "const", shape, dtype, data: Float64Array.from(data) });
  }

  /** A scalar constant. */
  scalar(x: number, dtype: DType = "f32"): Tensor {
    return this.constant([x], [], dtype);
  }

  /** Marks `t` as a graph output fetchable by `name`. */
  /**
   * Traces `fn` as an activation-checkpointed segment: {@link backward} recomputes the segment's forward from
   * its inputs just before differentiating it, so the activations inside it need not live until then (a
   * decoder layer keeps only its input). Segments must not contain ops with effects.
   *
   * @example
   * ```ts
   * h = g.checkpoint(() => layer(h)); // per decoder layer
   * ```
   */
  checkpoint<T>(fn: () => T): T {
    const start = this.nodes.length;
    const out = fn();
    const end = this.nodes.length;
    for (let i = start; i < end; i++) {
      if ((getOp(this.nodes[i].op).effects?.length ?? 0) > 0) {
        throw new Error(`checkpoint: op "${this.nodes[i].op}" has effects; a checkpointed segment cannot hold it`);
      }
    }
    if (end > start) this.checkpoints.push({ start, end });
    return out;
  }

  output(name: string, t: Tensor): Tensor {
    if (t.graph !== this) throw new Error(`output "${name}" belongs to another graph`);
    this.outputs.set(name, t.id);
    return t;
  }

  /** Appends a node of op `op`; returns its outputs. */
  apply(op: string, inputs: readonly Tensor[], attrs: Attrs = {}): Tensor[] {
    const def = getOp(op);
    for (const t of inputs) {
      if (t.graph !== this) throw new Error(`op "${op}": an input belongs to another graph`);
    }
    let infos: TensorInfo[];
    try {
      infos = def.infer(inputs.map((t) => t.value), attrs);
    } catch (e) {
      const got = inputs.map((t) => fmtInfo(t)).join("; ");
      throw new Error(`op "${op}" (inputs ${got}): ${(e as Error).message}`);
    }
    const id = this.nodes.length;
    const outs = infos.map((info) => this.#addValue({ kind: "op", shape: info.shape, dtype: info.dtype, node: id }));
    this.nodes.push({ id, op, inputs: inputs.map((t) => t.id), outputs: outs.map((t) => t.id), attrs });
    return outs;
  }

  /** A handle on value `id`. */
  tensor(id: number): Tensor {
    if (id < 0 || id >= this.values.length) throw new Error(`no value ${id} in this graph`);
    return new Tensor(this, id);
  }
}

/** `feeds` with each of the graph's derived inputs ({@link Graph.derivedInput}) that it lacks computed from it. */
export function completeFeeds(
  graph: Graph,
  feeds: Record<string, ArrayLike<number>>,
): Record<string, ArrayLike<number>> {
  if (!graph.derived.size) return feeds;
  const out = { ...feeds };
  for (const [name, from] of graph.derived) if (feeds[name] === undefined) out[name] = from(feeds);
  return out;
}

/** The graph of the first tensor (checks all belong to it). */
export function graphOf(...ts: Tensor[]): Graph {
  const g = ts[0].graph;
  for (const t of ts) if (t.graph !== g) throw new Error("tensors from different graphs were combined");
  return g;
}

/** Applies a single-output op. */
export function op1(op: string, inputs: readonly Tensor[], attrs: Attrs = {}): Tensor {
  return graphOf(...inputs).apply(op, inputs, attrs)[0];
}

/** A tensor as the reference executor holds it: f64 data in row-major order. */
export interface RefTensor {
  data: Float64Array;
  readonly shape: readonly number[];
  readonly dtype: DType;
}

/** What a gradient rule receives. */
export interface GradContext<A extends Attrs = Attrs> {
  readonly inputs: readonly Tensor[];
  readonly outputs: readonly Tensor[];
  /** Gradient of the loss w.r.t. each output; undefined where no gradient flows. */
  readonly grads: readonly (Tensor | undefined)[];
  readonly attrs: A;
  /** needs[i]: whether input i needs a gradient. Rules may skip the others. */
  readonly needs: readonly boolean[];
}

/** Definition of one op. */
export interface OpDef<A extends Attrs = Attrs> {
  readonly name: string;
  /** Output infos from input infos; throws an Error that names the op and what was expected. */
  infer(inputs: readonly TensorInfo[], attrs: A): TensorInfo[];
  /** Reverse-mode rule: gradients w.r.t. inputs (undefined for none). Absent: not differentiable. */
  grad?(ctx: GradContext<A>): (Tensor | undefined)[];
  /** Reference implementation (f64). Effect ops mutate `inputs[i].data` for i in `effects`. */
  ref(inputs: readonly RefTensor[], attrs: A, outputs: readonly TensorInfo[]): Float64Array[];
  /** Indices of inputs this op writes in place (persistent params/states); it runs after all readers. */
  readonly effects?: readonly number[];
  /** The output is a view of input 0 (same bytes, new shape): no kernel, no memory. */
  readonly view?: boolean;
}

const registry = new Map<string, OpDef>();

/** Registers op definitions; a name registered twice is an error. */
export function registerOps(defs: readonly OpDef[]): void {
  for (const d of defs) {
    if (registry.has(d.name)) throw new Error(`op "${d.name}" is registered twice`);
    registry.set(d.name, d as OpDef);
  }
}

/** Looks up an op by name. */
export function getOp(name: string): OpDef {
  const d = registry.get(name);
  if (!d) throw new Error(`unknown op "${name}"; registered: ${[...registry.keys()].join(", ")}`);
  return d;
}

/** All registered op names. */
export function opNames(): string[] {
  return [...registry.keys()];
}

/** Defines an op with typed attrs (identity helper for inference). */
export function defineOp<A extends Attrs>(def: OpDef<A>): OpDef {
  return def as unknown as OpDef;
}
