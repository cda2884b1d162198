/**
 * The views of the parsed arguments that other layers take, one function each, so no caller re-reads keys with
 * casts: the data worker's loading and processing arguments, the template options, the generating options (the
 * shape of engine/nn/generate.ts's `GenerateOptions`), the hub download options, and one LF argument group's keys.
 * Each is a pure function of the flat {@linkcode TrainArgs}, so a view made after a caller rewrites a field (e.g.
 * the server confining paths) sees the new value.
 * @module
 */
import type { LoadDatasetsArgs } from "../data/loader.ts";
import type { DataArgs } from "../data/process.ts";
import type { TemplateOptions } from "../data/template.ts";
import type { ResolveOptions } from "../io/hub.ts";
import type { TrainArgs } from "./train_args.ts";
import { type ArgsOf, defaultsOf } from "./key_spec.ts";
import { GENERATING_KEYS, type GeneratingArgs, KEY_GROUPS, type KeyGroup } from "./keys.ts";

/** The data worker's processing arguments (`processDataset`), which apply LF's packing / cutoff rules. */
export function dataArgsOf(a: TrainArgs): DataArgs {
  return {
    stage: a.stage,
    cutoffLen: a.cutoff_len,
    trainOnPrompt: a.train_on_prompt,
    maskHistory: a.mask_history,
    packing: a.packing,
    neatPacking: a.neat_packing,
    batchSize: a.preprocessing_batch_size,
  };
}

/**
 * The data worker's loading arguments (`loadDatasets`), in memory (training does not stream). LF splits and mixes
 * with the training `seed`.
 */
export function loadDatasetsArgsOf(a: TrainArgs): LoadDatasetsArgs & { streaming: false } {
  return {
    dataset: a.dataset ?? undefined,
    eval_dataset: a.eval_dataset ?? undefined,
    dataset_dir: a.dataset_dir,
    stage: a.stage,
    max_samples: a.max_samples ?? undefined,
    val_size: a.val_size,
    mix_strategy: a.mix_strategy,
    interleave_probs: a.interleave_probs ?? undefined,
    seed: a.seed,
    streaming: false,
  };
}

/** The template options (`getTemplate`). */
export function templateOptionsOf(a: TrainArgs): TemplateOptions {
  return {
    template: a.template,
    toolFormat: a.tool_format,
    defaultSystem: a.default_system,
    enableThinking: a.enable_thinking,
    preserveThinking: a.preserve_thinking,
    trainOnPrompt: a.train_on_prompt,
  };
}

/** The sampling settings of LF's GeneratingArguments, shaped as engine/nn/generate.ts's `GenerateOptions`. */
export interface GeneratingOptions {
  maxNewTokens: number;
  doSample: boolean;
  temperature: number;
  topP: number;
  topK: number;
  repetitionPenalty: number;
}

/**
 * The generating options for a prompt of `promptLen` tokens (no stop ids, no seed): `max_new_tokens` when > 0,
 * else what `max_length` leaves after the prompt (LF's `GeneratingArguments.to_dict`).
 */
export function generateOptionsOf(a: GeneratingArgs, promptLen = 0): GeneratingOptions {
  return {
    maxNewTokens: a.max_new_tokens > 0 ? a.max_new_tokens : Math.max(0, a.max_length - promptLen),
    doSample: a.do_sample,
    temperature: a.temperature,
    topP: a.top_p,
    topK: a.top_k,
    repetitionPenalty: a.repetition_penalty,
  };
}

/** LF's `GeneratingArguments` defaults as generating options (the chat engine's defaults). */
export const GENERATING_DEFAULTS: Readonly<GeneratingOptions> = Object.freeze(
  generateOptionsOf(defaultsOf(GENERATING_KEYS)),
);

/** The hub download options of the model keys: `model_revision`, `cache_dir` and `hf_hub_token`. */
export function hubOptionsOf(a: Pick<TrainArgs, "model_revision" | "cache_dir" | "hf_hub_token">): ResolveOptions {
  const o: ResolveOptions = { revision: a.model_revision };
  if (a.cache_dir) o.cacheDir = a.cache_dir;
  if (a.hf_hub_token) o.token = a.hf_hub_token;
  return o;
}

/** The parsed keys of one LF argument group (e.g. `groupArgs(a, "generating").top_p`). */
export function groupArgs<G extends KeyGroup>(a: TrainArgs, group: G): ArgsOf<(typeof KEY_GROUPS)[G]> {
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(KEY_GROUPS[group])) {
    if (spec.use === "train") out[key] = (a as Record<string, unknown>)[key];
  }
  return out as ArgsOf<(typeof KEY_GROUPS)[G]>;
}
