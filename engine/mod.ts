/**
 * Whetstone's library surface for notebooks and scripts.
 *
 * @example
 * ```ts
 * import { loadModel, loadTokenizer } from "./engine/mod.ts";
 * const tok = await loadTokenizer("path/to/model");
 * const model = await loadModel("path/to/model"); // or a hub id such as "Qwen/Qwen2.5-0.5B"
 * const ids = tok.applyChatTemplate([{ role: "user", content: "Hi" }], { addGenerationPrompt: true, tokenize: true });
 * const { logits, shape } = await model.forward([ids]);
 * ```
 * @module
 */
export {
  bucketLength,
  type ForwardOptions,
  type ForwardResult,
  loadModel,
  type LoadModelOptions,
  Model,
} from "./nn/model.ts";
export { type DecoderConfig, decoderConfig, FAMILIES } from "./nn/config.ts";
export { loadTokenizer, Tokenizer } from "./data/tokenizer.ts";
export { openModelFolder } from "./io/hf_folder.ts";
export { openSafetensors, writeSafetensors } from "./io/safetensors.ts";
export { resolveModel } from "./io/hub.ts";
export { ReferenceExecutor } from "./exec/reference.ts";
export { WebGpuExecutor } from "./exec/webgpu.ts";
export type { CompiledGraph, Executor, HostArray, StepStats } from "./exec/executor.ts";
export * as graph from "./graph/mod.ts";
