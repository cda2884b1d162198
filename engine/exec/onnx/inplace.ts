/**
 * States written in place: the executor hands ONNX Runtime the stored array of a param both as the input
 * `param/<name>` and as the preallocated output `state/<name>`, so a step needs no second copy of the weights and
 * optimizer states it updates. That is sound only when the node writing the output runs after every node that
 * reads the old value. ONNX Runtime runs nodes in any topological order, so this pass makes that order a data
 * dependency: for each reader of the param's buffer (directly or through a view op that may alias it) that is
 * not already an ancestor of the writer, the written value goes through a Reshape whose shape input depends on
 * one element of that reader's output (a Where choosing between two equal shapes on it: no arithmetic on the
 * data, nothing constant folding can remove). A Reshape aliases its input, so the tie costs no copy.
 *
 * A state whose producing node itself reads the old buffer is in place only when that node is element-wise
 * (each output element is computed from the input elements at the same index before it is written); otherwise
 * it keeps a separate output buffer.
 *
 * @example
 * ```ts
 * const inPlace = tieInPlaceStates(builder, [{ input: "param/w", output: "state/w", shape: [4, 4] }]);
 * ```
 * @module
 */
import type { OnnxBuilder } from "./builder.ts";
import { ONNX_TYPE } from "./proto.ts";

