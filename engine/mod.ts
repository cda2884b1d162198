/**
 * Whetstone's library: what scripts, notebooks and the HTTP routes (routes/*.ts) use of the engine. Everything a
 * caller needs to load a model, train it step by step or in one call, evaluate, chat, export and inspect data is
 * here; the rest of `engine/` (graph building, executors' internals, kernels, step graphs) is internal and may change.
 *
 * What is public, by purpose:
 * - **Training**: {@linkcode loadTrainConfig} / {@linkcode parseTrainArgs} read LLaMA-Factory's YAML keys into
 *   {@linkcode TrainArgs}; {@linkcode TrainSession} runs them step by step (its {@linkcode SessionPlan},
 *   {@linkcode StepRecord}s, {@linkcode EvalRecord}s and {@linkcode SessionEvent}s), {@linkcode train} in one call.
 * - **Models**: {@linkcode loadModel} / {@linkcode Model}, {@linkcode loadTokenizer}, {@linkcode generate} and
 *   {@linkcode generateStream}, {@linkcode ChatEngine} (a model with its chat template), the exports
 *   ({@linkcode exportModel}, {@linkcode exportOnnx}).
 * - **Data**: {@linkcode readDatasetInfo} / {@linkcode parseDatasetAttr} (dataset_info.json),
 *   {@linkcode previewTrainData} (the first examples as the trainer sees them), {@linkcode readTrainerLog}.
 * - **Evaluation**: {@linkcode computeSimilarity} (BLEU-4, ROUGE as LLaMA-Factory computes them).
 * - **Devices**: {@linkcode createExecutor} by {@linkcode ExecutorKind} (`auto` picks WebGPU, else ONNX Runtime),
 *   {@linkcode openGpu}. The executor classes (reference, WebGPU, ONNX Runtime) are deliberately not exported: a
 *   caller picks one by kind, and uses it through the {@linkcode Executor} interface that a {@linkcode Model} holds.
 * - **Errors** a caller may tell apart: {@linkcode ConfigError} (bad arguments, with each problem),
 *   {@linkcode DataError} (bad data files), {@linkcode SessionBusyError}, {@linkcode SessionFinishedError}.
 *
 * For building compute graphs by hand (advanced), `engine/graph/mod.ts` is a separate entry point.
 *
 * The examples below run in `deno task test` (engine/mod_test.ts) on the repository's tiny model.
 *
 * @example Train a LoRA adapter step by step
 * ```ts
 * import { loadTrainConfig, type StepRecord, TrainSession } from "./mod.ts";
 * const out = await Deno.makeTempDir();
 * const args = await loadTrainConfig("examples/demo_lora_sft.yaml", [
 *   `output_dir=${out}`,
 *   "max_samples=16",
 *   "cutoff_len=64",
 *   "per_device_train_batch_size=4",
 *   "max_steps=3",
 *   "val_size=0.25",
 *   "eval_strategy=no",
 *   "plot_loss=false",
 * ]);
 * const session = await TrainSession.create(args, { log: () => {} });
 * try {
 *   console.log(session.plan.trainable_parameters, "trainable of", session.plan.parameters);
 *   const steps: StepRecord[] = await session.step(2);
 *   if (steps.length !== 2 || !steps.every((s) => Number.isFinite(s.loss))) throw new Error("expected 2 losses");
 *   const ev = await session.evaluate();
 *   const answer = await session.generate([{ role: "user", content: "Hi" }], { maxNewTokens: 8, doSample: false });
 *   console.log(ev.eval_loss, answer.text);
 *   const saved = await session.save();
 *   await Deno.stat(`${saved.checkpoint}/adapter_model.safetensors`);
 * } finally {
 *   session.close();
 *   await Deno.remove(out, { recursive: true });
 * }
 * ```
 *
 * @example Load a model and generate
 * ```ts
 * import { generate, loadModel, loadTokenizer } from "./mod.ts";
 * const tok = await loadTokenizer("fixtures/tiny/model");
 * const model = await loadModel("fixtures/tiny/model"); // or a hub id such as "Qwen/Qwen2.5-0.5B"
 * const ids = tok.applyChatTemplate([{ role: "user", content: "Hi" }], { addGenerationPrompt: true, tokenize: true });
 * const { shape } = await model.forward([ids]);
 * if (shape[1] !== ids.length) throw new Error(`expected logits for ${ids.length} positions, got ${shape}`);
 * const out = await generate(model, ids, { maxNewTokens: 4 }); // greedy
 * console.log(tok.decode(out));
 * model.executor.dispose();
 * ```
 *
 * @example Score predictions
 * ```ts
 * import { computeSimilarity } from "./mod.ts";
 * const s = await computeSimilarity(["the cat sat"], ["the cat sat"]);
 * if (s["bleu-4"] !== 100) throw new Error(`identical texts: expected BLEU-4 100, got ${s["bleu-4"]}`);
 * ```
 * @module
 */

