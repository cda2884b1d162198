/**
 * LongLoRA's shifted sparse attention (S²-Attn), in training only, ported line by line from LLaMA-Factory's
 * `src/llamafactory/model/model_utils/longlora.py` (`llama_attention_forward`, the eager path; the SDPA and flash
 * paths compute the same):
 *
 * ```python
 * key_states = repeat_kv(key_states, self.num_key_value_groups)      # after rope
 * groupsz = int(q_len * getattr(self.config, "group_size_ratio"))    # group_size_ratio = 0.25
 * assert q_len % groupsz == 0, f"q_len {q_len} should be divisible by group size {groupsz}."
 * num_groups = q_len // groupsz
 * def shift(state):  # (bsz, seq_len, n_heads, head_dim)
 *     state = torch.cat((state[:, :, : self.num_heads // 2],
 *                        state[:, :, self.num_heads // 2 :].roll(-groupsz // 2, dims=1)), dim=2)
 *     return state.reshape(bsz * num_groups, groupsz, self.num_heads, self.head_dim)
 * ...  # causal attention within each group (the mask: the first group's block, repeated)
 * attn_output = attn_output.transpose(1, 2).contiguous()             # (bsz * num_groups, groupsz, heads, head_dim)
 * attn_output.reshape(bsz, q_len, self.num_heads, self.head_dim)    # result unused in LF
 * attn_output = torch.cat((attn_output[:, :, : self.num_heads // 2],
 *                          attn_output[:, :, self.num_heads // 2 :].roll(groupsz // 2, dims=1)), dim=2)
 * ```
 *
 * Two consequences of LF's code are kept, so runs match it: the shift back rolls the group-shaped output, i.e. within
 * each group (LF discards the reshape to the full length; the original LongLoRA rolls over the whole sequence), and
 * `-groupsz // 2` is Python's floor division (−⌈g/2⌉ forward, +⌊g/2⌋ back). The attention mask LF passes is the first
 * group's causal block for every group, so padding is not masked inside groups; here too (right padding keeps real
 * tokens before pads, and pads carry no labels).
 * @module
 */
import { attention, concat, expand, reshape, slice, type Tensor } from "../graph/mod.ts";
import type { AttendHook } from "./decoder.ts";

/** LF's `group_size_ratio` (configure_longlora sets 0.25). */
export const GROUP_SIZE_RATIO = 0.25;

/** LF's SUPPORTED_CLASS_FOR_S2ATTN: the model types LongLoRA patches. */
export const S2ATTN_MODEL_TYPES: readonly string[] = ["llama"];

/** Python's floor division. */
const floorDiv = (a: number, b: number) => Math.floor(a / b);

/** The group size of a padded length L: int(L · 1/4); throws LF's assertion when L is not a multiple of it. */
export function s2GroupSize(L: number): number {
  const g = Math.trunc(L * GROUP_SIZE_RATIO);
  if (g === 0 || L % g !== 0) throw new Error(`shift_attn: q_len ${L} should be divisible by group size ${g}.`);
  return g;
}

/** torch.roll(x, shift, dims=axis): out[i] = x[(i − shift) mod n]. */
export function roll(x: Tensor, shift: number, axis: number): Tensor {
  const n = x.shape[axis];
  const r = ((shift % n) + n) % n;
  if (r === 0) return x;
  return concat([slice(x, axis, n - r, n), slice(x, axis, 0, n - r)], axis);
}

/** Rolls heads [H/2:] of x [N, T, H, D] along axis 1 by `shift`, the first ⌊H/2⌋ heads unchanged. */
function rollHalfHeads(x: Tensor, shift: number): Tensor {
  const H = x.shape[2], h = floorDiv(H, 2);
  return concat([slice(x, 2, 0, h), roll(slice(x, 2, h, H), shift, 1)], 2);
}

/** repeat_kv: k [B, L, Hkv, D] → [B, L, Hkv·rep, D], query head i reading kv head ⌊i / rep⌋. */
function repeatKv(k: Tensor, rep: number): Tensor {
  if (rep === 1) return k;
  const [B, L, Hkv, D] = k.shape;
  return reshape(expand(reshape(k, [B, L, Hkv, 1, D]), [B, L, Hkv, rep, D]), [B, L, Hkv * rep, D]);
}

/**
 * S²-attention of q [B, L, Hq, D], k, v [B, L, Hkv, D] (after rope) → [B, L, Hq, D], as LF computes it (module doc).
 * `scale` is the family's attention scale (1/√D for llama).
 */
export function s2Attention(q: Tensor, k: Tensor, v: Tensor, scale?: number): Tensor {
  const [B, L, H, D] = q.shape;
  const g = s2GroupSize(L), groups = L / g;
  const rep = H / k.shape[2];
  const shift = (s: Tensor) => reshape(rollHalfHeads(s, floorDiv(-g, 2)), [B * groups, g, H, D]);
  const o = attention(shift(q), shift(repeatKv(k, rep)), shift(repeatKv(v, rep)), { scale, causal: true }).o;
  return reshape(rollHalfHeads(o, floorDiv(g, 2)), [B, L, H, D]);
}

/** The decoder's attend hook for S²-attention (training graphs only; sliding windows are not combined with it). */
export function s2AttendHook(scale?: number): AttendHook {
  return (_layer, q, k, v) => s2Attention(q, k, v, scale);
}

/**
 * LF's `configure_longlora` in training: on for the supported model types (logging LF's line), otherwise LF's warning
 * and off.
 */
export function configureLongLora(shiftAttn: boolean, family: string, log: (line: string) => void): boolean {
  if (!shiftAttn) return false;
  if (!S2ATTN_MODEL_TYPES.includes(family)) {
    log("warning: shift_attn: Current model does not support shift short attention.");
    return false;
  }
  log("Using shift short attention with group_size_ratio=1/4.");
  return true;
}
