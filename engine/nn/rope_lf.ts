/**
 * LLaMA-Factory's `rope_scaling` model argument (linear, dynamic, yarn, llama3), applied to a config.json as its
 * `configure_rope` (src/llamafactory/model/model_utils/rope.py) sets the transformers config before loading:
 * - with a `model_max_length` (LF sets it to `cutoff_len` for training and prediction): no scaling when it does not
 *   exceed `max_position_embeddings` (LF logs "Input length is smaller than max length. Disabling rope scaling."),
 *   else factor ⌈model_max_length / max_position_embeddings⌉;
 * - without one (chat, the API): factor 2;
 * then `max_position_embeddings` becomes old × factor, "dynamic" and "yarn" get `original_max_position_embeddings`
 * = the old length, "llama3" that and low/high frequency factors 1 and 4.
 * @module
 */

/** The values LLaMA-Factory's `rope_scaling` accepts (its `RopeScaling` enum). */
export const LF_ROPE_SCALING = ["linear", "dynamic", "yarn", "llama3"] as const;
/** One of {@link LF_ROPE_SCALING}. */
export type LfRopeScaling = typeof LF_ROPE_SCALING[number];

/** Result of {@link applyLfRopeScaling}: the config to build the model from, and LF's log line. */
export interface LfRopeResult {
  config: Record<string, unknown>;
  message: string;
}

/** A copy of config.json with LLaMA-Factory's `rope_scaling` applied (see the module doc); `cfg` is not changed. */
export function applyLfRopeScaling(
  cfg: Record<string, unknown>,
  type: LfRopeScaling,
  modelMaxLength?: number,
): LfRopeResult {
  if (!(LF_ROPE_SCALING as readonly string[]).includes(type)) {
    throw new Error(`rope_scaling: ${JSON.stringify(type)} is not one of ${LF_ROPE_SCALING.join(", ")}`);
  }
  const old = cfg.max_position_embeddings;
  if (typeof old !== "number" || !(old > 0)) {
    return { config: cfg, message: "Cannot find the max position embeddings in the config." };
  }
  let factor = 2;
  if (modelMaxLength !== undefined) {
    if (modelMaxLength <= old) {
      return { config: cfg, message: "Input length is smaller than max length. Disabling rope scaling." };
    }
    factor = Math.ceil(modelMaxLength / old);
  }
  const kwargs: Record<string, unknown> = { rope_type: type, factor };
  if (type === "dynamic" || type === "yarn") kwargs.original_max_position_embeddings = old;
  if (type === "llama3") {
    Object.assign(kwargs, { original_max_position_embeddings: old, low_freq_factor: 1, high_freq_factor: 4 });
  }
  const out: Record<string, unknown> = { ...cfg, max_position_embeddings: old * factor };
  const rp = cfg.rope_parameters as Record<string, unknown> | undefined;
  if (rp && typeof rp.full_attention === "object" && rp.full_attention) {
    // Gemma 3 (transformers 5): the scaling applies to the global layers' parameters.
    out.rope_parameters = { ...rp, full_attention: { ...(rp.full_attention as object), ...kwargs } };
  } else if (rp) {
    out.rope_parameters = { ...rp, ...kwargs };
  } else {
    out.rope_scaling = kwargs;
  }
  return {
    config: out,
    message: `Using ${type} scaling strategy and setting scaling factor to ${factor}; max_position_embeddings ` +
      `${old} → ${old * factor}.`,
  };
}
