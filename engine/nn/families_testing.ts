/**
 * The fixture models of issue 16's dense families and RoPE scaling (fixtures/models/<name>, made by
 * fixtures/make_models.py), shared by the model, generation and LoRA tests.
 * @module
 */

/** Families with transformers goldens for logits, loss, gradients and greedy generation. */
export const DENSE = ["llama_yarn", "phi3_longrope", "gemma3_text", "olmo2", "granite", "smollm3", "glm4"];

/** Families with a PEFT LoRA adapter golden (`<name>/lora/`). */
export const DENSE_LORA = ["gemma3_text", "olmo2", "granite", "smollm3", "glm4"];
