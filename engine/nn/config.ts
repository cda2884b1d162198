/**
 * Reads a Hugging Face `config.json` into the one decoder description every family shares.
 * Families: llama, mistral, qwen2, qwen3, gemma, gemma2, phi3, gemma3_text, olmo2, granite, smollm3, glm4, starcoder2,
 * cohere2 and the mixture-of-experts mixtral, qwen2_moe, qwen3_moe, deepseek_v3 (multi-head latent attention, mla.ts)
 * and glm4_moe (moe.ts, moe_router.ts) and gpt_oss (moe_gpt_oss.ts) — chosen by `model_type`.
 * @module
 */
import { type RopeScaling, ropeScalingFromHf } from "../graph/ops/rope.ts";
import { MOE_ATTENTION, MOE_FAMILIES, type MoeConfig, moeConfig } from "./moe.ts";
import { GPT_OSS, gptOssMoeConfig } from "./moe_gpt_oss.ts";
import { type MlaConfig, mlaConfig, mlaHeadDim, mlaScale } from "./mla.ts";

/** The decoder families Whetstone builds. */
export const FAMILIES = [
  "llama",
  "mistral",
  "qwen2",
  "qwen3",
  "gemma",
  "gemma2",
  "phi3",
  // dense families of issue 16
  "gemma3_text",
  "olmo2",
  "granite",
  "smollm3",
  "glm4",
  "starcoder2",
  "cohere2",
  ...MOE_FAMILIES,
  GPT_OSS, // attention sinks, sliding/full layers, clamped SwiGLU experts (moe_gpt_oss.ts)
] as const;
/** One of {@link FAMILIES}. */
export type Family = typeof FAMILIES[number];

/** Activation of the gated MLP. */
export type Act = "silu" | "gelu_tanh" | "gelu";

/** Everything the decoder builder needs, resolved from config.json with each family's defaults. */
export interface DecoderConfig {
  family: Family;
  vocab: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  intermediate: number;
  eps: number;
  ropeTheta: number;
  ropeScaling: RopeScaling;
  /** Rotated dims per head (partial rotary); = headDim when full. */
  rotaryDim: number;
  /**
   * RoPE per layer: base and scaling (Gemma 3's sliding layers have their own, `rope_local_base_freq`), or null for a
   * layer without position embedding (SmolLM3's `no_rope_layers` 0).
   */
  layerRope: ({ theta: number; scaling: RopeScaling } | null)[];
  /** GLM-4: RoPE pairs dims (2i, 2i + 1) (interleaved) instead of (i, i + r/2). */
  ropeInterleaved: boolean;
  tieEmbeddings: boolean;
  /** q/k/v projections carry a bias (qwen2, or attention_bias). */
  qkvBias: boolean;
  /** o_proj carries a bias (attention_bias). */
  oBias: boolean;
  /** gate/up/down carry a bias (mlp_bias). */
  mlpBias: boolean;
  act: Act;
  /** RMSNorm weight offset: 1 for Gemma's (1 + w). */
  normOffset: number;
  /** Embedding multiplier (Gemma: √hidden rounded to the compute dtype); 1 otherwise. */
  embedScale: number;
  /** Per-head RMSNorm on q and k before rope (Qwen3, Gemma 3: with {@link normOffset}). */
  qkNorm: boolean;
  /** RMSNorm over all heads' q and over all k, right after q_proj / k_proj (OLMo 2). */
  qkNormAll: boolean;
  /** Extra norms after attention and around the MLP (Gemma 2, Gemma 3). */
  sandwichNorm: boolean;
  /** Norms on the attention and MLP outputs only, none on their inputs (OLMo 2). */
  postNorm: boolean;
  /** GLM-4: post_self_attn_layernorm and post_mlp_layernorm on the attention and MLP outputs as well. */
  glmNorms: boolean;
  /** Multiplier on each block's output before the residual add (Granite's residual_multiplier); 1 otherwise. */
  residualScale: number;
  /** Divisor of the logits (Granite's logits_scaling), folded into the final hidden state; 1 otherwise. */
  logitScale: number;
  /** Sliding window per layer (0 = full causal). */
  layerWindow: number[];
  /** Attention logit soft-capping (0 = none). */
  attnSoftcap: number;
  /** Final logit soft-capping (0 = none). */
  finalSoftcap: number;
  /** Multiplier on q·k (default 1/√headDim). */
  attnScale: number;
  /** Fused projections (Phi-3): qkv_proj and gate_up_proj. */
  fused: boolean;
  /** Fused gate_up_proj alone (GLM-4; Phi-3 through {@link fused}). */
  fusedGateUp: boolean;
  /** LayerNorm instead of RMSNorm (StarCoder2 with biases, Cohere 2 without). */
  layerNorm: boolean;
  /** The LayerNorms carry a bias (StarCoder2). */
  normBias: boolean;
  /** Attention and MLP both read the input norm's output and add to the residual together (Cohere 2). */
  parallelBlock: boolean;
  /** Ungated MLP `c_proj(act(c_fc(x)))` instead of gate/up/down (StarCoder2). */
  plainMlp: boolean;
  /** A learned per-head logit in each attention row's softmax denominator (gpt_oss's `self_attn.sinks`). */
  attnSinks: boolean;
  /**
   * Routed experts (mixtral, qwen2_moe, qwen3_moe, deepseek_v3, glm4_moe: moe.ts; gpt_oss: moe_gpt_oss.ts); absent for
   * dense families.
   */
  moe?: MoeConfig;
  /**
   * DeepSeek-V3's multi-head latent attention (mla.ts) instead of q/k/v_proj; then heads = kvHeads, headDim is the
   * padded head dim of the fused attention and rotaryDim qk_rope_head_dim.
   */
  mla?: MlaConfig;
  /** The raw config.json. */
  raw: Record<string, unknown>;
}

