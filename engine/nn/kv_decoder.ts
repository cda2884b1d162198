/**
 * The decoder traced for generation with a KV cache kept on the executor, for a batch of B sequences: a
 * prefill graph over the (right-padded, bucketed) prompts that writes every layer's k and v into persistent
 * cache params, and a one-token decode-step graph that attends over the cache and writes only its new row.
 * It is {@link traceDecoder} with an attention hook that writes and reads the cache.
 *
 * Caches: `<prefix>kv<B>x<C>.<layer>.k` and `.v`, each [B·Hkv, C, D] f32 (C a multiple of 64): row b·Hkv + h
 * holds kv head h of sequence b, slot j its key (value) at position j. Writes go through `scatterRows`, which
 * runs after every reader, so a decode step reads the cache as the previous steps left it and attends to its
 * own new key separately (one extra score column), then writes the new row at its position.
 *
 * Prefill feeds: ids, positions, segments [B, Lb] i32 (segments 1 on real tokens, 0 on padding), last [B] i32
 * (flat index b·Lb + n_b − 1 of each row's last real token). Decode feeds: ids, positions [B, 1] i32, and per
 * distinct window W (0 = none) `mask<W>` [B, 1, 1, C + 1] f32 (row b: {@link decodeMask}). Both output `logits`
 * [B, V] of each row's last token.
 * @module
 */
import {
  add,
  attention,
  cast,
  concat,
  embedding,
  expand,
  type Graph,
  matmul,
  mul,
  permute,
  reshape,
  scatterRows,
  slice,
  softmax,
  sum,
  tanh,
  type Tensor,
} from "../graph/mod.ts";
import type { DecoderConfig } from "./config.ts";
import { type DecoderWeights, traceDecoder } from "./decoder.ts";
import { sinksName, withSinks } from "./moe_gpt_oss.ts";

/** Rounds a cache length up to its bucket (multiples of 64). */
export function cacheBucket(n: number): number {
  return Math.max(64, Math.ceil(n / 64) * 64);
}

/** Rounds a batch size up to its bucket (1, 2, 4, 8, ...), so a few graphs serve every batch size. */
export function batchBucket(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(1, n)));
}

/** Name of one layer's k or v cache for B sequences of C slots (without the model prefix). */
export function cacheName(B: number, C: number, layer: number, kind: "k" | "v"): string {
  return `kv${B}x${C}.${layer}.${kind}`;
}

/** Shape of one layer's k or v cache: [B·Hkv, C, D]. */
export function cacheShape(c: DecoderConfig, B: number, C: number): number[] {
  return [B * c.kvHeads, C, c.headDim];
}

/**
 * One row of a decode step's additive mask for a sequence at position `pos`, window W (0 = none): C cache
 * slots then the new token itself. 0 where visible (slots j < pos with pos − j < W, and the new token), −1e30
 * elsewhere (slot pos and later are stale: the step's own key is attended from the extra column).
 */
export function decodeMask(C: number, pos: number, window: number): Float32Array {
  const m = new Float32Array(C + 1).fill(-1e30);
  for (let j = 0; j < Math.min(pos, C); j++) if (!window || pos - j < window) m[j] = 0;
  m[C] = 0;
  return m;
}

/** The distinct windows of the layers (0 = global). */
export function layerWindows(c: DecoderConfig): number[] {
  return [...new Set(Array.from({ length: c.layers }, (_, i) => c.layerWindow[i] || 0))];
}

/**
 * Traces a prefill (`mode.L` = bucketed prompt length) or a decode step (`mode.L` = 1 with `decode`) of B
 * sequences on `g` against caches of C slots ({@link cacheShape}); outputs `logits` [B, V].
 */
