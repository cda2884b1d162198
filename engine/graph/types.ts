/**
 * Core types of the graph IR: dtypes, tensor infos, values and nodes.
 * @module
 */

/** Element types a graph value may have. Compute always happens in f32 (or f64 on the reference). */
export type DType = "f32" | "f16" | "bf16" | "i32" | "u32";

/** Bytes per element of each dtype as stored in memory. */
export const DTYPE_BYTES: Record<DType, number> = {
  f32: 4,
  f16: 2,
  bf16: 2,
  i32: 4,
  u32: 4,
};

/** True for the floating-point dtypes (the ones that may carry gradients). */
export function isFloat(dtype: DType): boolean {
  return dtype === "f32" || dtype === "f16" || dtype === "bf16";
}

/** Static shape and dtype of a tensor. */
export interface TensorInfo {
  readonly shape: readonly number[];
  readonly dtype: DType;
}

/** Attributes of a node: plain JSON-like data. */
export type Attrs = Record<string, unknown>;

/** Where a value comes from. */
export type ValueKind = "input" | "param" | "const" | "op";

/** One value (SSA tensor) of a graph. */
export interface Value extends TensorInfo {
  readonly id: number;
  readonly kind: ValueKind;
  /** Feed name for inputs, store key for params. */
  readonly name?: string;
  /** Producing node for kind "op". */
  readonly node?: number;
  /** Constant data (kind "const"), in f64. */
  readonly data?: Float64Array;
}

/** One operation of a graph. */
export interface Node {
  readonly id: number;
  readonly op: string;
  readonly inputs: readonly number[];
  readonly outputs: readonly number[];
  readonly attrs: Attrs;
}

/** Number of elements of a shape. */
export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Row-major strides of a shape. */
export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/** "[2, 3] f32" — for error messages. */
export function fmtInfo(t: TensorInfo): string {
  return `[${t.shape.join(", ")}] ${t.dtype}`;
}
