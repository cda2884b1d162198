/**
 * RoPE frequency scaling, ported from transformers' `modeling_rope_utils.py` (`_compute_linear_scaling_rope_parameters`,
 * `_compute_dynamic_ntk_parameters`, `_compute_yarn_parameters`, `_compute_longrope_parameters`,
 * `_compute_llama3_parameters` and the `dynamic_rope_update` wrapper), computed in f64 on the host.
 *
 * Two types depend on the sequence length (transformers reads it as `max(position_ids) + 1` each forward):
 * - "dynamic" (dynamic NTK): the base grows once the length passes `max_position_embeddings`;
 * - "longrope" (Phi-3 128k, Phi-3.5, Phi-4-mini): `short_factor` up to `original_max_position_embeddings`,
 *   `long_factor` beyond.
 * {@link ropeInvFreq}'s `seqLen` is that length; the decoder feeds the frequencies of each run's actual length
 * (engine/nn/rope_feed.ts).
 * @module
 */

/** Frequency scaling, as transformers' `rope_scaling` / `rope_parameters`. */
export type RopeScaling =
  | { type: "default" }
  | { type: "linear"; factor: number }
  | {
    type: "llama3";
    factor: number;
    lowFreqFactor: number;
    highFreqFactor: number;
    originalMaxPositionEmbeddings: number;
  }
  | { type: "dynamic"; factor: number; maxPositionEmbeddings: number }
  | {
    type: "yarn";
    factor: number;
    originalMaxPositionEmbeddings: number;
    attentionFactor: number;
    betaFast: number;
    betaSlow: number;
    truncate: boolean;
  }
  | {
    type: "longrope";
    shortFactor: number[];
    longFactor: number[];
    originalMaxPositionEmbeddings: number;
    attentionFactor: number;
  };

/** Reading options of {@link ropeScalingFromHf}: the top-level config.json values the types fall back on. */
export interface RopeScalingContext {
  /** config.json's `max_position_embeddings` (dynamic; yarn/longrope without `factor`). */
  maxPositionEmbeddings?: number;
  /** config.json's `original_max_position_embeddings` (Phi-3 keeps it at top level). */
  originalMaxPositionEmbeddings?: number;
  /** Phi-3: its config class reads the legacy types "su" and "yarn" as "longrope". */
  yarnIsLongrope?: boolean;
}

const TYPES = "default, linear, dynamic, yarn, longrope, llama3";

/**
 * Reads transformers' `rope_scaling` config dict (`rope_type` or `type`, snake_case keys) into a
 * {@link RopeScaling}; null/undefined means "default". Unsupported types throw naming the supported ones.
 */
export function ropeScalingFromHf(
  cfg: Record<string, unknown> | null | undefined,
  ctx: RopeScalingContext = {},
): RopeScaling {
  if (!cfg) return { type: "default" };
  let type = (cfg.rope_type ?? cfg.type ?? "default") as string;
  // transformers' legacy names (Phi3Config.convert_rope_params_to_dict)
  if (type === "su" || (type === "yarn" && ctx.yarnIsLongrope)) type = "longrope";
  const where = `rope_scaling "${type}"`;
  const opt = (k: string): number | undefined => {
    const v = cfg[k];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "number" || !Number.isFinite(v)) throw new Error(`${where}: "${k}" must be a number, got ${v}`);
    return v;
  };
  const num = (k: string, dflt?: number) => {
    const v = opt(k) ?? dflt;
    if (v === undefined) throw new Error(`${where} needs a number "${k}", got ${JSON.stringify(cfg[k])}`);
    return v;
  };
  const maxPos = () => num("max_position_embeddings", ctx.maxPositionEmbeddings);
  const origMax = () => num("original_max_position_embeddings", ctx.originalMaxPositionEmbeddings);
  switch (type) {
    case "default":
      return { type };
    case "linear":
      return { type, factor: num("factor") };
    case "llama3":
      return {
        type,
        factor: num("factor"),
        lowFreqFactor: num("low_freq_factor"),
        highFreqFactor: num("high_freq_factor"),
        originalMaxPositionEmbeddings: num("original_max_position_embeddings"),
      };
    case "dynamic":
      return { type, factor: num("factor"), maxPositionEmbeddings: maxPos() };
    case "yarn": {
      const original = origMax();
      // DeepSeek-V3 style configs leave out factor: it is max_position_embeddings / original.
      const factor = opt("factor") ?? maxPos() / original;
      const mscale = opt("mscale"), mscaleAll = opt("mscale_all_dim");
      const attentionFactor = opt("attention_factor") ??
        (mscale && mscaleAll ? yarnMscale(factor, mscale) / yarnMscale(factor, mscaleAll) : yarnMscale(factor));
      return {
        type,
        factor,
        originalMaxPositionEmbeddings: original,
        attentionFactor,
        betaFast: opt("beta_fast") || 32, // transformers: `get("beta_fast") or 32`
        betaSlow: opt("beta_slow") || 1,
        truncate: cfg.truncate !== false,
      };
    }
    case "longrope": {
      const factors = (k: string) => {
        const v = cfg[k];
        if (!Array.isArray(v) || !v.every((x) => typeof x === "number" && x > 0)) {
          throw new Error(`${where} needs "${k}" as a list of positive numbers`);
        }
        return v as number[];
      };
      const original = origMax();
      const factor = opt("factor") ?? maxPos() / original;
      const attentionFactor = opt("attention_factor") ??
        (factor <= 1 ? 1 : Math.sqrt(1 + Math.log(factor) / Math.log(original)));
      return {
        type,
        shortFactor: factors("short_factor"),
        longFactor: factors("long_factor"),
        originalMaxPositionEmbeddings: original,
        attentionFactor,
      };
    }
    default:
      throw new Error(`rope_scaling type "${type}" is not supported; expected one of ${TYPES}`);
  }
}