// Training arguments and their errors.
export {
  checkOutputDir,
  ConfigError,
  loadTrainConfig,
  type OutputDirCheck,
  parseTrainArgs,
  type TrainArgs,
} from "./config/args.ts";
export { readConfigFile } from "./config/yaml_file.ts";
export { KEYS, type KeySpec } from "./config/keys.ts";
export { previewTrainData, type TrainDataPreview } from "./config/preview.ts";
export { generateOptionsOf, hubOptionsOf } from "./config/views.ts";
export { backendKeyProblem, inferBackendProblem } from "./config/infer_backend.ts";

// Training.
export {
  type EvalRecord,
  type SessionEvent,
  type SessionOptions,
  type SessionPlan,
  type StepRecord,
  TrainSession,
} from "./train/session.ts";
export { SessionBusyError, SessionFinishedError } from "./train/session.ts";
export { train, type TrainHooks, type TrainResult } from "./train/trainer.ts";
export { predict, type Prediction, PREDICTIONS_FILE, predictProblems, type PredictResult } from "./train/predict.ts";
export { readTrainerLog, type TrainerLogRecord } from "./train/outputs/trainer_log.ts";
export { lossSvg } from "./train/outputs/plot.ts";

// Models, generation, chat and export.
export { type ForwardOptions, type ForwardResult, loadModel, type LoadModelOptions, Model } from "./nn/model.ts";
export { generate, type GenerateOptions, generateStream } from "./nn/generate.ts";
export { ChatEngine, type ChatOptions, type ChatResult } from "./eval/chat.ts";
export { Batcher, BatcherFullError, type BatcherLimits, type BatcherStats } from "./nn/batcher.ts";
export { type ExportArgs, exportModel, type ExportOptions, parseExportArgs } from "./nn/export.ts";
export { exportOnnx, exportOnnxBeside, type OnnxExportInfo, type OnnxExportOptions } from "./nn/onnx_export.ts";
export { OnnxDecoder } from "./nn/onnx_decoder.ts";
export { jinjaChatTemplate, ollamaModelfile, writeTemplateFiles } from "./data/template_export.ts";
export { isHubId, resolveModel, type ResolveOptions } from "./io/hub.ts";

// Data.
export { type ChatMessage, loadTokenizer, Tokenizer } from "./data/tokenizer.ts";
export type { TemplateMessage } from "./data/template.ts";
export { guessTemplate, type TemplateClues, templateNames } from "./data/template_guess.ts";
export { type DatasetAttr, parseDatasetAttr, readDatasetInfo } from "./data/dataset_info.ts";
export type { PreviewRow, PreviewSpan, PreviewView } from "./data/preview.ts";
export { DataError } from "./data/files.ts";

// Evaluation.
export {
  computeSimilarity,
  jiebaSegmenter,
  type Segmenter,
  type SimilarityScores,
  similarityScores,
} from "./eval/metrics.ts";

// Devices.
export { autoExecutorKind, createExecutor, EXECUTOR_KINDS, type ExecutorKind } from "./exec/pick.ts";
export type { Executor } from "./exec/executor.ts";
export { type Gpu, openGpu } from "./gpu/device.ts";
