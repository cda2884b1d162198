/**
 * A minimal protobuf writer for ONNX's `ModelProto` (onnx.proto3, IR version 9): only the messages and
 * fields Whetstone writes. Messages are built bottom-up as lists of byte chunks, so large tensors are
 * never copied into one growing buffer until the caller asks for the bytes.
 *
 * Field numbers follow onnx/onnx.proto3: ModelProto {ir_version 1, producer_name 2, producer_version 3,
 * graph 7, opset_import 8}, GraphProto {node 1, name 2, initializer 5, input 11, output 12},
 * NodeProto {input 1, output 2, name 3, op_type 4, attribute 5, domain 7}, AttributeProto {name 1, f 2,
 * i 3, s 4, t 5, floats 7, ints 8, type 20}, TensorProto {dims 1, data_type 2, name 8, raw_data 9,
 * external_data 13, data_location 14}, ValueInfoProto {name 1, type 2}, TypeProto {tensor_type 1},
 * TypeProto.Tensor {elem_type 1, shape 2}, TensorShapeProto {dim 1}, Dimension {dim_value 1, dim_param 2}.
 *
 * @example
 * ```ts
 * const bytes = encodeModel({ graph: { name: "g", nodes: [], inputs: [], outputs: [], initializers: [] } });
 * ```
 * @module
 */

/** ONNX TensorProto.DataType values used here. */
export const ONNX_TYPE = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  INT32: 6,
  INT64: 7,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  BFLOAT16: 16,
} as const;

/** An attribute value: number (INT when integral and `int` is set, else FLOAT), numbers, string or tensor. */
export type AttrValue =
  | { f: number }
  | { i: number }
  | { s: string }
  | { floats: number[] }
  | { ints: number[] }
  | { t: TensorDef };

/** One node of the graph. */
export interface NodeDef {
  opType: string;
  inputs: string[];
  outputs: string[];
  name?: string;
  domain?: string;
  attrs?: Record<string, AttrValue>;
}

/** A tensor: raw little-endian bytes, or a reference into an external data file. */
export interface TensorDef {
  name: string;
  dims: readonly number[];
  dataType: number;
  raw?: Uint8Array;
  external?: { location: string; offset: number; length: number };
}

/** A graph input or output: name, element type and dims (a string dim is symbolic). */
export interface ValueDef {
  name: string;
  dataType: number;
  dims: readonly (number | string)[];
}

/** A whole graph. */
export interface GraphDef {
  name: string;
  nodes: NodeDef[];
  inputs: ValueDef[];
  outputs: ValueDef[];
  initializers: TensorDef[];
  /** Types and shapes of intermediate values (hints for ONNX Runtime's shape inference and memory planner). */
  valueInfo?: ValueDef[];
}

/** A model: the graph and the opsets it imports (default: ai.onnx 18 and com.microsoft 1). */
export interface ModelDef {
  graph: GraphDef;
  opsets?: { domain: string; version: number }[];
  producerName?: string;
  producerVersion?: string;
}

const enc = new TextEncoder();

/** Messages or byte strings at most this long are copied into their parent's pending bytes, not kept as chunks. */
const INLINE = 256;

/**
 * A protobuf message under construction: a list of chunks and their total length. Small fields (tags, varints,
 * short strings and messages) gather in one pending byte list that becomes a chunk when a large one is pushed, so
 * a node's message is a few chunks rather than one per field.
 */
class Msg {
  private readonly done: Uint8Array[] = [];
  private pend: number[] = [];
  length = 0;

  /** The message's bytes as chunks, in order. */
  chunks(): Uint8Array[] {
    this.flush();
    return this.done;
  }

  private flush(): void {
    if (this.pend.length) {
      this.done.push(Uint8Array.from(this.pend));
      this.pend = [];
    }
  }

  private push(b: Uint8Array): void {
    if (b.length <= INLINE) {
      for (let i = 0; i < b.length; i++) this.pend.push(b[i]);
    } else {
      this.flush();
      this.done.push(b);
    }
    this.length += b.length;
  }

