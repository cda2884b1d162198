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
export { chooseToken, generate, generateBatch, type GenerateOptions, generateStream } from "./nn/generate.ts";
export { loadTokenizer, Tokenizer } from "./data/tokenizer.ts";
export { openModelFolder } from "./io/hf_folder.ts";
export { openSafetensors, writeSafetensors } from "./io/safetensors.ts";
export { resolveModel } from "./io/hub.ts";
export { ReferenceExecutor } from "./exec/reference.ts";
export { WebGpuExecutor } from "./exec/webgpu.ts";
export type { CompiledGraph, Executor, HostArray, StepStats } from "./exec/executor.ts";
export * as graph from "./graph/mod.ts";
export { attachAdapter, type LoraConfig, saveAdapter } from "./nn/lora.ts";
export { readPeftAdapter, writePeftAdapter } from "./io/peft.ts";
export { loadTrainConfig, parseTrainArgs, type TrainArgs } from "./config/args.ts";
export { train, type TrainHooks, type TrainResult } from "./train/trainer.ts";
export { TrainSession } from "./train/session.ts";
export { ChatEngine } from "./eval/chat.ts";
export { createExecutor, type ExecutorKind } from "./exec/pick.ts";
export { OnnxExecutor } from "./exec/onnx/executor.ts";
export { exportOnnx } from "./nn/onnx_export.ts";
export { OnnxDecoder } from "./nn/onnx_decoder.ts";
export { computeSimilarity } from "./eval/metrics.ts";
export { loadDatasets } from "./data/loader.ts";
export { processDataset } from "./data/process.ts";
export { getTemplate } from "./data/template.ts";
export { previewDataset } from "./data/preview.ts";
