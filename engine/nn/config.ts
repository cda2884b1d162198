/**
 * Reads a Hugging Face `config.json` into the one decoder description every family shares.
 * Families: llama, mistral, qwen2, qwen3, gemma, gemma2, phi3 and the mixture-of-experts mixtral, qwen2_moe,
 * qwen3_moe (moe.ts) — chosen by `model_type`.
 * @module
 */
import { type RopeScaling, ropeScalingFromHf } from "../graph/ops/rope.ts";
import { MOE_ATTENTION, MOE_FAMILIES, type MoeConfig, moeConfig } from "./moe.ts";

/** The decoder families Whetstone builds. */
export const FAMILIES = ["llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", ...MOE_FAMILIES] as const;
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
  /** Per-head RMSNorm on q and k before rope (Qwen3). */
  qkNorm: boolean;
  /** Extra norms after attention and around the MLP (Gemma 2). */
  sandwichNorm: boolean;
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
  /** Routed experts (mixtral, qwen2_moe, qwen3_moe; see moe.ts); absent for dense families. */
  moe?: MoeConfig;
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
  const headDim = num(cfg, "head_dim", hidden / heads);
  const gemma = family === "gemma" || family === "gemma2";
  // transformers v5 moves rope settings into rope_parameters; v4 uses rope_theta + rope_scaling.
  const rp = (cfg.rope_parameters ?? null) as Record<string, unknown> | null;
  const ropeTheta = num(rp ?? cfg, "rope_theta", 10000);
  const scalingSrc = rp && rp.rope_type && rp.rope_type !== "default"
    ? rp
    : (cfg.rope_scaling as Record<string, unknown>);
  const ropeScaling = ropeScalingFromHf(scalingSrc ?? null);
  const partial = num(rp ?? cfg, "partial_rotary_factor", 1);
  const window = typeof cfg.sliding_window === "number" ? cfg.sliding_window : 0;
  let layerWindow = new Array<number>(layers).fill(0);
  const layerTypes = cfg.layer_types as string[] | undefined;
  if (Array.isArray(layerTypes)) {
    layerWindow = layerTypes.map((t) => (t === "sliding_attention" ? window : 0));
  } else if (attn === "mistral" || family === "phi3") {
    layerWindow.fill(window);
  } else if (attn === "qwen2" || attn === "qwen3") {
    if (cfg.use_sliding_window) {
      const maxWin = num(cfg, "max_window_layers", layers);
      layerWindow = layerWindow.map((_, i) => (i >= maxWin ? window : 0));
    }
  } else if (family === "gemma2") {
    layerWindow = layerWindow.map((_, i) => (i % 2 === 0 ? window : 0));
  }
  const attnBias = cfg.attention_bias === true;
  return {
    family,
    vocab: num(cfg, "vocab_size"),
    hidden,
    layers,
    heads,
    kvHeads: num(cfg, "num_key_value_heads", heads),
    headDim,
    intermediate: num(cfg, "intermediate_size"),
    eps: num(cfg, "rms_norm_eps", 1e-6),
    ropeTheta,
    ropeScaling,
    rotaryDim: Math.floor(headDim * partial),
    tieEmbeddings: (cfg.tie_word_embeddings as boolean | undefined) ?? gemma,
    qkvBias: (attn === "qwen2" && cfg.qkv_bias !== false) || attnBias,
    oBias: attnBias,
    mlpBias: cfg.mlp_bias === true,
    act: act(cfg.hidden_activation ?? cfg.hidden_act ?? (gemma ? "gelu_pytorch_tanh" : "silu")),
    normOffset: gemma ? 1 : 0,
    embedScale: gemma ? Math.fround(Math.sqrt(hidden)) : 1,
    qkNorm: attn === "qwen3",
    sandwichNorm: family === "gemma2",
    layerWindow,
    attnSoftcap: num(cfg, "attn_logit_softcapping", 0),
    finalSoftcap: num(cfg, "final_logit_softcapping", 0),
    attnScale: family === "gemma2" ? num(cfg, "query_pre_attn_scalar", headDim) ** -0.5 : headDim ** -0.5,
    fused: family === "phi3",
    moe: moeConfig(cfg, family, layers),
    raw: cfg,
  };
}
