/**
 * ONNX lowering of the fused LM head + cross-entropy (`linear_cross_entropy` and its backward) in chunks, so a step
 * holds one chunk's logits and their exponentials at a time instead of all [N, V] of them with their softmax and
 * gradient (at 4 × 256 tokens and a 49,152 vocabulary, ~200 MB each).
 *
 * The chunk count K is fixed by the vocabulary ({@link ceBlocks}), never by N: the graph's structure must not depend
 * on the batch and sequence sizes, which symbolic.ts fits from models lowered at several lengths.
 * - The forward takes K row chunks of ⌈n / K⌉ rows, their bounds computed at run time from the rows' Shape (Slice
 *   clamps the last chunk; a chunk past the end is empty), each against the whole W: its row log-sum-exp and label
 *   logit, concatenated ([N] each).
 * - The backward takes K vocabulary blocks (static slices of W) and the forward's lse: p = exp(h · W_blockᵀ − lse)
 *   by one Gemm and an Exp; dh accumulates p · W_block, dW_block = pᵀ · (k ⊙ h) ([V / K, D]) are concatenated
 *   (a Pad of the first block and ScatterND of the others in place measured ~90 MB higher: ONNX Runtime copied the
 *   Pad's output at the first scatter), and the one-hot part is a Gather of W's label rows (dh) and one
 *   scatter-add of −k ⊙ h into them (dW), so no [N, V] product with k or one-hot is made either.
 * ONNX Runtime may run the nodes in any topological order (inplace.ts), not necessarily the order they are listed in:
 * the next chunk's input is tied to the current chunk's results ({@link after}) so every order finishes a chunk first
 * (untied, the head alone at 512 × 49,152 peaked ~340 MB higher). The backward's logits differ from the forward's
 * (row chunks against blocks), so neither the builder's memo nor ONNX Runtime's common subexpression elimination
 * merges them (which would keep the forward's alive until the backward).
 *
 * Measured (bench/memory_onnx.ts, SmolLM2-135M full tuning; docs/benchmarks.md): peak −0.13 GB at 4 × 128 tokens and
 * −0.41 GB at 4 × 256. The caller chooses (`LowerOptions.headChunks`: the executor chunks only steps that write large
 * states, where memory counts; the backward's recomputed logits cost LoRA steps time); `WHETSTONE_ONNX_CE_CHUNKS`
 * overrides it, `off` lowering the whole [N, V] at once.
 * @module
 */
import type { LinearCeAttrs, LinearCeBwdAttrs } from "../../graph/ops/linear_ce.ts";
import type { OnnxBuilder } from "./builder.ts";
import { ceBackward, ceCounted, ceForward, ceReduce, ceScale, labelIndex, rowLse } from "./lower_basic.ts";
import { ONNX_TYPE } from "./proto.ts";
import type { OnnxLowering } from "./lower_types.ts";

/** Vocabulary words per chunk the automatic choice aims at: ⌈V / this⌉ chunks (8,192: 16 MiB of logits at N = 512). */
export const CE_VOCAB_PER_BLOCK = 8192;
/** The most chunks. */
export const CE_MAX_BLOCKS = 16;

/**
 * Chunking of the fused head on ONNX Runtime: `WHETSTONE_ONNX_CE_CHUNKS` = `auto` (the default: ⌈V / 8,192⌉ chunks, at
 * most 16), a number of chunks, or `off` (the whole [N, V] at once, as before).
 */
export function ceChunkSetting(preferred = "auto"): string {
  try {
    return Deno.env.get("WHETSTONE_ONNX_CE_CHUNKS") ?? preferred;
  } catch {
    return preferred;
  }
}

/**
 * The number of chunks (row chunks of the forward, vocabulary blocks of the backward) for a V-word vocabulary under
 * `setting` (see {@link ceChunkSetting}): independent of N, so a symbolic graph keeps one structure; `auto` gives 1 up
 * to 8,192 words (small models keep one block).
 */