export function traceCached(
  g: Graph,
  c: DecoderConfig,
  w: DecoderWeights,
  cache: (layer: number, kind: "k" | "v") => Tensor,
  mode: { B: number; C: number; L: number; decode: boolean; ropePerRow?: boolean },
): void {
  const { B, C, L, decode } = mode;
  if (L > C) throw new Error(`prefill length ${L} exceeds the cache length ${C}`);
  if (decode && L !== 1) throw new Error(`a decode step takes one token per sequence, got L = ${L}`);
  const ids = g.input("ids", [B, L], "i32"), positions = g.input("positions", [B, L], "i32");
  const segments = decode ? undefined : g.input("segments", [B, L], "i32");
  const masks = new Map<number, Tensor>();
  if (decode) { for (const W of layerWindows(c)) masks.set(W, g.input(`mask${W}`, [B, 1, 1, C + 1], "f32")); }

  const D = c.headDim, Hkv = c.kvHeads, G = c.heads / Hkv, N = B * Hkv;
  const scale = c.attnScale ?? 1 / Math.sqrt(D);
  // Cache rows written: each (sequence, kv head) row at the step's positions [N, L].
  const index = decode
    ? reshape(expand(reshape(positions, [B, 1, 1]), [B, Hkv, 1]), [N, 1])
    : g.constant(Array.from({ length: N * L }, (_, i) => i % L), [N, L], "i32");
  // x [B, L, Hkv, D] → [B·Hkv, L, D] (a free reshape when L = 1).
  const rows = (x: Tensor) => reshape(L === 1 ? x : permute(x, [0, 2, 1, 3]), [N, L, D]);

  // Decode attention: q [B, 1, Hq, D] over the cache [N, C, D] (as earlier steps left it) and the step's
  // own k, v [N, 1, D] → [B, 1, Hq·D]. Scores [N, G, C + 1]: the cache slots, then the new key.
  // gpt_oss: each head's sink logit joins the softmax as one more column, dropped after it.
  const cachedAttention = (i: number, qs: Tensor, kNew: Tensor, vNew: Tensor, kc: Tensor, vc: Tensor, mask: Tensor) => {
    const q3 = reshape(qs, [N, G, D]);
    let s = concat([matmul(q3, kc, { transB: true }), sum(mul(q3, kNew), -1, true)], -1);
    s = mul(s, scale);
    if (c.attnSoftcap) s = mul(tanh(mul(s, 1 / c.attnSoftcap)), c.attnSoftcap);
    let s4 = add(reshape(s, [B, Hkv, G, C + 1]), mask);
    if (c.attnSinks) {
      const sk = w.weight(sinksName(i));
      const sink = expand(reshape(sk.dtype === "f32" ? sk : cast(sk, "f32"), [1, Hkv, G, 1]), [B, Hkv, G, 1]);
      s4 = slice(softmax(concat([s4, sink], -1)), -1, 0, C + 1);
    } else s4 = softmax(s4);
    const p = reshape(s4, [N, G, C + 1]);
    const o = add(matmul(slice(p, -1, 0, C), vc), mul(slice(p, -1, C, C + 1), vNew));
    return reshape(o, [B, 1, c.heads * D]);
  };

  // The decoder itself, with each layer's attention writing the cache (and, decoding, reading it).
  const out = traceDecoder(c, { ids, positions, segments, ropePerRow: mode.ropePerRow }, {
    ...w,
    attend: (i, qs, ks, vs, window) => {
      const kr = rows(ks), vr = rows(vs), kc = cache(i, "k"), vc = cache(i, "v");
      scatterRows(kc, index, kr);
      scatterRows(vc, index, vr);
      if (decode) return cachedAttention(i, qs, kr, vr, kc, vc, masks.get(window)!);
      const { o, lse } = attention(qs, ks, vs, {
        scale: c.attnScale,
        causal: true,
        window: window || undefined,
        softcap: c.attnSoftcap || undefined,
        segments,
      });
      return c.attnSinks ? withSinks(o, lse, w.weight(sinksName(i))) : o;
    },
  });
  // Each row's last token only: [B, L, H] → [B, H] (the final norm is per token, so selecting after it is exact).
  let last = reshape(out.hidden, [B * L, c.hidden]);
  if (!decode) last = embedding(last, g.input("last", [B], "i32"));
  let logits = matmul(last, out.head, { transB: true });
  if (c.finalSoftcap) logits = mul(tanh(mul(logits, 1 / c.finalSoftcap)), c.finalSoftcap);
  g.output("logits", logits);
}
