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
 * the 12-token goldens use the long factors). Its greedy generation is not compared: transformers switches to the long
 * factors mid-generation (Phi-3 re-prefills there), while Whetstone's KV-cached steps keep the prompt's.
 */
export const FORWARD_ONLY = ["phi3_longrope_long"];

/** Families with a PEFT LoRA adapter golden (`<name>/lora/`). */
export const DENSE_LORA = ["gemma3_text", "olmo2", "granite", "smollm3", "glm4", "starcoder2", "cohere2"];
