/**
 * RoPE frequencies that depend on the sequence, fed per run. transformers' `dynamic_rope_update` recomputes
 * "dynamic" (dynamic NTK) and "longrope" frequencies at every forward from `max(position_ids) + 1`; Whetstone's
 * graphs are traced once per padded (bucketed) length, so for these two types the decoder declares the frequency
 * words as a derived graph input ({@link Graph.derivedInput}) that the executor computes on the host at each run from
 * the positions fed: the largest position of a real token (segment ≠ 0 where the graph has segments) plus one. So a
 * training or eval batch, a prefill and every decode step each get the frequencies of the batch's actual length, the
 * padded bucket never counts, and no graph is traced again for another length.
 *
 * Like transformers, one length serves the whole batch (its longest row). transformers' "dynamic" keeps the largest
 * length seen since the last reset across forwards (`max_seq_len_cached`); here each run uses its own length, which
 * is the same for a fresh model and for generation (lengths only grow), and differs only for a forward whose length
 * lies between max_position_embeddings and a longer earlier forward's.
 * @module
 */
import type { Graph, Tensor } from "../graph/mod.ts";
import { ropeFreqWords, ropeInvFreq, type RopeScaling } from "../graph/ops/rope.ts";

/** Whether frequencies of `scaling` depend on the sequence length (dynamic, longrope). */
export function ropeDependsOnLength(scaling: RopeScaling): boolean {
  return scaling.type === "dynamic" || scaling.type === "longrope";
}

/**
 * The length transformers' rope update sees for these feeds: max position + 1 over the tokens whose segment is not 0
 * (all tokens without segments); 0 when there is none.
 */
export function ropeSeqLen(positions: ArrayLike<number>, segments?: ArrayLike<number>): number {
  let max = -1;
  for (let i = 0; i < positions.length; i++) {
    if (segments && segments[i] === 0) continue;
    if (positions[i] > max) max = positions[i];
  }
  return max + 1;
}

const perGraph = new WeakMap<Graph, Map<string, Tensor>>();

function inputName(t: Tensor, what: string): string {
  const v = t.value;
  if (v.kind !== "input" || !v.name) {
    throw new Error(`rope scaling that depends on the sequence length needs ${what} fed as a graph input`);
  }
  return v.name;
}

/**
 * The frequency words [rotaryDim/2, 2] u32 of (theta, scaling) for the positions (and segments) inputs of a graph:
 * a derived input named `<positions>.rope<n>`, shared by every layer with the same theta and scaling. `perRow`: words
 * [B, rotaryDim/2, 2], each row those of its own length (the continuous batcher, whose rows are unrelated requests).
 */
export function ropeFreqInput(
  positions: Tensor,
  segments: Tensor | undefined,
  rotaryDim: number,
  theta: number,
  scaling: RopeScaling,
  perRow = false,
): Tensor {
  const g = positions.graph;
  const pos = inputName(positions, "positions"), seg = segments && inputName(segments, "segments");
  let tables = perGraph.get(g);
  if (!tables) perGraph.set(g, tables = new Map());
  const key = JSON.stringify([pos, seg, rotaryDim, theta, scaling, perRow]);
  const hit = tables.get(key);
  if (hit) return hit;
  const cache = new Map<number, number[]>();
  const words = (seqLen: number) => {
    // dynamic: lengths up to max_position_embeddings share the unscaled frequencies; longrope: two tables.
    const k = scaling.type === "longrope"
      ? +(seqLen > scaling.originalMaxPositionEmbeddings)
      : scaling.type === "dynamic"
      ? Math.max(seqLen, scaling.maxPositionEmbeddings)
      : 0;
    let w = cache.get(k);
    if (!w) {
      if (cache.size > 64) cache.clear();
      cache.set(k, w = ropeFreqWords(ropeInvFreq(rotaryDim, theta, scaling, seqLen)));
    }
    return w;
  };
  const name = `${pos}.rope${tables.size}`;
  const [B, L] = positions.shape, half = rotaryDim / 2;
  const t = g.derivedInput(name, perRow ? [B, half, 2] : [half, 2], "u32", (feeds) => {
    const p = feeds[pos], sg = seg ? feeds[seg] : undefined;
    if (!p) throw new Error(`feed "${pos}" is missing; "${name}" (RoPE frequencies) is computed from it`);
    if (!perRow) return words(ropeSeqLen(p, sg));
    const out = new Uint32Array(B * half * 2);
    for (let b = 0; b < B; b++) {
      const row = (a: ArrayLike<number>) => Array.prototype.slice.call(a, b * L, (b + 1) * L) as number[];
      out.set(words(ropeSeqLen(row(p), sg && row(sg))), b * half * 2);
    }
    return out;
  });
  tables.set(key, t);
  return t;
}
