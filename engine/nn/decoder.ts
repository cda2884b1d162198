/**
 * The decoder-only transformer of every supported family, traced on the graph API from one
 * {@link DecoderConfig}. Parameter names are Hugging Face's, so a model folder's safetensors map
 * straight onto graph params.
 *
 * Shapes: ids, positions [B, L] i32 → hidden [B, L, hidden] → logits [B, L, vocab].
 * @module
 */
import {
  add,
  attention,
  cast,
  concat,
  embedding,
  geglu,
  gelu,
  layerNorm,
  matmul,
  mul,
  permute,
  reshape,
  rmsNorm,
  rope,
  silu,
  slice,
  swiglu,
  tanh,
  type Tensor,
} from "../graph/mod.ts";
import type { DecoderConfig } from "./config.ts";
import { moeParams, type Route, traceMoe } from "./moe.ts";
import { gptOssMoeParams, sinksName, traceGptOssMoe, withSinks } from "./moe_gpt_oss.ts";
import { mlaOutput, mlaParams, traceMla } from "./mla.ts";
import { ropeDependsOnLength, ropeFreqInput } from "./rope_feed.ts";

/** Names and shapes of every parameter, in Hugging Face naming. */
export function decoderParams(c: DecoderConfig): Map<string, number[]> {
  const p = new Map<string, number[]>();
  const q = c.heads * c.headDim, kv = c.kvHeads * c.headDim;
  p.set("model.embed_tokens.weight", [c.vocab, c.hidden]);
  for (let i = 0; i < c.layers; i++) {
    const l = `model.layers.${i}`;
    if (!c.postNorm) p.set(`${l}.input_layernorm.weight`, [c.hidden]);
    if (c.normBias) p.set(`${l}.input_layernorm.bias`, [c.hidden]);
    if (c.mla) { for (const [n, s] of mlaParams(c.mla, i, c.hidden, c.heads)) p.set(n, s); }
    else if (c.fused) p.set(`${l}.self_attn.qkv_proj.weight`, [q + 2 * kv, c.hidden]);
    else {
      p.set(`${l}.self_attn.q_proj.weight`, [q, c.hidden]);
      p.set(`${l}.self_attn.k_proj.weight`, [kv, c.hidden]);
      p.set(`${l}.self_attn.v_proj.weight`, [kv, c.hidden]);
      if (c.qkvBias) {
        p.set(`${l}.self_attn.q_proj.bias`, [q]);
        p.set(`${l}.self_attn.k_proj.bias`, [kv]);
        p.set(`${l}.self_attn.v_proj.bias`, [kv]);
      }
    }
    if (!c.mla) p.set(`${l}.self_attn.o_proj.weight`, [c.hidden, q]);
    if (c.oBias) p.set(`${l}.self_attn.o_proj.bias`, [c.hidden]);
    if (c.attnSinks) p.set(sinksName(i), [c.heads]);
    if (c.qkNorm || c.qkNormAll) {
      p.set(`${l}.self_attn.q_norm.weight`, [c.qkNormAll ? q : c.headDim]);
      p.set(`${l}.self_attn.k_norm.weight`, [c.qkNormAll ? kv : c.headDim]);
    }
    if (!c.parallelBlock) p.set(`${l}.post_attention_layernorm.weight`, [c.hidden]);
    if (c.normBias) p.set(`${l}.post_attention_layernorm.bias`, [c.hidden]);
    if (c.sandwichNorm) p.set(`${l}.pre_feedforward_layernorm.weight`, [c.hidden]);
    if (c.sandwichNorm || c.postNorm) p.set(`${l}.post_feedforward_layernorm.weight`, [c.hidden]);
    if (c.glmNorms) {
      p.set(`${l}.post_self_attn_layernorm.weight`, [c.hidden]);
      p.set(`${l}.post_mlp_layernorm.weight`, [c.hidden]);
    }
    if (c.moe?.sparse[i]) {
      const params = c.family === "gpt_oss" ? gptOssMoeParams : moeParams;
      for (const [n, s] of params(c.moe, i, c.hidden)) p.set(n, s);
      continue;
    }
    if (c.plainMlp) {
      p.set(`${l}.mlp.c_fc.weight`, [c.intermediate, c.hidden]);
      p.set(`${l}.mlp.c_proj.weight`, [c.hidden, c.intermediate]);
      if (c.mlpBias) {
        p.set(`${l}.mlp.c_fc.bias`, [c.intermediate]);
        p.set(`${l}.mlp.c_proj.bias`, [c.hidden]);
      }
      continue;
    }
    if (c.fusedGateUp) p.set(`${l}.mlp.gate_up_proj.weight`, [2 * c.intermediate, c.hidden]);
    else {
      p.set(`${l}.mlp.gate_proj.weight`, [c.intermediate, c.hidden]);
      p.set(`${l}.mlp.up_proj.weight`, [c.intermediate, c.hidden]);
      if (c.mlpBias) {
        p.set(`${l}.mlp.gate_proj.bias`, [c.intermediate]);
        p.set(`${l}.mlp.up_proj.bias`, [c.intermediate]);
      }
    }
    p.set(`${l}.mlp.down_proj.weight`, [c.hidden, c.intermediate]);
    if (c.mlpBias) p.set(`${l}.mlp.down_proj.bias`, [c.hidden]);
  }
  p.set("model.norm.weight", [c.hidden]);
  if (c.normBias) p.set("model.norm.bias", [c.hidden]);
  if (!c.tieEmbeddings) p.set("lm_head.weight", [c.vocab, c.hidden]);
  return p;
}

