/**
 * DeepSeek-V3's multi-head latent attention (transformers' `DeepseekV3Attention`): config keys, parameters and the
 * traced q, k, v that the decoder hands to its attention.
 *
 * For x [B, L, H] and `heads` query heads:
 * - q = q_b_proj(RMSNorm(q_a_proj(x))) when q_lora_rank is set, else q_proj(x) → [B, L, heads, nope + rope], split
 *   into q_pass (qk_nope_head_dim) and q_rot (qk_rope_head_dim);
 * - kv_a_proj_with_mqa(x) [B, L, kv_lora_rank + rope] splits into the compressed kv (RMSNorm'd by kv_a_layernorm) and
 *   one k_rot shared by every head; kv_b_proj(compressed) [B, L, heads, nope + v] splits into k_pass and v;
 * - RoPE on q_rot and k_rot over qk_rope_head_dim dims. With `rope_interleave` (the default) transformers rotates the
 *   pairs (2i, 2i + 1) and writes the result de-interleaved (evens then odds); both q and k stay in that order, so
 *   here the rotary dims are de-interleaved first and rotated in the rotate_half layout — the same q·k;
 * - q = [q_pass, q_rot], k = [k_pass, k_rot] (qk head dim nope + rope); the softmax scale is (nope + rope)^-0.5, times
 *   yarn's mscale(factor, mscale_all_dim)² when rope scaling is yarn with mscale_all_dim (config.ts).
 * The fused attention op takes one head dim for q, k and v: the narrower of (nope + rope) and v_head_dim is padded
 * with zeros to D = max of both (zeros change neither q·k nor the weighted sum of v), and the output's first
 * v_head_dim dims of each head go to o_proj [hidden, heads · v_head_dim]. The KV cache of generation holds the
 * expanded, padded k and v (D per head), not the compressed latent.
 * @module
 */
import { concat, expand, permute, reshape, rmsNorm, slice, type Tensor } from "../graph/mod.ts";

/** The MLA part of a deepseek_v3 config. */
export interface MlaConfig {
  /** q_lora_rank: q through q_a_proj → q_a_layernorm → q_b_proj; 0 = a plain q_proj. */
  qLoraRank: number;
  /** kv_lora_rank: width of the compressed kv. */
  kvLoraRank: number;
  /** qk_nope_head_dim: per-head q/k dims without position embedding. */
  qkNope: number;
  /** qk_rope_head_dim: per-head q/k dims with RoPE (k's shared by every head). */
  qkRope: number;
  /** v_head_dim. */
  vHead: number;
  /** rope_interleave: RoPE pairs (2i, 2i + 1) instead of (i, i + rope/2). */
  interleave: boolean;
  /** attention_bias: biases on q_a_proj (or q_proj: none), kv_a_proj_with_mqa and o_proj. */
  bias: boolean;
}

/** transformers' DeepseekV3RMSNorm default: q_a_layernorm and kv_a_layernorm do not read rms_norm_eps. */
const LATENT_EPS = 1e-6;