export function ceBlocks(V: number, setting = ceChunkSetting()): number {
  if (setting === "off" || setting === "" || setting === "1") return 1;
  if (setting === "auto") return Math.min(CE_MAX_BLOCKS, Math.max(1, Math.ceil(V / CE_VOCAB_PER_BLOCK)));
  const k = Number(setting);
  if (!Number.isInteger(k) || k < 1) {
    throw new Error(`WHETSTONE_ONNX_CE_CHUNKS must be off, auto or a whole number of chunks, got "${setting}"`);
  }
  return Math.min(k, V);
}

/** [start, end) of near-equal blocks of V words, at most K of them (fewer where ⌈V / K⌉ words fill them sooner). */
function blockBounds(V: number, K: number): [number, number][] {
  const size = Math.ceil(V / K);
  return Array.from({ length: Math.ceil(V / size) }, (_, j) => [j * size, Math.min(V, (j + 1) * size)]);
}

/** a [N, D] · w [V, D]ᵀ → [N, V]. */
function logitsOf(b: OnnxBuilder, a: string, w: string): string {
  return b.op1("FusedMatMul", [a, w], { transA: { i: 0 }, transB: { i: 1 }, alpha: { f: 1 } }, "com.microsoft");
}

/**
 * `x` (a view: Reshape) made to depend on one element of each of `deps`, so every topological order runs the deps
 * first (otherwise an order may make every chunk's logits before the first chunk's last reader). The shape is
 * Where(Σ firsts != 0, Shape(x), Shape(x)).
 */
function after(b: OnnxBuilder, x: string, deps: readonly string[]): string {
  // one element of each (0 for an empty one: a chunk past the last row)
  const firsts = deps.map((d) => {
    const head = b.op1("Slice", [b.reshape(d, [-1]), b.i64([0]), b.i64([1])]);
    return b.op1("Slice", [b.op1("Concat", [head, b.f32s([1], [0])], { axis: { i: 0 } }), b.i64([0]), b.i64([1])]);
  });
  const on = b.cast(firsts.reduce((s, f) => b.add(s, f)), ONNX_TYPE.BOOL), dims = b.op1("Shape", [x]);
  return b.op1("Reshape", [x, b.op1("Where", [on, dims, dims])]);
}

/**
 * The forward in K row chunks of ⌈n / K⌉ rows (bounds from the rows' Shape at run time; a chunk past the last row
 * is empty), each against the whole W (no copy of it): [loss, lse [N]] as ceForward's.
 */
function chunkedForward(
  b: OnnxBuilder,
  [h, w, labels]: readonly string[],
  N: number,
  V: number,
  K: number,
  a: LinearCeAttrs,
): string[] {
  const counted = ceCounted(b, labels, V, a.ignoreIndex), idx = labelIndex(b, labels, N, V);
  const n = b.op1("Shape", [h], { start: { i: 0 }, end: { i: 1 } });
  const c = b.op1("Div", [b.add(n, b.i64([K - 1])), b.i64([K])]);
  const bounds = Array.from({ length: K + 1 }, (_, i) => i === 0 ? b.i64([0]) : b.mul(c, b.i64([i])));
  const rows = (x: string, i: number) => b.op1("Slice", [x, bounds[i], bounds[i + 1], b.i64([0])]);
  const lses: string[] = [], picks: string[] = [];
  for (let i = 0; i < K; i++) {
    // [c, V], dead after the two reads below; the next chunk's made after them
    const z = logitsOf(b, rows(i ? after(b, h, [lses[i - 1], picks[i - 1]]) : h, i), w);
    lses.push(rowLse(b, z, -1));
    picks.push(b.reshape(b.op1("GatherElements", [z, rows(idx, i)], { axis: { i: 1 } }), [-1]));
  }
  const lse = b.mul(b.op1("Concat", lses, { axis: { i: 0 } }), counted);
  const picked = b.op1("Concat", picks, { axis: { i: 0 } });
  return [ceReduce(b, b.mul(b.sub(lse, picked), counted), counted, a.reduction), lse];
}

/**
 * The backward over K vocabulary blocks: [dh?, dw?]. With k the per-row scale (0 on rows that do not count),
 * p = exp(z − lse) on a block's logits z (one Gemm gives z − lse) and t the label: dh = k ⊙ (Σ p · W_block − W[t])
 * and dW_block = pᵀ · (k ⊙ h), minus k ⊙ h scattered into the label rows once at the end. Each block's dW rows are
 * concatenated; nothing [N, V]-sized but one block's p is ever made.
 */
