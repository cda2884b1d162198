/**
 * The decoder traced for generation with a KV cache kept on the executor: a prefill graph over a
 * (bucketed) prompt that writes every layer's k and v into persistent cache params, and a one-token
 * decode-step graph that writes its k, v at the current position and attends over the cache.
 * It is {@link traceDecoder} with an attention hook that writes and reads the cache, batch 1.
 *
 * Caches: `<prefix>kv<C>.<layer>.k` and `.v`, each [1, C, Hkv, D] f32 (C a multiple of 64).
 *
 * Prefill feeds: ids, positions, segments [1, Lb] i32 (segments 1 on real tokens, 0 on padding), last [1] i32
 * (index of the last real token). Decode feeds: ids, positions [1, 1] i32, keep [1, C, 1, 1] f32 (0 at the
 * position written, 1 elsewhere), and per distinct window W (0 = none) `mask<W>` [C] f32 (0 where the key is
 * visible, -1e30 where not). Both output `logits` [1, V] of the last token only.
 * @module
 */
import {
  add,
  assign,
  attention,
  concat,
  embedding,
  expand,
  type Graph,
  matmul,
  mul,
  permute,
  reshape,
  slice,
  softmax,
  sub,
  tanh,
  type Tensor,
} from "../graph/mod.ts";
import type { DecoderConfig } from "./config.ts";
import { type DecoderWeights, traceDecoder } from "./decoder.ts";

/** Rounds a cache length up to its bucket (multiples of 64). */
export function cacheBucket(n: number): number {
  return Math.max(64, Math.ceil(n / 64) * 64);
}

/** Name of one layer's k or v cache of length C (without the model prefix). */
export function cacheName(C: number, layer: number, kind: "k" | "v"): string {
  return `kv${C}.${layer}.${kind}`;
}

/** The additive mask a decode step at position `pos` uses for window W (0 = none), over C cache slots. */
export function decodeMask(C: number, pos: number, window: number): Float32Array {
  const m = new Float32Array(C).fill(-1e30);
  for (let j = 0; j <= pos; j++) if (!window || pos - j < window) m[j] = 0;
  return m;
}

/** The distinct windows of the layers (0 = global). */
export function layerWindows(c: DecoderConfig): number[] {
  return [...new Set(Array.from({ length: c.layers }, (_, i) => c.layerWindow[i] || 0))];
}

/**
 * Traces a prefill (`mode.L` = bucketed prompt length) or a decode step (`mode.L` = 1 with `decode`) on `g`
 * against caches of length C; outputs `logits` [1, V].
 */
export function traceCached(
  g: Graph,
  c: DecoderConfig,
  w: DecoderWeights,
  cache: (layer: number, kind: "k" | "v") => Tensor,
  mode: { C: number; L: number; decode: boolean },
): void {
  const { C, L, decode } = mode;
  if (L > C) throw new Error(`prefill length ${L} exceeds the cache length ${C}`);
  const ids = g.input("ids", [1, L], "i32"), positions = g.input("positions", [1, L], "i32");
  const segments = decode ? undefined : g.input("segments", [1, L], "i32");
  const keep = decode ? g.input("keep", [1, C, 1, 1], "f32") : undefined;
  const masks = new Map<number, Tensor>();
  if (decode) { for (const W of layerWindows(c)) masks.set(W, g.input(`mask${W}`, [C], "f32")); }

  const q = c.heads * c.headDim, D = c.headDim, Hkv = c.kvHeads;
  const scale = c.attnScale ?? 1 / Math.sqrt(D);

  // Writes x [1, L, Hkv, D] into the cache (prefill: rows 0..L-1; decode: the row where keep is 0).
  const write = (layer: number, kind: "k" | "v", x: Tensor): Tensor => {
    const old = cache(layer, kind);
    let next: Tensor;
    if (decode) next = add(mul(old, keep!), mul(expand(x, [1, C, Hkv, D]), sub(1, keep!)));
    else next = L < C ? concat([x, slice(old, 1, L, C)], 1) : x;
    assign(old, next);
    return next;
  };
  // Decode attention over the cache: q [1, 1, Hq, D], k, v [1, C, Hkv, D] → [1, 1, Hq·D].
  const cachedAttention = (qs: Tensor, ks: Tensor, vs: Tensor, mask: Tensor): Tensor => {
    const q3 = reshape(qs, [Hkv, c.heads / Hkv, D]);
    const k3 = permute(reshape(ks, [C, Hkv, D]), [1, 0, 2]);
    const v3 = permute(reshape(vs, [C, Hkv, D]), [1, 0, 2]);
    let s = mul(matmul(q3, k3, { transB: true }), scale); // [Hkv, G, C]
    if (c.attnSoftcap) s = mul(tanh(mul(s, 1 / c.attnSoftcap)), c.attnSoftcap);
    const p = softmax(add(s, mask));
    return reshape(matmul(p, v3), [1, 1, q]);
  };

  // The decoder itself, with each layer's attention writing the cache (and, decoding, reading it).
  const out = traceDecoder(c, { ids, positions, segments }, {
    ...w,
    attend: (i, qs, ks, vs, window) => {
      const kAll = write(i, "k", ks), vAll = write(i, "v", vs);
      if (decode) return cachedAttention(qs, kAll, vAll, masks.get(window)!);
      return attention(qs, ks, vs, {
        scale: c.attnScale,
        causal: true,
        window: window || undefined,
        softcap: c.attnSoftcap || undefined,
        segments,
      }).o;
    },
  });
  // The last token's row only: [1, L, H] → [1, H] (the final norm is per row, so selecting after it is exact).
  let last = reshape(out.hidden, [L, c.hidden]);
  if (!decode) last = embedding(last, g.input("last", [1], "i32"));
  let logits = matmul(last, out.head, { transB: true });
  if (c.finalSoftcap) logits = mul(tanh(mul(logits, 1 / c.finalSoftcap)), c.finalSoftcap);
  g.output("logits", logits);
}