/**
 * How a linear layer is computed: `base` is `x · Wᵀ (+ b)`. Adapters (LoRA, DoRA) wrap it.
 * `name` is the module path, e.g. `model.layers.0.self_attn.q_proj`.
 */
export type LinearHook = (x: Tensor, name: string, base: (x: Tensor) => Tensor) => Tensor;

/**
 * s·ΔW of sparse layer `layer`'s expert projection stacked over the experts ([E, I, H] gate / up, [E, H, I] down;
 * gpt_oss: its fused `gate_up` [E, H, 2I] and `down` [E, I, H]), or undefined: the MoE block adds it to the experts'
 * weights before its matmuls (see moe.ts, moe_gpt_oss.ts, lora_experts.ts).
 */
export type ExpertDeltaHook = (layer: number, proj: "gate" | "up" | "down" | "gate_up") => Tensor | undefined;

/**
 * How a layer attends: q [B, L, Hq, D], k, v [B, L, Hkv, D] (after norms and rope) → [B, L, Hq, D] or
 * [B, L, Hq·D]. The default is the fused causal attention op; generation swaps in a KV-cache step.
 */
export type AttendHook = (layer: number, q: Tensor, k: Tensor, v: Tensor, window: number) => Tensor;

/** Where the decoder gets its parameters and how it computes linears. */
export interface DecoderWeights {
  /** Optional replacement of each layer's attention (see {@link AttendHook}). */
  attend?: AttendHook;
  /** The graph tensor of parameter `name` (stored dtype; f32, bf16 or f16). */
  weight(name: string): Tensor;
  /** Optional wrapper of every linear layer (adapters). */
  linear?: LinearHook;
  /** An adapter's deltas of the routed experts' weights (LoRA on fused expert parameters, lora_experts.ts). */
  expertDelta?: ExpertDeltaHook;
  /**
   * Activation checkpointing: each decoder layer is a {@link Graph.checkpoint} segment, recomputed in the
   * backward pass instead of keeping its activations (LLaMA-Factory's default gradient checkpointing).
   */
  checkpoint?: boolean;
  /**
   * Mixed precision (opt-in): "f16" casts each linear layer's input activation to f16, so its matmuls read f16
   * operands and accumulate in f32 (f32 out), and the activation saved for the backward is half the size. Every
   * other op stays f32, and so does o_proj's input (attention keeps its output in f32 for its own backward, so an
   * f16 copy would only add memory). Needs an executor that computes f16 (WebGPU with shader-f16, or the reference).
   */
  computeDtype?: "f32" | "f16";
}

/** Traced inputs of the decoder. */
export interface DecoderInputs {
  /** [B, L] i32 token ids. */
  ids: Tensor;
  /** [B, L] i32 positions. */
  positions: Tensor;
  /** [B, L] i32: attention stays within equal ids (padding 0, real 1; packed 1, 2, ...). */
  segments?: Tensor;
  /**
   * [B, L, hidden] f32 added to the input embeddings (after the family's embedding scale, which transformers keeps
   * inside the embedding module): NEFTune's noise in training (see engine/nn/neftune.ts).
   */
  noise?: Tensor;
  /** "dynamic" / "longrope" RoPE: each row gets the frequencies of its own length, not the batch's (rope_feed.ts). */
  ropePerRow?: boolean;
}

const f32 = (t: Tensor) => (t.dtype === "f32" ? t : cast(t, "f32"));