/** Ops whose output ONNX Runtime may place in their first input's buffer (a view of it). */
const VIEW_OPS = new Set(["Reshape", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Dropout"]);

/**
 * Element-wise ops that may write into the buffer of an input they read: each output element depends only on
 * the input elements at its index (or on broadcast scalars), read before it is written. ONNX Runtime's Where
 * selects through temporaries before it writes the output.
 */
const ALIGNED_OPS = new Set(["Add", "Sub", "Mul", "Div", "Where", "Identity"]);

/** One state: the model input holding its old value, the output its new value goes to, and its shape. */
export interface StateIo {
  input: string;
  output: string;
  shape: readonly number[];
}

/**
 * Orders every state's writer after every reader of its old value (see the module doc), editing `b`'s nodes;
 * returns, per state, whether it may be written in place.
 */
export function tieInPlaceStates(b: OnnxBuilder, states: readonly StateIo[]): boolean[] {
  const nodes = b.nodes;
  const producer = new Map<string, number>();
  const consumers = new Map<string, number[]>();
  nodes.forEach((n, i) => {
    for (const o of n.outputs) producer.set(o, i);
    for (const x of n.inputs) {
      if (!x) continue;
      const list = consumers.get(x);
      if (list) list.push(i);
      else consumers.set(x, [i]);
    }
  });
  const outputs = new Set(b.outputs.map((o) => o.name));
  const inPlace: boolean[] = [];
  // Per state in place: its writer, the node making its value, and the readers of its old buffer.
  const found: {
    w: number;
    made: number | undefined;
    value: string;
    readers: Set<number>;
    shape: readonly number[];
  }[] = [];
  for (const s of states) {
    const w = producer.get(s.output);
    if (w === undefined) throw new Error(`state output "${s.output}" has no producing node`);
    // The param's buffer and every view of it.
    const views = new Set([s.input]);
    const queue = [s.input];
    while (queue.length) {
      for (const c of consumers.get(queue.pop()!) ?? []) {
        const n = nodes[c];
        if (VIEW_OPS.has(n.opType) && views.has(n.inputs[0]) && !views.has(n.outputs[0])) {
          views.add(n.outputs[0]);
          queue.push(n.outputs[0]);
        }
      }
    }
    const readers = new Set<number>();
    for (const v of views) for (const c of consumers.get(v) ?? []) readers.add(c);
    // The writer is the Identity naming the output; with it folded away, the node making its input writes.
    const value = nodes[w].inputs[0];
    const made = producer.get(value);
    const direct = made !== undefined && nodes[made].inputs.some((x) => views.has(x));
    // A graph output that is a view of the old buffer would be read after the run, when it holds the new value.
    const seen = [...views].some((v) => outputs.has(v));
    if (seen || views.has(value) || (direct && !ALIGNED_OPS.has(nodes[made!].opType))) {
      inPlace.push(false);
      continue;
    }
    inPlace.push(true);
    found.push({ w, made, value, readers, shape: s.shape });
  }
  // The readers each writer does not already wait for (not among its ancestors).
  const unordered = notAncestors(
    nodes,
    producer,
    found.map(({ w, made, readers }) => ({ node: w, of: [...readers].filter((r) => r !== w && r !== made) })),
  );
  const ties = new Map<number, { value: string; shape: readonly number[]; readers: string[] }>();
  for (const [k, { w, value, shape }] of found.entries()) {
    const loose = unordered[k];
    // One output of each reader stands for it (its first: every reader here has one).
    if (loose.length) ties.set(w, { value, shape, readers: loose.map((r) => nodes[r].outputs[0]) });
  }
  const untied = states.filter((s) => !ties.has(producer.get(s.output)!));
  if (ties.size === 0) {
    foldWriters(b, untied);
    return inPlace;
  }
  // Writers are output Identities, at the end of the node list and read by nothing: move each after its ties.
  const moved = [...ties.keys()].map((w) => nodes[w]);
  for (const w of [...ties.keys()].sort((a, z) => z - a)) nodes.splice(w, 1);
  for (const [k, tie] of [...ties.values()].entries()) {
    let dep = b.i64([...tie.shape]);
    for (const r of tie.readers) {
      const first = b.op1("Slice", [b.reshape(r, [-1]), b.i64([0]), b.i64([1])]);
      dep = b.op1("Where", [b.cast(first, ONNX_TYPE.BOOL), dep, dep]);
    }
    const w = moved[k];
    w.inputs[0] = b.op1("Reshape", [tie.value, dep]);
    nodes.push(w);
  }
  foldWriters(b, untied);
  return inPlace;
}

/** 32-bit words of ancestor sets held at once (nodes × words), past which {@link notAncestors} works in rounds. */
const ANCESTRY_WORDS = 1 << 23;

/**
 * For each query, the nodes of `of` that are not ancestors of `node`: one pass over the nodes in topological order
 * carries, per node, the set of queried nodes among its ancestors and itself (a bitset; in rounds of as many queried
 * nodes as `maxWords` allows). Linear in the graph per round, where a walk back from each writer was
 * quadratic (a 135M LoRA step: 1,260 states over ~20K nodes).
 */
export function notAncestors(
  nodes: readonly { inputs: readonly string[] }[],
  producer: ReadonlyMap<string, number>,
  queries: readonly { node: number; of: readonly number[] }[],
  maxWords = ANCESTRY_WORDS,
): number[][] {
  const n = nodes.length;
  // Inputs of each node as node indices, and a topological order (Kahn's: the list is in order already, but a tie
  // above may have moved a node).
  const predsOf = (inputs: readonly string[]) => new Set(inputs.flatMap((i) => producer.get(i) ?? []));
  const preds = nodes.map((x) => [...predsOf(x.inputs)]);
  const order = topological(preds);
  const targets = [...new Set(queries.flatMap((q) => q.of))];
  const out: number[][] = queries.map(() => []);
  const perRound = 32 * Math.max(1, Math.floor(maxWords / Math.max(n, 1)));
  for (let start = 0; start < targets.length; start += perRound) {
    const round = targets.slice(start, start + perRound);
    const bit = new Map(round.map((t, k) => [t, k]));
    const words = Math.ceil(round.length / 32);
    const anc = new Uint32Array(n * words);
    for (const i of order) {
      const row = i * words;
      for (const p of preds[i]) {
        const from = p * words;
        for (let k = 0; k < words; k++) anc[row + k] |= anc[from + k];
      }
      const k = bit.get(i);
      if (k !== undefined) anc[row + (k >> 5)] |= 1 << (k & 31);
    }
    queries.forEach((q, j) => {
      for (const r of q.of) {
        const k = bit.get(r);
        if (k !== undefined && !(anc[q.node * words + (k >> 5)] & (1 << (k & 31)))) out[j].push(r);
      }
    });
  }
  return out;
}

/** A topological order of nodes given each one's predecessors; throws on a cycle. */
function topological(preds: readonly number[][]): number[] {
  const n = preds.length, indegree = new Int32Array(n), succ: number[][] = preds.map(() => []);
  preds.forEach((ps, i) => {
    indegree[i] = ps.length;
    for (const p of ps) succ[p].push(i);
  });
  const order: number[] = [];
  for (let i = 0; i < n; i++) if (indegree[i] === 0) order.push(i);
  for (let h = 0; h < order.length; h++) {
    for (const s of succ[order[h]]) if (--indegree[s] === 0) order.push(s);
  }
  if (order.length !== n) throw new Error(`the lowered graph has a cycle (${n - order.length} nodes on it)`);
  return order;
}

/**
 * Drops the Identity writing each of `states` where the value it copies can be the output itself: the node making the
 * value writes straight into the output's buffer (renamed to the output), so no second [shape] buffer holds it while
 * the rest of the graph reads it. ONNX Runtime drops such an Identity itself only when nothing else reads the value
 * (measured on AdamW at [49152, 576]: 4 buffers of the param's size at its peak with the copies, 3 without).
 *
 * Only for states whose writer need not wait for a reader the graph does not already order before the value's node
 * (no tie above), or that are written into a spare buffer; and only where the value is made by a node, is no other
 * output, and no other output's Identity copies it.
 */
function foldWriters(b: OnnxBuilder, states: readonly StateIo[]): void {
  const nodes = b.nodes;
  const outputs = new Set(b.outputs.map((o) => o.name));
  const producer = new Map<string, number>();
  const copiedOut = new Map<string, number>(); // value → Identities copying it into an output
  nodes.forEach((n, i) => {
    for (const o of n.outputs) producer.set(o, i);
    if (n.opType === "Identity" && outputs.has(n.outputs[0])) {
      copiedOut.set(n.inputs[0], (copiedOut.get(n.inputs[0]) ?? 0) + 1);
    }
  });
  const renamed = new Map<string, string>();
  const dropped = new Set<number>();
  for (const s of states) {
    const w = producer.get(s.output);
    if (w === undefined || nodes[w].opType !== "Identity") continue;
    const value = nodes[w].inputs[0];
    const made = producer.get(value);
    if (made === undefined || outputs.has(value) || copiedOut.get(value) !== 1 || renamed.has(value)) continue;
    renamed.set(value, s.output);
    dropped.add(w);
  }
  if (renamed.size === 0) return;
  const kept = nodes.filter((_, i) => !dropped.has(i));
  nodes.length = 0;
  for (const n of kept) {
    n.inputs = n.inputs.map((x) => renamed.get(x) ?? x);
    n.outputs = n.outputs.map((x) => renamed.get(x) ?? x);
    nodes.push(n);
  }
}
