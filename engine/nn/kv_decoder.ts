/**
 * The decoder traced for generation with a KV cache kept on the executor: a prefill graph over a
 * (bucketed) prompt that writes every layer's k and v into persistent cache params, and a one-token
 * decode-step graph that writes its k, v at the current position and attends over the cache.
 * Same math as {@link traceDecoder} (kept in step with it), batch 1.
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
  cast,
  concat,
  embedding,
  expand,
  geglu,
  type Graph,
  matmul,
  mul,
  permute,
  reshape,
  rmsNorm,
  rope,
  slice,
  softmax,
  sub,
  swiglu,
  tanh,
  type Tensor,
} from "../graph/mod.ts";
import type { DecoderConfig } from "./config.ts";
import { decoderParams, type DecoderWeights } from "./decoder.ts";

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

const f32 = (t: Tensor) => (t.dtype === "f32" ? t : cast(t, "f32"));

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

  const W = (name: string) => w.weight(name);
  const has = new Set(decoderParams(c).keys());
  const linear = (x: Tensor, name: string): Tensor => {
    const base = (xx: Tensor) => {
      const y = matmul(xx, W(`${name}.weight`), { transB: true });
      return has.has(`${name}.bias`) ? add(y, f32(W(`${name}.bias`))) : y;
    };
    return w.linear ? w.linear(x, name, base) : base(x);
  };
  const norm = (x: Tensor, name: string) => rmsNorm(x, W(name), { eps: c.eps, offset: c.normOffset });
  const ropeOpts = { theta: c.ropeTheta, rotaryDim: c.rotaryDim, scaling: c.ropeScaling };
  const q = c.heads * c.headDim, kv = c.kvHeads * c.headDim, D = c.headDim, Hkv = c.kvHeads;
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

  let h = embedding(W("model.embed_tokens.weight"), ids); // [1, L, H]
  if (c.embedScale !== 1) h = mul(h, c.embedScale);
  for (let i = 0; i < c.layers; i++) {
    const l = `model.layers.${i}`;
    const a = norm(h, `${l}.input_layernorm.weight`);
    let qs: Tensor, ks: Tensor, vs: Tensor;
    if (c.fused) {
      const qkv = linear(a, `${l}.self_attn.qkv_proj`);
      qs = slice(qkv, -1, 0, q);
      ks = slice(qkv, -1, q, q + kv);
      vs = slice(qkv, -1, q + kv, q + 2 * kv);
    } else {
      qs = linear(a, `${l}.self_attn.q_proj`);
      ks = linear(a, `${l}.self_attn.k_proj`);
      vs = linear(a, `${l}.self_attn.v_proj`);
    }
    qs = reshape(qs, [1, L, c.heads, D]);
    ks = reshape(ks, [1, L, Hkv, D]);
    vs = reshape(vs, [1, L, Hkv, D]);
    if (c.qkNorm) {
      qs = rmsNorm(qs, W(`${l}.self_attn.q_norm.weight`), { eps: c.eps });
      ks = rmsNorm(ks, W(`${l}.self_attn.k_norm.weight`), { eps: c.eps });
    }
    qs = rope(qs, positions, ropeOpts);
    ks = rope(ks, positions, ropeOpts);
    const kAll = write(i, "k", ks), vAll = write(i, "v", vs);
    const window = c.layerWindow[i] || 0;
    const o = decode ? cachedAttention(qs, kAll, vAll, masks.get(window)!) : reshape(
      attention(qs, ks, vs, {
        scale: c.attnScale,
        causal: true,
        window: window || undefined,
        softcap: c.attnSoftcap || undefined,
        segments,
      }).o,
      [1, L, q],
    );
    let att = linear(o, `${l}.self_attn.o_proj`);
    if (c.sandwichNorm) att = norm(att, `${l}.post_attention_layernorm.weight`);
    h = add(h, att);
    const m = norm(
      h,
      c.sandwichNorm ? `${l}.pre_feedforward_layernorm.weight` : `${l}.post_attention_layernorm.weight`,
    );
    let gate: Tensor, up: Tensor;
    if (c.fused) {
      const gu = linear(m, `${l}.mlp.gate_up_proj`);
      gate = slice(gu, -1, 0, c.intermediate);
      up = slice(gu, -1, c.intermediate, 2 * c.intermediate);
    } else {
      gate = linear(m, `${l}.mlp.gate_proj`);
      up = linear(m, `${l}.mlp.up_proj`);
    }
    const act = c.act === "silu"
      ? swiglu(gate, up)
      : geglu(gate, up, { approximate: c.act === "gelu_tanh" ? "tanh" : "none" });
    let mlp = linear(act, `${l}.mlp.down_proj`);
    if (c.sandwichNorm) mlp = norm(mlp, `${l}.post_feedforward_layernorm.weight`);
    h = add(h, mlp);
  }
  // The last token's row only: [1, L, H] → [1, H].
  let last = reshape(h, [L, c.hidden]);
  if (!decode) last = embedding(last, g.input("last", [1], "i32"));
  last = norm(last, "model.norm.weight");
  const head = W(c.tieEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight");
  let logits = matmul(last, head, { transB: true });
  if (c.finalSoftcap) logits = mul(tanh(mul(logits, 1 / c.finalSoftcap)), c.finalSoftcap);
  g.output("logits", logits);
}