function yarnMscale(scale: number, mscale = 1): number {
  return scale <= 1 ? 1 : 0.1 * mscale * Math.log(scale) + 1;
}

/** The multiplier on cos and sin (transformers' `attention_scaling`): yarn's and longrope's attention factor, else 1. */
export function ropeAttentionScaling(scaling: RopeScaling): number {
  return scaling.type === "yarn" || scaling.type === "longrope" ? scaling.attentionFactor : 1;
}

/**
 * inv_freq[i] = 1 / theta^(2i / dim) for i < dim/2, in f64, then scaled as transformers scales it:
 * "linear" divides by `factor`; "llama3" divides low frequencies by `factor`, keeps high ones, blends between;
 * "dynamic" raises the base to theta·(factor·s/max − (factor − 1))^(dim/(dim−2)) with s = max(seqLen, max);
 * "yarn" blends interpolated (÷ factor) and extrapolated frequencies over a linear ramp between the correction dims of
 * beta_fast and beta_slow; "longrope" divides by short_factor[i] (seqLen ≤ original) or long_factor[i].
 * `seqLen` is the sequence length the frequencies are for (dynamic and longrope only; default: not beyond the
 * original length, as transformers initialises them).
 */
export function ropeInvFreq(
  dim: number,
  theta: number,
  scaling: RopeScaling = { type: "default" },
  seqLen = 0,
): Float64Array {
  if (!Number.isInteger(dim) || dim < 2 || dim % 2) {
    throw new Error(`rope dim must be a positive even integer, got ${dim}`);
  }
  if (!(theta > 0)) throw new Error(`rope theta must be positive, got ${theta}`);
  const base = (t: number) => Float64Array.from({ length: dim / 2 }, (_, i) => 1 / Math.pow(t, (2 * i) / dim));
  const inv = base(theta);
  switch (scaling.type) {
    case "default":
      return inv;
    case "linear":
      positive(scaling.factor);
      return inv.map((f) => f / scaling.factor);
    case "llama3":
      positive(scaling.factor);
      return llama3(inv, scaling);
    case "dynamic": {
      positive(scaling.factor);
      const max = scaling.maxPositionEmbeddings, s = Math.max(seqLen, max);
      return base(theta * ((scaling.factor * s) / max - (scaling.factor - 1)) ** (dim / (dim - 2)));
    }
    case "yarn":
      positive(scaling.factor);
      return yarn(inv, dim, theta, scaling);
    case "longrope": {
      const ext = seqLen > scaling.originalMaxPositionEmbeddings ? scaling.longFactor : scaling.shortFactor;
      if (ext.length !== dim / 2) {
        throw new Error(`longrope factors have ${ext.length} entries; the rotary dim ${dim} needs ${dim / 2}`);
      }
      return inv.map((f, i) => f / ext[i]);
    }
  }
}

function positive(factor: number) {
  if (!(factor > 0)) throw new Error(`rope scaling factor must be positive, got ${factor}`);
}

function llama3(inv: Float64Array, s: Extract<RopeScaling, { type: "llama3" }>): Float64Array {
  const { factor, lowFreqFactor: lo, highFreqFactor: hi, originalMaxPositionEmbeddings: old } = s;
  if (!(hi > lo)) throw new Error(`llama3 rope scaling needs highFreqFactor > lowFreqFactor, got ${hi} and ${lo}`);
  const lowFreqWavelen = old / lo, highFreqWavelen = old / hi;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highFreqWavelen) return f;
    if (wavelen > lowFreqWavelen) return f / factor;
    const smooth = (old / wavelen - lo) / (hi - lo);
    return (1 - smooth) * (f / factor) + smooth * f;
  });
}

function yarn(inv: Float64Array, dim: number, theta: number, s: Extract<RopeScaling, { type: "yarn" }>) {
  const corrDim = (rot: number) =>
    (dim * Math.log(s.originalMaxPositionEmbeddings / (rot * 2 * Math.PI))) / (2 * Math.log(theta));
  let low = corrDim(s.betaFast), high = corrDim(s.betaSlow);
  if (s.truncate) [low, high] = [Math.floor(low), Math.ceil(high)];
  low = Math.max(low, 0);
  high = Math.min(high, dim - 1);
  if (low === high) high += 0.001; // transformers: prevents a singular ramp
  return inv.map((f, i) => {
    const ramp = Math.min(Math.max((i - low) / (high - low), 0), 1);
    const extrapolation = 1 - ramp;
    return (f / s.factor) * (1 - extrapolation) + f * extrapolation;
  });
}