/**
 * Traces the decoder; returns the final hidden states [B, L, H], the LM head weight [V, H] and the
 * logits [B, L, V] (soft-capped where the family caps them); for mixture-of-experts families also each sparse
 * layer's routing (see moe.ts).
 */
export function traceDecoder(
  c: DecoderConfig,
  inp: DecoderInputs,
  w: DecoderWeights,
): { hidden: Tensor; head: Tensor; logits: Tensor; routes?: Route[] } {
  const [B, L] = inp.ids.shape;
  const W = (name: string) => w.weight(name);
  const has = new Set(decoderParams(c).keys());
  const halves = new Map<Tensor, Tensor>();
  const linear = (x: Tensor, name: string): Tensor => {
    const base = (xx: Tensor) => {
      const y = matmul(xx, W(`${name}.weight`), { transB: true });
      return has.has(`${name}.bias`) ? add(y, f32(W(`${name}.bias`))) : y;
    };
    if (w.computeDtype !== "f16" || name.endsWith("o_proj")) return w.linear ? w.linear(x, name, base) : base(x);
    // [..., in] f16, cast once per activation (q, k, v and gate, up share theirs); the matmul accumulates in f32.
    let xh = halves.get(x);
    if (!xh) halves.set(x, xh = cast(x, "f16"));
    return f32(w.linear ? w.linear(xh, name, base) : base(xh));
  };
  const norm = (x: Tensor, name: string) =>
    c.layerNorm
      ? layerNorm(x, W(name), c.normBias ? W(name.replace(/weight$/, "bias")) : undefined, { eps: c.eps })
      : rmsNorm(x, W(name), { eps: c.eps, offset: c.normOffset });
  // "dynamic" and "longrope" frequencies follow the length of each run's actual batch (rope_feed.ts).
  const positional = (x: Tensor, i: number): Tensor => {
    const r = c.layerRope[i];
    if (!r) return x; // a layer without position embedding (SmolLM3's NoPE layers)
    const freq = ropeDependsOnLength(r.scaling)
      ? ropeFreqInput(inp.positions, inp.segments, c.rotaryDim, r.theta, r.scaling, inp.ropePerRow)
      : undefined;
    const opts = { theta: r.theta, rotaryDim: c.rotaryDim, scaling: r.scaling, freq };
    if (!c.ropeInterleaved) return rope(x, inp.positions, opts);
    // GLM-4 pairs (2j, 2j + 1): gather the even then the odd rotary dims, rotate as (j, j + r/2), scatter back.
    const [b, l, h, d] = x.shape, r2 = c.rotaryDim / 2;
    const rot = slice(x, -1, 0, c.rotaryDim);
    const split = reshape(permute(reshape(rot, [b, l, h, r2, 2]), [0, 1, 2, 4, 3]), [b, l, h, c.rotaryDim]);
    const back = reshape(permute(reshape(rope(split, inp.positions, opts), [b, l, h, 2, r2]), [0, 1, 2, 4, 3]), [
      b,
      l,
      h,
      c.rotaryDim,
    ]);
    return c.rotaryDim === d ? back : concat([back, slice(x, -1, c.rotaryDim, d)], -1);
  };
  const q = c.heads * c.headDim, kv = c.kvHeads * c.headDim;

  const scaled = (x: Tensor) => (c.residualScale === 1 ? x : mul(x, c.residualScale)); // Granite's residual_multiplier
  let h = embedding(W("model.embed_tokens.weight"), inp.ids); // [B, L, H]
  if (c.embedScale !== 1) h = mul(h, c.embedScale);
  if (inp.noise) h = add(h, inp.noise);
  const layer = (i: number, h: Tensor): Tensor => {
    const l = `model.layers.${i}`;
    // Attention block: x [B, L, H] → q [B, L, Hq, D], k, v [B, L, Hkv, D] → o [B, L, Hq·D] → [B, L, H]
    const a = c.postNorm ? h : norm(h, `${l}.input_layernorm.weight`);
    let qs: Tensor, ks: Tensor, vs: Tensor;
    if (c.mla) ({ q: qs, k: ks, v: vs } = traceMla(c.mla, i, c.heads, a, linear, W, (x) => positional(x, i)));
    else if (c.fused) {
      const qkv = linear(a, `${l}.self_attn.qkv_proj`);
      qs = slice(qkv, -1, 0, q);
      ks = slice(qkv, -1, q, q + kv);
      vs = slice(qkv, -1, q + kv, q + 2 * kv);
    } else {
      qs = linear(a, `${l}.self_attn.q_proj`);
      ks = linear(a, `${l}.self_attn.k_proj`);
      vs = linear(a, `${l}.self_attn.v_proj`);
    }
    if (c.qkNormAll) {
      qs = rmsNorm(qs, W(`${l}.self_attn.q_norm.weight`), { eps: c.eps });
      ks = rmsNorm(ks, W(`${l}.self_attn.k_norm.weight`), { eps: c.eps });
    }
    if (!c.mla) {
      qs = reshape(qs, [B, L, c.heads, c.headDim]);
      ks = reshape(ks, [B, L, c.kvHeads, c.headDim]);
      vs = reshape(vs, [B, L, c.kvHeads, c.headDim]);
      if (c.qkNorm) {
        qs = rmsNorm(qs, W(`${l}.self_attn.q_norm.weight`), { eps: c.eps, offset: c.normOffset });
        ks = rmsNorm(ks, W(`${l}.self_attn.k_norm.weight`), { eps: c.eps, offset: c.normOffset });
      }
      qs = positional(qs, i);
      ks = positional(ks, i);
    }
    const window = c.layerWindow[i] || 0;
    const attended = () => {
      const { o, lse } = attention(qs, ks, vs, {
        scale: c.attnScale,
        causal: true,
        window: window || undefined,
        softcap: c.attnSoftcap || undefined,
        segments: inp.segments,
      });
      return c.attnSinks ? withSinks(o, lse, W(sinksName(i))) : o;
    };
    const o = w.attend ? w.attend(i, qs, ks, vs, window) : attended();
    let att = linear(c.mla ? mlaOutput(c.mla, o, c.heads) : reshape(o, [B, L, q]), `${l}.self_attn.o_proj`);
    if (c.sandwichNorm || c.postNorm) att = norm(att, `${l}.post_attention_layernorm.weight`);
    if (c.glmNorms) att = norm(att, `${l}.post_self_attn_layernorm.weight`);
    // Cohere 2: the MLP reads the same normed input, both outputs join the residual at once (below).
    const residual = h;
    if (!c.parallelBlock) h = add(h, scaled(att));
    // MLP block: [B, L, H] → gate, up [B, L, I] → [B, L, H]
    if (c.moe?.sparse[i]) {
      const x = norm(h, `${l}.post_attention_layernorm.weight`);
      const moe = c.family === "gpt_oss"
        ? traceGptOssMoe(c.moe, i, x, W, w.expertDelta)
        : traceMoe(c.moe, i, x, linear, W, w.expertDelta);
      routes[i] = moe.route;
      return add(h, moe.out);
    }
    const m = c.parallelBlock ? a : c.postNorm ? h : norm(
      h,
      c.sandwichNorm ? `${l}.pre_feedforward_layernorm.weight` : `${l}.post_attention_layernorm.weight`,
    );
    if (c.plainMlp) {
      const fc = linear(m, `${l}.mlp.c_fc`);
      const a = c.act === "silu" ? silu(fc) : gelu(fc, { approximate: c.act === "gelu_tanh" ? "tanh" : "none" });
      return add(h, scaled(linear(a, `${l}.mlp.c_proj`)));
    }
    let gate: Tensor, up: Tensor;
    if (c.fusedGateUp) {
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
    if (c.sandwichNorm || c.postNorm) mlp = norm(mlp, `${l}.post_feedforward_layernorm.weight`);
    if (c.glmNorms) mlp = norm(mlp, `${l}.post_mlp_layernorm.weight`);
    if (c.parallelBlock) return add(add(residual, att), mlp);
    return add(h, scaled(mlp));
  };
  const g = inp.ids.graph;
  const routes: Route[] = [];
  for (let i = 0; i < c.layers; i++) {
    const x = h;
    h = w.checkpoint ? g.checkpoint(() => layer(i, x)) : layer(i, x);
  }
  h = norm(h, "model.norm.weight");
  // Granite divides the logits by logits_scaling; dividing the final hidden state instead keeps every consumer of
  // (hidden, head) (the fused linear cross-entropy, the KV-cached decoder) exact.
  if (c.logitScale !== 1) h = mul(h, 1 / c.logitScale);
  const head = W(c.tieEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight");
  let logits = matmul(h, head, { transB: true });
  if (c.finalSoftcap) logits = mul(tanh(mul(logits, 1 / c.finalSoftcap)), c.finalSoftcap);
  // Unused outputs cost nothing: the planner drops nodes no output needs.
  return { hidden: h, head, logits, ...(c.moe ? { routes: routes.filter((r) => r) } : {}) };
}
