/**
 * The keys of LLaMA-Factory's `DataArguments` (names and defaults as engine/data/loader.ts and process.ts take them).
 * Rows as described in `key_spec.ts`; the whole table is `KEYS` in `keys.ts`.
 * @module
 */
import { MIX_STRATEGIES } from "../data/mix.ts";
import { I, ignore, T, U } from "./key_spec.ts";

/** The data group. */
export const DATA_KEYS = {
  template: T("str", null),
  dataset: T("list", null),
  eval_dataset: T("list", null),
  dataset_dir: T("str", "data"),
  cutoff_len: T("int", 2048, { min: 1 }),
  train_on_prompt: T("bool", false),
  mask_history: T("bool", false),
  streaming: U(false, "streaming datasets in training; Whetstone loads the data into memory"),
  mix_strategy: T(MIX_STRATEGIES, "concat"),
  interleave_probs: T("nums", null),
  preprocessing_batch_size: T("int", 1000, { min: 1 }),
  max_samples: T("int", null, { min: 1 }),
  /** A fraction in [0, 1) or a count. */
  val_size: T("num", 0, { min: 0 }),
  /** null: true for `pt`, false otherwise. */
  packing: T("bool", null),
  neat_packing: T("bool", false),
  tool_format: T("str", null),
  default_system: T("str", null),
  enable_thinking: T("bool", true, { nullable: true }),
  preserve_thinking: T("bool", false),
  media_dir: I(null, "images, videos and audios are not supported yet; ignored"),
  buffer_size: I(16384, "only streaming uses it (Whetstone loads the data into memory); ignored"),
  ...ignore(
    "data-processing caches and workers: Whetstone preprocesses in one worker, without a cache",
    "overwrite_cache",
    "preprocessing_num_workers",
    "data_shared_file_system",
  ),
  eval_num_beams: U(null, "beam search"),
  ignore_pad_token_for_loss: U(true),
  eval_on_each_dataset: U(false, "per-dataset evaluation"),
  tokenized_path: U(null, "saved tokenized datasets; `deno task preprocess` writes JSONL instead"),
};