  private varint(v: number | bigint): void {
    if (typeof v === "number" && v >= 0 && v <= Number.MAX_SAFE_INTEGER) {
      let x = v;
      while (x >= 0x80) {
        this.pend.push((x % 0x80) | 0x80);
        x = Math.floor(x / 0x80);
        this.length++;
      }
      this.pend.push(x);
      this.length++;
      return;
    }
    let x = BigInt.asUintN(64, BigInt(v));
    while (x >= 0x80n) {
      this.pend.push(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
      this.length++;
    }
    this.pend.push(Number(x));
    this.length++;
  }

  private tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  int(field: number, v: number): this {
    if (!Number.isSafeInteger(v)) throw new Error(`protobuf: field ${field} needs an integer, got ${v}`);
    this.tag(field, 0);
    this.varint(v);
    return this;
  }

  float(field: number, v: number): this {
    this.tag(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.push(b);
    return this;
  }

  bytes(field: number, b: Uint8Array): this {
    this.tag(field, 2);
    this.varint(b.length);
    this.push(b);
    return this;
  }

  string(field: number, s: string): this {
    return this.bytes(field, enc.encode(s));
  }

  msg(field: number, m: Msg): this {
    this.tag(field, 2);
    this.varint(m.length);
    if (m.length <= INLINE) {
      for (const c of m.chunks()) for (let i = 0; i < c.length; i++) this.pend.push(c[i]);
      this.length += m.length;
    } else {
      this.flush();
      for (const c of m.chunks()) this.done.push(c);
      this.length += m.length;
    }
    return this;
  }

  /** Packed repeated int64. */
  packedInts(field: number, vs: readonly number[]): this {
    const inner = new Msg();
    for (const v of vs) inner.varint(v);
    this.tag(field, 2);
    this.varint(inner.length);
    for (const c of inner.chunks()) this.push(c);
    return this;
  }

  /** Packed repeated float. */
  packedFloats(field: number, vs: readonly number[]): this {
    const b = new Uint8Array(vs.length * 4);
    const dv = new DataView(b.buffer);
    vs.forEach((v, i) => dv.setFloat32(i * 4, v, true));
    return this.bytes(field, b);
  }
}

function tensorMsg(t: TensorDef): Msg {
  const m = new Msg();
  for (const d of t.dims) m.int(1, d);
  m.int(2, t.dataType).string(8, t.name);
  if (t.external) {
    const { location, offset, length } = t.external;
    for (const [k, v] of [["location", location], ["offset", String(offset)], ["length", String(length)]]) {
      m.msg(13, new Msg().string(1, k).string(2, v));
    }
    m.int(14, 1);
  } else m.bytes(9, t.raw ?? new Uint8Array());
  return m;
}

function attrMsg(name: string, a: AttrValue): Msg {
  const m = new Msg().string(1, name);
  if ("f" in a) m.float(2, a.f).int(20, 1);
  else if ("i" in a) m.int(3, a.i).int(20, 2);
  else if ("s" in a) m.string(4, a.s).int(20, 3);
  else if ("t" in a) m.msg(5, tensorMsg(a.t)).int(20, 4);
  else if ("floats" in a) m.packedFloats(7, a.floats).int(20, 6);
  else m.packedInts(8, a.ints).int(20, 7);
  return m;
}

function valueMsg(v: ValueDef): Msg {
  const shape = new Msg();
  for (const d of v.dims) shape.msg(1, typeof d === "number" ? new Msg().int(1, d) : new Msg().string(2, d));
  const tensorType = new Msg().int(1, v.dataType).msg(2, shape);
  return new Msg().string(1, v.name).msg(2, new Msg().msg(1, tensorType));
}

function nodeMsg(n: NodeDef): Msg {
  const m = new Msg();
  for (const i of n.inputs) m.string(1, i);
  for (const o of n.outputs) m.string(2, o);
  if (n.name) m.string(3, n.name);
  m.string(4, n.opType);
  for (const [k, a] of Object.entries(n.attrs ?? {})) m.msg(5, attrMsg(k, a));
  if (n.domain) m.string(7, n.domain);
  return m;
}

/** Encodes a model as the chunks of one `ModelProto` (write them in order, or join with {@link encodeModel}). */
export function encodeModelChunks(model: ModelDef): Uint8Array[] {
  const g = new Msg();
  for (const n of model.graph.nodes) g.msg(1, nodeMsg(n));
  g.string(2, model.graph.name);
  for (const t of model.graph.initializers) g.msg(5, tensorMsg(t));
  for (const v of model.graph.inputs) g.msg(11, valueMsg(v));
  for (const v of model.graph.outputs) g.msg(12, valueMsg(v));
  for (const v of model.graph.valueInfo ?? []) g.msg(13, valueMsg(v));
  const m = new Msg().int(1, 9).string(2, model.producerName ?? "whetstone").string(3, model.producerVersion ?? "0");
  m.msg(7, g);
  for (const o of model.opsets ?? [{ domain: "", version: 18 }, { domain: "com.microsoft", version: 1 }]) {
    m.msg(8, new Msg().string(1, o.domain).int(2, o.version));
  }
  return m.chunks();
}

/** Encodes a model as one `ModelProto` byte array. */
export function encodeModel(model: ModelDef): Uint8Array {
  const chunks = encodeModelChunks(model);
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}