function dim(cfg: Record<string, unknown>, key: string, dflt: number | null): number {
  const v = cfg[key] === undefined ? dflt : cfg[key];
  if (v === null) return 0;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
    throw new Error(`config.json: "${key}" must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** Reads the MLA keys of a deepseek_v3 config.json (DeepseekV3Config's defaults where absent). */
export function mlaConfig(cfg: Record<string, unknown>): MlaConfig {
  const qkRope = dim(cfg, "qk_rope_head_dim", 64);
  if (qkRope % 2) throw new Error(`config.json: "qk_rope_head_dim" must be even, got ${qkRope}`);
  return {
    qLoraRank: dim(cfg, "q_lora_rank", 1536),
    kvLoraRank: dim(cfg, "kv_lora_rank", 512),
    qkNope: dim(cfg, "qk_nope_head_dim", 128),
    qkRope,
    vHead: dim(cfg, "v_head_dim", 128),
    interleave: cfg.rope_interleave !== false,
    bias: cfg.attention_bias === true,
  };
}

/** The head dim of the fused attention: max(qk head dim, v_head_dim). */
export function mlaHeadDim(a: MlaConfig): number {
  return Math.max(a.qkNope + a.qkRope, a.vHead);
}

/** Parameters of layer `i`'s attention (prefix `model.layers.<i>.self_attn`), in checkpoint naming. */
export function mlaParams(a: MlaConfig, i: number, hidden: number, heads: number): [string, number[]][] {
  const s = `model.layers.${i}.self_attn`, qk = a.qkNope + a.qkRope;
  const out: [string, number[]][] = [];
  if (a.qLoraRank) {
    out.push([`${s}.q_a_proj.weight`, [a.qLoraRank, hidden]]);
    if (a.bias) out.push([`${s}.q_a_proj.bias`, [a.qLoraRank]]);
    out.push([`${s}.q_a_layernorm.weight`, [a.qLoraRank]]);
    out.push([`${s}.q_b_proj.weight`, [heads * qk, a.qLoraRank]]);
  } else out.push([`${s}.q_proj.weight`, [heads * qk, hidden]]);
  out.push([`${s}.kv_a_proj_with_mqa.weight`, [a.kvLoraRank + a.qkRope, hidden]]);
  if (a.bias) out.push([`${s}.kv_a_proj_with_mqa.bias`, [a.kvLoraRank + a.qkRope]]);
  out.push([`${s}.kv_a_layernorm.weight`, [a.kvLoraRank]]);
  out.push([`${s}.kv_b_proj.weight`, [heads * (a.qkNope + a.vHead), a.kvLoraRank]]);
  out.push([`${s}.o_proj.weight`, [hidden, heads * a.vHead]]);
  if (a.bias) out.push([`${s}.o_proj.bias`, [hidden]]);
  return out;
}

/** x [..., r] with pairs (2j, 2j + 1) → the evens then the odds. */
function deinterleave(x: Tensor): Tensor {
  const lead = x.shape.slice(0, -1), r = x.shape[x.rank - 1];
  return reshape(permute(reshape(x, [...lead, r / 2, 2]), [...lead.map((_, i) => i), lead.length + 1, lead.length]), [
    ...lead,
    r,
  ]);
}

/** Zero-pads the last axis of x [B, L, H, d] to D. */
function padTo(x: Tensor, D: number): Tensor {
  const d = x.shape[3];
  if (d === D) return x;
  const zero = expand(x.graph.constant([0], [1, 1, 1, 1]), [...x.shape.slice(0, 3), D - d]);
  return concat([x, zero], -1);
}

/**
 * Traces layer `i`'s q, k, v, each [B, L, heads, D] ({@link mlaHeadDim}), from the normed input x [B, L, H].
 * `linear` is the decoder's linear (adapters), `weight` its parameter lookup, `positional` its RoPE of the layer on
 * [B, L, h, qk_rope_head_dim].
 */
export function traceMla(
  a: MlaConfig,
  i: number,
  heads: number,
  x: Tensor,
  linear: (x: Tensor, name: string) => Tensor,
  weight: (name: string) => Tensor,
  positional: (x: Tensor) => Tensor,
): { q: Tensor; k: Tensor; v: Tensor } {
  const s = `model.layers.${i}.self_attn`, [B, L] = x.shape, qk = a.qkNope + a.qkRope, D = mlaHeadDim(a);
  const norm = (t: Tensor, name: string) => rmsNorm(t, weight(`${s}.${name}.weight`), { eps: LATENT_EPS });
  const q = reshape(
    a.qLoraRank ? linear(norm(linear(x, `${s}.q_a_proj`), "q_a_layernorm"), `${s}.q_b_proj`) : linear(x, `${s}.q_proj`),
    [B, L, heads, qk],
  );
  const ckv = linear(x, `${s}.kv_a_proj_with_mqa`); // [B, L, kv_lora_rank + rope]
  const latent = norm(slice(ckv, -1, 0, a.kvLoraRank), "kv_a_layernorm");
  let qRot = slice(q, -1, a.qkNope, qk);
  let kRot = reshape(slice(ckv, -1, a.kvLoraRank, a.kvLoraRank + a.qkRope), [B, L, 1, a.qkRope]);
  if (a.interleave) [qRot, kRot] = [deinterleave(qRot), deinterleave(kRot)];
  [qRot, kRot] = [positional(qRot), positional(kRot)];
  const kv = reshape(linear(latent, `${s}.kv_b_proj`), [B, L, heads, a.qkNope + a.vHead]);
  const k = concat([slice(kv, -1, 0, a.qkNope), expand(kRot, [B, L, heads, a.qkRope])], -1);
  const v = slice(kv, -1, a.qkNope, a.qkNope + a.vHead);
  return { q: padTo(concat([slice(q, -1, 0, a.qkNope), qRot], -1), D), k: padTo(k, D), v: padTo(v, D) };
}

/** The attention output o [B, L, heads, D] (or [B, L, heads · D]) → o_proj's input [B, L, heads · v_head_dim]. */
export function mlaOutput(a: MlaConfig, o: Tensor, heads: number): Tensor {
  const [B, L] = o.shape, D = mlaHeadDim(a);
  return reshape(slice(reshape(o, [B, L, heads, D]), -1, 0, a.vHead), [B, L, heads * a.vHead]);
}

/**
 * The softmax scale: (nope + rope)^-0.5, times mscale(factor, mscale_all_dim)² when rope scaling is not default and
 * mscale_all_dim is set (transformers' `yarn_apply_mscale`).
 */
export function mlaScale(a: MlaConfig, rope: Record<string, unknown> | null, factor: number | undefined): number {
  let scale = (a.qkNope + a.qkRope) ** -0.5;
  const all = rope?.mscale_all_dim;
  const type = rope?.rope_type ?? rope?.type ?? "default";
  if (rope && type !== "default" && typeof all === "number" && all && factor !== undefined && factor > 1) {
    const m = 0.1 * all * Math.log(factor) + 1;
    scale *= m * m;
  }
  return scale;
}
