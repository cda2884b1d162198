/**
 * The key table of `deno task train config.yaml`: every argument name LLaMA-Factory's `get_train_args` accepts,
 * grouped as LF groups them — `ModelArguments` (keys_model.ts), `DataArguments` (keys_data.ts),
 * `FinetuningArguments` (keys_finetuning.ts), `GeneratingArguments` (here) and `TrainingArguments` (HF
 * `Seq2SeqTrainingArguments` plus LF's fields, keys_training.ts) — each with LF's default and what Whetstone does
 * with it, plus Whetstone's own keys. Rows are described in key_spec.ts; `TrainArgs` (args.ts) is derived from
 * {@linkcode KEYS}, so adding a key is adding a row.
 *
 * Enum keys also list LF values Whetstone lacks yet (`lacking`: `finetuning_type: oft`, ...).
 * @module
 */
import { type ArgsOf, I, type KeySpec, T, U } from "./key_spec.ts";
import { DATA_KEYS } from "./keys_data.ts";
import { FINETUNING_KEYS } from "./keys_finetuning.ts";
import { MODEL_KEYS } from "./keys_model.ts";
import { TRAINING_KEYS } from "./keys_training.ts";

export { LR_SCHEDULERS } from "./keys_training.ts";
export type { KeyKind, KeySpec } from "./key_spec.ts";

/** LF's `GeneratingArguments` (do_predict with predict_with_generate, ppo's rollouts, chat defaults). */
export const GENERATING_KEYS = {
  do_sample: T("bool", true),
  temperature: T("num", 0.95, { min: 0 }),
  top_p: T("num", 0.7, { min: 0, max: 1 }),
  top_k: T("int", 50, { min: 0 }),
  num_beams: U(1, "beam search"),
  /** Prompt + answer length limit, used only when max_new_tokens <= 0. */
  max_length: T("int", 1024),
  max_new_tokens: T("int", 1024),
  repetition_penalty: T("num", 1, { gt: 0 }),
  length_penalty: I(1, "only beam search uses it; ignored"),
  skip_special_tokens: T("bool", true),
};

/** Whetstone's own keys. */
export const WHETSTONE_KEYS = {
  /**
   * Where the graphs run: "auto" (WebGPU on a hardware adapter, ONNX Runtime on a software one or none),
   * "webgpu" (the WGSL kernels), "onnx" (onnxruntime-node on the CPU) or "reference" (the f64 oracle, slow).
   */
  executor: T(["auto", "webgpu", "onnx", "reference"], "auto"),
  /** Sequence lengths are padded up to a multiple of this (one traced graph per length). */
  bucket: T("int", 64, { min: 1 }),
};

/** The tables by LF's argument group (Whetstone's keys in their own). */
export const KEY_GROUPS = {
  model: MODEL_KEYS,
  data: DATA_KEYS,
  finetuning: FINETUNING_KEYS,
  generating: GENERATING_KEYS,
  training: TRAINING_KEYS,
  whetstone: WHETSTONE_KEYS,
} as const satisfies Record<string, Record<string, KeySpec>>;

/** An argument group's name. */
export type KeyGroup = keyof typeof KEY_GROUPS;

/** Every key `train` accepts. */
export const KEYS = {
  ...MODEL_KEYS,
  ...DATA_KEYS,
  ...FINETUNING_KEYS,
  ...GENERATING_KEYS,
  ...TRAINING_KEYS,
  ...WHETSTONE_KEYS,
} as const satisfies Record<string, KeySpec>;

/** Each key's group. */
export const GROUP_OF: Readonly<Record<string, KeyGroup>> = Object.fromEntries(
  Object.entries(KEY_GROUPS).flatMap(([g, table]) => Object.keys(table).map((k) => [k, g as KeyGroup])),
);

/** The table as rows (for lookups by a name read from a config). */
export const KEY_TABLE: Readonly<Record<string, KeySpec>> = KEYS;

/** The parsed `GeneratingArguments`. */
export type GeneratingArgs = ArgsOf<typeof GENERATING_KEYS>;

/** Renamed keys: the old name on the left. */
export const KEY_ALIASES: Readonly<Record<string, string>> = { evaluation_strategy: "eval_strategy" };
