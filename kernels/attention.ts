/**
 * The attention kernel family: flash-attention forward (`attention_fwd.ts`) and backward
 * (`attention_bwd.ts`).
 * @module
 */
import type { Lowering } from "./kernel.ts";
import { lowerAttention } from "./attention_fwd.ts";
import { lowerAttentionBwd } from "./attention_bwd.ts";

export { ATTENTION_DEFAULTS, ATTENTION_SHORT, type AttentionTuning } from "./attention_fwd.ts";

/** Lowerings of this family by op name. */
export const lowerings: Record<string, Lowering> = {
  attention: lowerAttention as Lowering,
  attention_bwd: lowerAttentionBwd as Lowering,
};
