/**
 * The fixture models of issue 16's dense families and RoPE scaling (fixtures/models/<name>, made by
 * fixtures/make_models.py), shared by the model, generation and LoRA tests.
 * @module
 */

/** Families with transformers goldens for logits, loss, gradients and greedy generation. */
export const DENSE = [
  "llama_yarn",
  "phi3_longrope",
  "gemma3_text",
  "olmo2",
  "granite",
  "smollm3",
  "glm4",
  "starcoder2",
  "cohere2",
];

/**
 * Fixtures with logits, loss and gradient goldens only: `phi3_longrope_long` (original_max_position_embeddings 8, so
 * the 12-token goldens use the long factors). Its generate.json is transformers 5.18's cached `generate`, which after
 * Phi-3's cache reset at the switch runs each new token without its context; generation across the switch is checked
 * on fixtures/rope/ instead (engine/nn/rope_runs_test.ts, fixtures/rope/make_rope_runs.py).
 */
export const FORWARD_ONLY = ["phi3_longrope_long"];

/** Families with a PEFT LoRA adapter golden (`<name>/lora/`). */
export const DENSE_LORA = ["gemma3_text", "olmo2", "granite", "smollm3", "glm4", "starcoder2", "cohere2"];