function num(cfg: Record<string, unknown>, key: string, dflt?: number): number {
  const v = cfg[key];
  if (v === undefined || v === null) {
    if (dflt === undefined) throw new Error(`config.json: "${key}" is required and missing`);
    return dflt;
  }
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new Error(`config.json: "${key}" must be a number, got ${JSON.stringify(v)}`);
  }
  return v;
}

function act(name: unknown): Act {
  switch (name) {
    case "silu":
    case "swish":
      return "silu";
    case "gelu_pytorch_tanh":
    case "gelu_new":
    case "gelu_fast":
    case "gelu_tanh":
      return "gelu_tanh";
    case "gelu":
      return "gelu";
    default:
      throw new Error(
        `config.json: hidden_act ${JSON.stringify(name)} is not supported (silu, gelu, gelu_pytorch_tanh)`,
      );
  }
}

/** Resolves a parsed config.json; an unknown `model_type` is an error listing the supported ones. */
export function decoderConfig(cfg: Record<string, unknown>): DecoderConfig {
  const type = cfg.model_type;
  if (typeof type !== "string" || !(FAMILIES as readonly string[]).includes(type)) {
    throw new Error(
      `config.json: model_type ${JSON.stringify(type)} is not supported; supported: ${FAMILIES.join(", ")}`,
    );
  }
  const family = type as Family;
  // A mixture-of-experts family attends as its dense sibling does (mixtral: mistral, qwen2_moe: qwen2, ...).
  const attn = MOE_ATTENTION[family] ?? family;
  const hidden = num(cfg, "hidden_size");
  const heads = num(cfg, "num_attention_heads");
  const layers = num(cfg, "num_hidden_layers");
  const mla = family === "deepseek_v3" ? mlaConfig(cfg) : undefined;
  const headDim = mla ? mlaHeadDim(mla) : num(cfg, "head_dim", hidden / heads);
  if (mla && num(cfg, "num_key_value_heads", heads) !== heads) {
    // transformers' DeepseekV3Attention expands k and v to every head and then repeats them by heads / kv heads.
    throw new Error(`config.json: deepseek_v3 needs "num_key_value_heads" equal to num_attention_heads (${heads})`);
  }
  const gemma = family === "gemma" || family === "gemma2" || family === "gemma3_text";
  // transformers v5 moves rope settings into rope_parameters; v4 uses rope_theta + rope_scaling.
  const rp = (cfg.rope_parameters ?? null) as Record<string, unknown> | null;
  const gptOss = family === GPT_OSS;
  const ropeTheta = num(rp ?? cfg, "rope_theta", gptOss ? 150000 : 10000);
  const scalingSrc = rp && rp.rope_type && rp.rope_type !== "default"
    ? rp
    : (cfg.rope_scaling as Record<string, unknown>) ?? (gptOss && !rp ? GPT_OSS_ROPE : undefined);
  const ropeScaling = ropeScalingFromHf(scalingSrc ?? null, {
    maxPositionEmbeddings: typeof cfg.max_position_embeddings === "number" ? cfg.max_position_embeddings : undefined,
    originalMaxPositionEmbeddings: typeof cfg.original_max_position_embeddings === "number"
      ? cfg.original_max_position_embeddings
      : undefined,
    yarnIsLongrope: family === "phi3",
  });
  const partial = num(
    rp ?? cfg,
    "partial_rotary_factor",
    num(cfg, "partial_rotary_factor", family === "glm4" || family === "glm4_moe" ? 0.5 : 1),
  );
  const window = typeof cfg.sliding_window === "number"
    ? cfg.sliding_window
    : gptOss && cfg.sliding_window === undefined
    ? 128
    : 0;
  let layerWindow = new Array<number>(layers).fill(0);
  const layerTypes = cfg.layer_types as string[] | undefined;
  if (Array.isArray(layerTypes)) {
    layerWindow = layerTypes.map((t) => (t === "sliding_attention" ? window : 0));
  } else if (attn === "mistral" || family === "phi3" || family === "starcoder2") {
    layerWindow.fill(window);
  } else if (family === "cohere2") {
    // transformers 4 configs: every sliding_window_pattern-th layer is global (Cohere2Config.__post_init__).
    const every = num(cfg, "sliding_window_pattern", 4);
    layerWindow = layerWindow.map((_, i) => ((i + 1) % every ? window : 0));
  } else if (attn === "qwen2" || attn === "qwen3") {
    if (cfg.use_sliding_window) {
      const maxWin = num(cfg, "max_window_layers", layers);
      layerWindow = layerWindow.map((_, i) => (i >= maxWin ? window : 0));
    }
  } else if (family === "gemma2" || gptOss) {
    layerWindow = layerWindow.map((_, i) => (i % 2 === 0 ? window : 0));
  } else if (family === "gemma3_text") {
    // transformers 4 configs: every sliding_window_pattern-th layer is global (Gemma3TextConfig.__post_init__).
    const every = num(cfg, "sliding_window_pattern", 6);
    layerWindow = layerWindow.map((_, i) => ((i + 1) % every ? window : 0));
  }
  if (family === "smollm3" && !cfg.use_sliding_window) layerWindow.fill(0);
  const starcoder = family === "starcoder2";
  const attnBias = cfg.attention_bias === true ||
    ((family === "glm4" || gptOss) && cfg.attention_bias !== false) ||
    (starcoder && cfg.use_bias !== false);
  const rotaryDim = mla ? mla.qkRope : Math.floor(headDim * partial);
  let layerRope: DecoderConfig["layerRope"] = new Array(layers).fill({ theta: ropeTheta, scaling: ropeScaling });
  if (family === "gemma3_text") {
    const every = num(cfg, "sliding_window_pattern", 6);
    const sliding = Array.from(
      { length: layers },
      (_, i) => Array.isArray(layerTypes) ? layerTypes[i] === "sliding_attention" : (i + 1) % every !== 0,
    );
    layerRope = gemma3Rope(cfg, sliding, ropeTheta, ropeScaling);
  }
  if (family === "smollm3") {
    const use = cfg.no_rope_layers as number[] | undefined;
    const every = num(cfg, "no_rope_layer_interval", 4);
    layerRope = layerRope.map((r, i) => ((use ? use[i] : (i + 1) % every !== 0) ? r : null));
  }
  // Cohere 2: RoPE on the sliding layers only, the global ones have no position embedding.
  if (family === "cohere2") layerRope = layerRope.map((r, i) => (layerWindow[i] ? r : null));
  const granite = family === "granite";
  return {
    family,
    vocab: num(cfg, "vocab_size"),
    hidden,
    layers,
    heads,
    kvHeads: mla ? heads : num(cfg, "num_key_value_heads", heads),
    headDim,
    intermediate: num(cfg, "intermediate_size"),
    eps: starcoder
      ? num(cfg, "norm_epsilon", 1e-5)
      : family === "cohere2"
      ? num(cfg, "layer_norm_eps", 1e-5)
      : num(cfg, "rms_norm_eps", gptOss || family === "glm4_moe" ? 1e-5 : 1e-6),
    ropeTheta,
    ropeScaling,
    rotaryDim,
    layerRope,
    ropeInterleaved: family === "glm4" || family === "cohere2",
    tieEmbeddings: (cfg.tie_word_embeddings as boolean | undefined) ?? (gemma || starcoder || family === "cohere2"),
    qkvBias: !mla && ((attn === "qwen2" && cfg.qkv_bias !== false) || attnBias),
    oBias: attnBias && !mla && family !== "glm4" && family !== "glm4_moe",
    mlpBias: cfg.mlp_bias === true || (starcoder && cfg.use_bias !== false),
    act: act(cfg.hidden_activation ?? cfg.hidden_act ?? (gemma || starcoder ? "gelu_pytorch_tanh" : "silu")),
    normOffset: gemma ? 1 : 0,
    embedScale: gemma ? Math.fround(Math.sqrt(hidden)) : granite ? num(cfg, "embedding_multiplier", 1) : 1,
    qkNorm: attn === "qwen3" || family === "gemma3_text" || (family === "glm4_moe" && cfg.use_qk_norm === true),
    qkNormAll: family === "olmo2",
    sandwichNorm: family === "gemma2" || family === "gemma3_text",
    postNorm: family === "olmo2",
    glmNorms: family === "glm4",
    residualScale: granite ? num(cfg, "residual_multiplier", 1) : 1,
    logitScale: granite
      ? num(cfg, "logits_scaling", 1)
      : family === "cohere2"
      ? 1 / num(cfg, "logit_scale", 0.0625)
      : 1,
    layerWindow,
    attnSoftcap: num(cfg, "attn_logit_softcapping", 0),
    finalSoftcap: num(cfg, "final_logit_softcapping", 0),
    attnScale: family === "gemma2" || family === "gemma3_text"
      ? num(cfg, "query_pre_attn_scalar", headDim) ** -0.5
      : granite
      ? num(cfg, "attention_multiplier", 1)
      : mla
      ? mlaScale(mla, scalingSrc ?? null, "factor" in ropeScaling ? ropeScaling.factor : undefined)
      : headDim ** -0.5,
    fused: family === "phi3",
    fusedGateUp: family === "phi3" || family === "glm4",
    layerNorm: starcoder || family === "cohere2",
    normBias: starcoder,
    parallelBlock: family === "cohere2",
    plainMlp: starcoder,
    attnSinks: gptOss,
    moe: gptOss ? gptOssMoeConfig(cfg, layers) : moeConfig(cfg, family, layers),
    ...(mla ? { mla } : {}),
    // MXFP4 gpt_oss is dequantized at load; transformers then drops quantization_config (remove_quantization_config).
    raw: gptOss && cfg.quantization_config
      ? Object.fromEntries(Object.entries(cfg).filter(([k]) => k !== "quantization_config"))
      : cfg,
  };
}

