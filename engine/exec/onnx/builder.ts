/**
 * Builds an ONNX graph node by node with fresh value names, deduplicated constants and small helpers
 * for the patterns the lowerings repeat (int64 shape vectors, scalars, casts).
 *
 * @example
 * ```ts
 * const b = new OnnxBuilder();
 * const x = b.input("x", ONNX_TYPE.FLOAT, [2, 3]);
 * b.output(b.op("Relu", [x])[0], "y", ONNX_TYPE.FLOAT, [2, 3]);
 * const bytes = encodeModel(b.model("relu"));
 * ```
 * @module
 */
import { type AttrValue, type GraphDef, type ModelDef, type NodeDef, ONNX_TYPE, type TensorDef } from "./proto.ts";

/** Little-endian bytes of typed data. */
function bytesOf(a: Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | Uint16Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** JSON replacer for attribute values: tensor bytes and non-finite floats spelled out. */
function attrJson(_k: string, v: unknown): unknown {
  if (v instanceof Uint8Array) return Array.from(v).join(",");
  if (typeof v === "number" && !Number.isFinite(v)) return String(v);
  return v;
}

/** An ONNX graph under construction. */
export class OnnxBuilder {
  readonly nodes: NodeDef[] = [];
  readonly inputs: GraphDef["inputs"] = [];
  readonly outputs: GraphDef["outputs"] = [];
  readonly initializers: TensorDef[] = [];
  private n = 0;
  private consts = new Map<string, string>();
  private memo = new Map<string, string[]>();

  /**
   * `dedupeConstants`: small initializers equal in content share one name (default). Off, every initializer is its
   * own, so a model's structure never depends on two constants happening to be equal (symbolic.ts compares models
   * lowered at different sizes).
   */
  constructor(private readonly dedupeConstants = true) {}

  /** A fresh value name (prefix kept readable for debugging). */
  fresh(prefix = "t"): string {
    return `${prefix}_${this.n++}`;
  }

  /** Declares a graph input. */
  input(name: string, dataType: number, dims: readonly (number | string)[]): string {
    this.inputs.push({ name, dataType, dims });
    return name;
  }

  /** Declares `value` as graph output `name` (an Identity renames it when the names differ). */
  output(value: string, name: string, dataType: number, dims: readonly (number | string)[]): void {
    if (value !== name) this.nodes.push({ opType: "Identity", inputs: [value], outputs: [name] });
    this.outputs.push({ name, dataType, dims });
  }

  /**
   * Adds a node with `nOut` fresh outputs; returns their names. A node equal to one already added (same op,
   * inputs and attributes) is not added again: its outputs are returned (every op emitted is deterministic),
   * so e.g. the logits a fused cross-entropy's backward recomputes are the forward's.
   */
  op(
    opType: string,
    inputs: readonly string[],
    attrs?: Record<string, AttrValue>,
    nOut = 1,
    domain?: string,
  ): string[] {
    const key = `${domain ?? ""}|${opType}|${inputs.join(",")}|${nOut}|${JSON.stringify(attrs ?? {}, attrJson)}`;
    const hit = this.memo.get(key);
    if (hit) return hit;
    const outputs = Array.from({ length: nOut }, () => this.fresh(opType.toLowerCase()));
    this.nodes.push({ opType, inputs: [...inputs], outputs, attrs, domain });
    this.memo.set(key, outputs);
    return outputs;
  }

  /** One-output node. */
  op1(opType: string, inputs: readonly string[], attrs?: Record<string, AttrValue>, domain?: string): string {
    return this.op(opType, inputs, attrs, 1, domain)[0];
  }

  /** An initializer (small ones deduplicated by content). */
  tensor(dataType: number, dims: readonly number[], raw: Uint8Array, name?: string): string {
    const key = this.dedupeConstants && raw.length <= 256 && !name
      ? `${dataType}|${dims.join(",")}|${raw.join(",")}`
      : undefined;
    if (key) {
      const hit = this.consts.get(key);
      if (hit) return hit;
    }
    const n = name ?? this.fresh("const");
    this.initializers.push({ name: n, dims: [...dims], dataType, raw: raw.slice() });
    if (key) this.consts.set(key, n);
    return n;
  }

  /** int64 vector (shapes, axes, starts). */
  i64(values: readonly number[]): string {
    return this.tensor(ONNX_TYPE.INT64, [values.length], bytesOf(BigInt64Array.from(values, (v) => BigInt(v))));
  }

  /** int64 tensor. */
  i64sTensor(dims: readonly number[], data: readonly number[]): string {
    return this.tensor(ONNX_TYPE.INT64, dims, bytesOf(BigInt64Array.from(data, (v) => BigInt(v))));
  }

  /** int64 scalar (rank 0). */
  i64s(v: number): string {
    return this.tensor(ONNX_TYPE.INT64, [], bytesOf(BigInt64Array.of(BigInt(v))));
  }

  /** f32 scalar (rank 0). */
  f32(v: number): string {
    return this.tensor(ONNX_TYPE.FLOAT, [], bytesOf(Float32Array.of(v)));
  }

  /** f64 scalar (rank 0). */
  f64(v: number): string {
    return this.tensor(ONNX_TYPE.DOUBLE, [], bytesOf(Float64Array.of(v)));
  }

  /** i32 scalar (rank 0). */
  i32(v: number): string {
    return this.tensor(ONNX_TYPE.INT32, [], bytesOf(Int32Array.of(v)));
  }

  /** f32 tensor. */
  f32s(dims: readonly number[], data: ArrayLike<number>): string {
    return this.tensor(ONNX_TYPE.FLOAT, dims, bytesOf(Float32Array.from(data)));
  }

  /** f64 tensor. */
  f64s(dims: readonly number[], data: ArrayLike<number>): string {
    return this.tensor(ONNX_TYPE.DOUBLE, dims, bytesOf(Float64Array.from(data)));
  }

  /** i32 tensor. */
  i32s(dims: readonly number[], data: ArrayLike<number>): string {
    return this.tensor(ONNX_TYPE.INT32, dims, bytesOf(Int32Array.from(data)));
  }

  cast(x: string, to: number): string {
    return this.op1("Cast", [x], { to: { i: to } });
  }

  reshape(x: string, shape: readonly number[]): string {
    return this.op1("Reshape", [x, this.i64(shape)]);
  }

  transpose(x: string, perm: readonly number[]): string {
    return this.op1("Transpose", [x], { perm: { ints: [...perm] } });
  }

  /** Reduction over `axes` (opset 18: axes as an input). */
  reduce(kind: "Sum" | "Mean" | "Max" | "LogSumExp", x: string, axes: readonly number[], keepdims: boolean): string {
    return this.op1(`Reduce${kind}`, [x, this.i64(axes)], { keepdims: { i: keepdims ? 1 : 0 } });
  }

  /** Binary helpers. */
  add(a: string, b: string): string {
    return this.op1("Add", [a, b]);
  }
  sub(a: string, b: string): string {
    return this.op1("Sub", [a, b]);
  }
  mul(a: string, b: string): string {
    return this.op1("Mul", [a, b]);
  }
  div(a: string, b: string): string {
    return this.op1("Div", [a, b]);
  }

  /** The model. */
  model(name: string): ModelDef {
    return {
      graph: {
        name,
        nodes: this.nodes,
        inputs: this.inputs,
        outputs: this.outputs,
        initializers: this.initializers,
      },
    };
  }
}