function blockedBackward(
  b: OnnxBuilder,
  [g, h, w, labels, lse0]: readonly string[],
  N: number,
  V: number,
  K: number,
  a: LinearCeBwdAttrs,
): string[] {
  const counted = ceCounted(b, labels, V, a.ignoreIndex), idx = labelIndex(b, labels, N, V);
  const k = b.reshape(b.mul(ceScale(b, g, counted, a.reduction, N), counted), [N, 1]);
  // −lse, and −inf on rows that do not count: exp(z − lse) is 0 there however large z is
  const on = b.cast(counted, ONNX_TYPE.BOOL);
  const negLse = b.reshape(b.op1("Where", [on, b.op1("Neg", [lse0]), b.f32(-Infinity)]), [N, 1]);
  const kh = a.needW ? b.mul(h, k) : "";
  let dh: string | undefined, part: string | undefined;
  const parts: string[] = []; // each block's dW rows [Vb, D]
  for (const [s, e] of blockBounds(V, K)) {
    const src = dh || part ? after(b, w, [dh, part].filter((x): x is string => x !== undefined)) : w;
    const wj = b.op1("Slice", [src, b.i64([s]), b.i64([e]), b.i64([0])]);
    const p = b.op1("Exp", [b.op1("Gemm", [h, wj, negLse], { transB: { i: 1 } })]); // [N, Vb]
    if (a.needH) dh = dh === undefined ? b.op1("MatMul", [p, wj]) : b.op1("Gemm", [p, wj, dh]);
    if (!a.needW) continue;
    part = b.op1("FusedMatMul", [p, kh], { transA: { i: 1 }, transB: { i: 0 }, alpha: { f: 1 } }, "com.microsoft");
    parts.push(part);
  }
  const outs: string[] = [];
  if (a.needH) {
    const picked = b.op1("Gather", [w, b.reshape(idx, [N])], { axis: { i: 0 } }); // W[t] (t clamped; k is 0 there)
    outs.push(b.mul(b.sub(dh!, picked), k));
  }
  if (a.needW) {
    const dw = b.op1("Concat", parts, { axis: { i: 0 } });
    outs.push(b.op1("ScatterND", [dw, idx, b.op1("Neg", [kh])], { reduction: { s: "add" } }));
  }
  return outs;
}

/** The lowerings of this file. */
export const linearCeLowerings: Record<string, OnnxLowering> = {
  // h [N, D], w [V, D], labels [N] -> loss [], lse [N]
  linear_cross_entropy: ({ b, ins, inInfos, attrs, headChunks }) => {
    const [N] = inInfos[0].shape, V = inInfos[1].shape[0], a = attrs as LinearCeAttrs;
    const K = ceBlocks(V, ceChunkSetting(headChunks));
    if (K > 1) return chunkedForward(b, ins, N, V, K, a);
    return ceForward(b, logitsOf(b, ins[0], ins[1]), ins[2], N, V, a);
  },
  // g, h, w, labels, lse -> dh?, dw?
  linear_cross_entropy_bwd: ({ b, ins, inInfos, attrs, headChunks }) => {
    const a = attrs as LinearCeBwdAttrs;
    const [g, h, w, labels] = ins;
    const [N] = inInfos[1].shape, V = inInfos[2].shape[0];
    const K = ceBlocks(V, ceChunkSetting(headChunks));
    if (K > 1) return blockedBackward(b, ins, N, V, K, a);
    const dz = ceBackward(b, g, logitsOf(b, h, w), labels, N, V, a); // [N, V]
    const outs: string[] = [];
    if (a.needH) outs.push(b.op1("MatMul", [dz, w]));
    if (a.needW) {
      outs.push(
        b.op1("FusedMatMul", [dz, h], { transA: { i: 1 }, transB: { i: 0 }, alpha: { f: 1 } }, "com.microsoft"),
      );
    }
    return outs;
  },
};