/** gpt_oss's RoPE when config.json names none (GptOssConfig.__post_init__). */
const GPT_OSS_ROPE = {
  rope_type: "yarn",
  factor: 32.0,
  beta_fast: 32.0,
  beta_slow: 1.0,
  truncate: false,
  original_max_position_embeddings: 4096,
};

/**
 * Gemma 3's RoPE per layer: sliding layers use `rope_parameters.sliding_attention` (transformers 5) or
 * `rope_local_base_freq` (default 10000) unscaled (transformers 4); global layers `rope_parameters.full_attention`
 * or `rope_theta` (default 1e6) with `rope_scaling` (Gemma3TextConfig.convert_rope_params_to_dict).
 */
function gemma3Rope(
  cfg: Record<string, unknown>,
  sliding: boolean[],
  theta: number,
  scaling: RopeScaling,
): DecoderConfig["layerRope"] {
  const rp = cfg.rope_parameters as Record<string, Record<string, unknown>> | undefined;
  const ctx = { maxPositionEmbeddings: cfg.max_position_embeddings as number | undefined };
  const read = (kind: string, dfltTheta: number) => {
    const p = rp?.[kind];
    if (!p) return null;
    return {
      theta: num(p, "rope_theta", dfltTheta),
      scaling: ropeScalingFromHf(p.rope_type && p.rope_type !== "default" ? p : null, ctx),
    };
  };
  const global = read("full_attention", 1e6) ??
    { theta: typeof cfg.rope_theta === "number" ? theta : 1e6, scaling };
  const local = read("sliding_attention", 1e4) ??
    { theta: num(cfg, "rope_local_base_freq", 1e4), scaling: { type: "default" } as RopeScaling };
  return sliding.map((s) => (s ? local : global));
}
