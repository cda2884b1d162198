/**
 * The op definition interface and the op registry.
 *
 * An op is defined once, in one place: its shape inference, its gradient rule (written with the same
 * tracing API the models use) and its reference implementation in f64. WebGPU lowerings live in
 * `kernels/`, one family per file.
 * @module
 */
import type { Attrs, DType, TensorInfo } from "./types.ts";
import type { Tensor } from "./graph.ts";

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
