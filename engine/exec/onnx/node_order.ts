/**
 * The node order of a lowered model, given back to the optimized model ONNX Runtime saves of it (model_cache.ts).
 * ONNX Runtime writes an optimized graph's nodes in its own topological order, and a session runs them in the
 * file's order: a cached 135M LoRA step lost the lowering's order (in-place state writers after their readers,
 * recomputed activations next to their use; 6,216 of 19,155 nodes moved by more than 1,000 places), and its session
 * then peaked ~600 MB higher and took ~1 s longer on each new length's first run than the session built from the
 * lowered model. {@link reorderLike} sorts the saved nodes back: a topological order that takes, among the nodes
 * ready to run, the one whose first output comes first in the lowered model (nodes the optimizer made, after the
 * latest of their inputs' producers).
 *
 * Only the bytes of the node list are permuted (a minimal protobuf walk: ModelProto.graph = 7, GraphProto.node = 1,
 * NodeProto.input = 1, NodeProto.output = 2); every other field is copied as it is.
 * @module
 */

/** A field of a protobuf message: its number, wire type and the bytes of the whole field (tag included). */
interface Field {
  no: number;
  wire: number;
  start: number;
  end: number;
  /** The payload of a length-delimited field. */
  body?: [number, number];
}

function varint(b: Uint8Array, o: number): [number, number] {
  let v = 0, mul = 1;
  for (;;) {
    if (o >= b.length) throw new Error("truncated varint");
    const x = b[o++];
    v += (x & 0x7f) * mul;
    if (x < 0x80) return [v, o];
    mul *= 128;
  }
}

function fields(b: Uint8Array, start = 0, end = b.length): Field[] {
  const out: Field[] = [];
  let o = start;
  while (o < end) {
    const s = o;
    let tag: number;
    [tag, o] = varint(b, o);
    const no = Math.floor(tag / 8), wire = tag & 7;
    let body: [number, number] | undefined;
    if (wire === 0) o = varint(b, o)[1];
    else if (wire === 1) o += 8;
    else if (wire === 5) o += 4;
    else if (wire === 2) {
      let n: number;
      [n, o] = varint(b, o);
      body = [o, o + n];
      o += n;
    } else throw new Error(`wire type ${wire}`);
    if (o > end) throw new Error("truncated field");
    out.push({ no, wire, start: s, end: o, body });
  }
  return out;
}

function putVarint(v: number): number[] {
  const out: number[] = [];
  while (v >= 0x80) out.push((v % 128) | 0x80), v = Math.floor(v / 128);
  out.push(v);
  return out;
}

const dec = new TextDecoder();

/** The graph field of a ModelProto and each node's inputs and outputs, with its bytes. */
function graphOf(model: Uint8Array) {
  const top = fields(model);
  const g = top.find((f) => f.no === 7 && f.wire === 2);
  if (!g) throw new Error("no graph");
  const gf = fields(model, g.body![0], g.body![1]);
  const nodes = gf.filter((f) => f.no === 1 && f.wire === 2).map((f) => {
    const ins: string[] = [], outs: string[] = [];
    for (const x of fields(model, f.body![0], f.body![1])) {
      if (x.wire !== 2 || (x.no !== 1 && x.no !== 2)) continue;
      (x.no === 1 ? ins : outs).push(dec.decode(model.subarray(x.body![0], x.body![1])));
    }
    return { field: f, ins, outs };
  });
  return { top, g, gf, nodes };
}

/** A binary min-heap of node indices by priority (ties: the lower index). */
class Heap {
  private readonly a: number[] = [];
  constructor(private readonly key: (i: number) => number) {}
  get size(): number {
    return this.a.length;
  }
  private less(x: number, y: number): boolean {
    const kx = this.key(x), ky = this.key(y);
    return kx < ky || (kx === ky && x < y);
  }
  push(i: number): void {
    const a = this.a;
    a.push(i);
    for (let c = a.length - 1; c > 0;) {
      const p = (c - 1) >> 1;
      if (!this.less(a[c], a[p])) break;
      [a[c], a[p]] = [a[p], a[c]];
      c = p;
    }
  }
  pop(): number {
    const a = this.a, top = a[0], last = a.pop()!;
    if (a.length) {
      a[0] = last;
      for (let p = 0;;) {
        const l = 2 * p + 1, r = l + 1;
        let m = p;
        if (l < a.length && this.less(a[l], a[m])) m = l;
        if (r < a.length && this.less(a[r], a[m])) m = r;
        if (m === p) break;
        [a[m], a[p]] = [a[p], a[m]];
        p = m;
      }
    }
    return top;
  }
}

/**
 * `optimized` (a serialized ModelProto) with its nodes in `reference`'s order as far as their dependencies allow
 * (see the module doc), or undefined when either cannot be read or the order is already the same.
 */
export function reorderLike(optimized: Uint8Array, reference: Uint8Array): Uint8Array | undefined {
  let opt, ref;
  try {
    opt = graphOf(optimized), ref = graphOf(reference);
  } catch {
    return undefined;
  }
  const refPos = new Map<string, number>();
  ref.nodes.forEach((n, i) => n.outs.forEach((o) => refPos.set(o, i)));
  const nodes = opt.nodes, N = nodes.length;
  const producer = new Map<string, number>();
  nodes.forEach((n, i) => n.outs.forEach((o) => o && producer.set(o, i)));
  // Priority: the lowered position of the first output that has one; a new node: just after its latest producer.
  const prio = new Array<number>(N).fill(NaN);
  const prioOf = (i: number): number => {
    if (!Number.isNaN(prio[i])) return prio[i];
    const known = nodes[i].outs.map((o) => refPos.get(o)).find((p) => p !== undefined);
    if (known !== undefined) return prio[i] = known;
    prio[i] = -1; // cycles cannot occur in a valid graph; this guards the recursion
    let p = -1;
    for (const x of nodes[i].ins) {
      const j = producer.get(x);
      if (j !== undefined && j !== i) p = Math.max(p, prioOf(j));
    }
    return prio[i] = p + 0.5;
  };
  const users: number[][] = nodes.map(() => []);
  const waiting = new Array<number>(N).fill(0);
  nodes.forEach((n, i) => {
    prioOf(i);
    for (const x of new Set(n.ins)) {
      const j = producer.get(x);
      if (j !== undefined && j !== i) users[j].push(i), waiting[i]++;
    }
  });
  const heap = new Heap((i) => prio[i]);
  for (let i = 0; i < N; i++) if (!waiting[i]) heap.push(i);
  const order: number[] = [];
  while (heap.size) {
    const i = heap.pop();
    order.push(i);
    for (const u of users[i]) if (--waiting[u] === 0) heap.push(u);
  }
  if (order.length !== N || order.every((v, k) => v === k)) return undefined; // a cycle (invalid) or no change
  // The graph's fields as they were, its node fields' slots filled in the new order.
  const parts: Uint8Array[] = [];
  let k = 0;
  for (const f of opt.gf) {
    const src = f.no === 1 && f.wire === 2 ? nodes[order[k++]].field : f;
    parts.push(optimized.subarray(src.start, src.end));
  }
  const gLen = parts.reduce((n, p) => n + p.length, 0);
  const out: Uint8Array[] = [];
  for (const f of opt.top) {
    if (f !== opt.g) out.push(optimized.subarray(f.start, f.end));
    else out.push(Uint8Array.from([0x3a, ...putVarint(gLen)]), ...parts);
  }
  const all = new Uint8Array(out.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of out) all.set(p, o), o += p.length;
  return all;
}
