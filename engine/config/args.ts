/**
 * `deno task train config.yaml [key=value ...]`: LLaMA-Factory's training arguments, read from the same YAML with
 * the same key names and defaults (LF's dataclasses and HF `TrainingArguments`), checked as `get_train_args` checks
 * them. The key table is in `keys.ts`, the value checks in `values.ts`, the cross-field rules in `rules.ts`.
 *
 * - Values are typed by the table: a wrong type, a value out of range or not in the allowed set is an error naming
 *   the key, the value and what is accepted. An unknown key is an error naming the closest known keys. A key whose
 *   feature Whetstone lacks yet (deepspeed, use_apollo, `pref_loss: kto_pair`, ...) is an error unless it
 *   holds LF's default. Keys that change nothing here (report_to, dataloader_num_workers, ddp_timeout, ...) are
 *   accepted; some add a note to {@linkcode TrainArgs.warnings} (e.g. `bf16: true`: Whetstone computes in f32).
 * - All problems are reported at once, one line each, prefixed by the file name, in one {@linkcode ConfigError}.
 * - Overrides are `key=value`, the value read as a YAML scalar (like LF's OmegaConf dot-list);
 *   `lr_scheduler_kwargs.min_lr_rate=0.1` sets one entry of a mapping.
 * - YAML is read as YAML 1.2 (as `deno task preprocess` reads it); boolean keys also take LF's YAML 1.1 spellings
 *   yes/no/on/off.
 * - Parsing touches no file but the config itself: the model, datasets and output_dir are checked later
 *   ({@linkcode checkOutputDir} for output_dir).
 *
 * @example
 * ```ts
 * const args = await loadTrainConfig("examples/demo_lora_sft.yaml", ["learning_rate=1e-5"]);
 * for (const w of args.warnings) console.error(`warning: ${w}`);
 * const { resumeFrom } = await checkOutputDir(args);
 * ```
 * @module
 */
import { parseYaml } from "../../deps.ts";
import { closeNames } from "../data/dataset_info.ts";
import type { MixStrategy } from "../data/mix.ts";
import type { Stage } from "../data/process.ts";
import { KEY_ALIASES, KEYS, type LR_SCHEDULERS } from "./keys.ts";
import { crossCheck } from "./rules.ts";
import { isMapping, isOff, readValue, show } from "./values.ts";

export {
  checkOutputDir,
  dataArgsOf,
  intervalSteps,
  loadDatasetsArgsOf,
  templateOptionsOf,
  warmupSteps,
} from "./rules.ts";
export type { OutputDirCheck } from "./rules.ts";

/** HF's `lr_scheduler_kwargs` for the supported schedulers (cosine: num_cycles; cosine_with_min_lr: all three). */
export interface LrSchedulerKwargs {
  num_cycles?: number;
  min_lr?: number;
  min_lr_rate?: number;
}

/** A learning-rate schedule (HF `SchedulerType`). */
export type LrSchedulerType = (typeof LR_SCHEDULERS)[number];

/** When to log, evaluate or save. */
export type IntervalStrategy = "no" | "steps" | "epoch";

/**
 * The parsed training arguments, named as in LF's YAML. Types are LF's after its `__post_init__`: comma lists are
 * arrays, `lora_alpha` is resolved (`lora_rank * 2` when unset), `optim` is Whetstone's optimizer ("adamw" for
 * `adamw_torch` and its aliases). `cutoff_len` and `packing` are kept as given: the data worker's
 * `resolveDataArgs` applies LF's packing rules (`dataArgsOf`).
 */
export interface TrainArgs {
  // model
  /** A local HF model folder or a hub model id (required). */
  model_name_or_path: string;
  /** Adapters to load: all but the last are merged, the last is trained on (unless create_new_adapter). */
  adapter_name_or_path: string[] | null;
  model_revision: string;
  cache_dir: string | null;
  hf_hub_token: string | null;
  // method
  stage: Stage;
  do_train: boolean;
  /** True when eval_strategy is not "no" (as HF sets it). */
  do_eval: boolean;
  finetuning_type: "lora" | "freeze" | "full" | "oft";
  lora_rank: number;
  lora_alpha: number;
  lora_dropout: number;
  /** "all": every linear layer but lm_head. */
  lora_target: "all" | string[];
  additional_target: string[] | null;
  use_rslora: boolean;
  use_dora: boolean;
  pissa_init: boolean;
  pissa_iter: number;
  pissa_convert: boolean;
  loraplus_lr_ratio: number | null;
  loraplus_lr_embedding: number;
  create_new_adapter: boolean;
  freeze_trainable_layers: number;
  freeze_trainable_modules: "all" | string[];
  freeze_extra_modules: string[] | null;
  plot_loss: boolean;
  disable_shuffling: boolean;
  // QLoRA (LF's QuantizationArguments; engine/nn/quantize.ts)
  quantization_method: "bnb";
  /** 4 or 8: the base linears are quantized at load (LoRA only); null: not quantized. */
  quantization_bit: number | null;
  quantization_type: "nf4" | "fp4";
  double_quantization: boolean;
  /** false (LF's default): activation checkpointing of every decoder layer. */
  disable_gradient_checkpointing: boolean;
  // GaLore and BAdam (engine/optim)
  use_galore: boolean;
  galore_target: "all" | string[];
  galore_rank: number;
  galore_update_interval: number;
  galore_scale: number;
  galore_proj_type: "std" | "reverse_std" | "right" | "left" | "full";
  use_badam: boolean;
  badam_mode: "layer";
  badam_start_block: number | null;
  badam_switch_mode: "ascending" | "descending" | "random" | "fixed";
  badam_switch_interval: number;
  // preference and RL stages (LF's RLHFArguments)
  /** β of the preference losses (dpo with each pref_loss, kto). */
  pref_beta: number;
  /** Weight of the SFT loss on the chosen response (dpo) or desirable examples (kto). */
  pref_ftx: number;
  pref_loss: "sigmoid" | "hinge" | "ipo" | "orpo" | "simpo";
  dpo_label_smoothing: number;
  kto_chosen_weight: number;
  kto_rejected_weight: number;
  simpo_gamma: number;
  ppo_buffer_size: number;
  ppo_epochs: number;
  ppo_score_norm: boolean;
  ppo_target: number;
  ppo_whiten_rewards: boolean;
  /** A model folder (or hub id) for the reference of dpo / kto; null: the base (LoRA) or a frozen copy. */
  ref_model: string | null;
  ref_model_adapters: string[] | null;
  /** Stage ppo: the output of a stage rm run (its adapter or model folder, and value_head.safetensors). */
  reward_model: string | null;
  reward_model_adapters: string[] | null;
  reward_model_type: "lora" | "full" | "api";
  // data (as engine/data takes them)
  template: string | null;
  dataset: string[] | null;
  eval_dataset: string[] | null;
  dataset_dir: string;
  cutoff_len: number;
  max_samples: number | null;
  /** A fraction in [0, 1) or a count. */
  val_size: number;
  /** null: true for `pt`, false otherwise. */
  packing: boolean | null;
  neat_packing: boolean;
  train_on_prompt: boolean;
  mask_history: boolean;
  mix_strategy: MixStrategy;
  interleave_probs: number[] | null;
  streaming: boolean;
  preprocessing_batch_size: number;
  tool_format: string | null;
  default_system: string | null;
  enable_thinking: boolean | null;
  preserve_thinking: boolean;
  // output
  output_dir: string;
  overwrite_output_dir: boolean;
  logging_strategy: IntervalStrategy;
  /** Below 1: a fraction of the total steps ({@linkcode intervalSteps}). */
  logging_steps: number;
  logging_first_step: boolean;
  logging_nan_inf_filter: boolean;
  save_strategy: IntervalStrategy | "best";
  save_steps: number;
  /** Checkpoints kept (older ones are deleted); null or <= 0: all. */
  save_total_limit: number | null;
  save_only_model: boolean;
  // train
  per_device_train_batch_size: number;
  per_device_eval_batch_size: number;
  gradient_accumulation_steps: number;
  learning_rate: number;
  num_train_epochs: number;
  /** > 0 overrides num_train_epochs. */
  max_steps: number;
  lr_scheduler_type: LrSchedulerType;
  lr_scheduler_kwargs: LrSchedulerKwargs;
  warmup_ratio: number;
  /** > 0 overrides warmup_ratio; below 1 it is itself a ratio (transformers 5) ({@linkcode warmupSteps}). */
  warmup_steps: number;
  weight_decay: number;
  adam_beta1: number;
  adam_beta2: number;
  adam_epsilon: number;
  /** 0 disables clipping. */
  max_grad_norm: number;
  optim: "adamw" | "sgd";
  seed: number;
  /** The data order's seed; null: `seed`. */
  data_seed: number | null;
  bf16: boolean;
  fp16: boolean;
  /** A checkpoint folder, true (the last checkpoint in output_dir), false (never resume) or null (resume when
   * output_dir holds checkpoints, as LF does). Resolved by {@linkcode checkOutputDir}. */
  resume_from_checkpoint: string | boolean | null;
  // eval
  eval_strategy: IntervalStrategy;
  /** null with eval_strategy "steps" becomes logging_steps. */
  eval_steps: number | null;
  // Whetstone
  /** "webgpu" (the kernels) or "reference" (the f64 oracle, slow). */
  executor: "auto" | "webgpu" | "onnx" | "reference";
  /** Sequence lengths are padded to a multiple of this. */
  bucket: number;
  /** Notes for the user about keys that are ignored here; not a config key. */
  warnings: string[];
}

/** Config problems, one per line, each prefixed with the file name. */
export class ConfigError extends Error {
  constructor(readonly where: string, readonly problems: string[]) {
    super(problems.map((p) => `${where}: ${p}`).join("\n"));
    this.name = "ConfigError";
  }
}

type Raw = Record<string, unknown>;

/** A YAML scalar of the command line; text that is not YAML stays a string. */
function scalar(text: string): unknown {
  try {
    return parseYaml(text);
  } catch {
    return text;
  }
}

function applyOverrides(raw: Raw, overrides: readonly string[], where: string): Set<string> {
  const fromCli = new Set<string>();
  for (const o of overrides) {
    const m = /^([A-Za-z_][\w]*)(?:\.([\w]+))?=([\s\S]*)$/.exec(o);
    if (!m) {
      throw new ConfigError(where, [`override ${JSON.stringify(o)}: expected key=value (e.g. learning_rate=1e-5)`]);
    }
    const [, key, sub, text] = m;
    const value = scalar(text);
    fromCli.add(key);
    if (sub === undefined) {
      raw[key] = value;
      continue;
    }
    let cur = raw[key];
    if (typeof cur === "string" && cur.trim().startsWith("{")) cur = scalar(cur);
    if (cur !== undefined && cur !== null && !isMapping(cur)) {
      throw new ConfigError(where, [`override ${JSON.stringify(o)}: ${key} is not a mapping`]);
    }
    raw[key] = { ...(cur ?? {}), [sub]: value };
  }
  return fromCli;
}

/**
 * Parses training arguments: YAML text (or an already parsed mapping), then `key=value` overrides. Throws a
 * {@linkcode ConfigError} listing every problem; `where` names the source in the messages.
 */
export function parseTrainArgs(
  input: string | Record<string, unknown>,
  overrides: readonly string[] = [],
  where = "<config>",
): TrainArgs {
  let parsed: unknown = input;
  if (typeof input === "string") {
    try {
      parsed = parseYaml(input);
    } catch (e) {
      throw new ConfigError(where, [`not valid YAML: ${(e as Error).message}`]);
    }
  }
  if (parsed === null || parsed === undefined) parsed = {};
  if (!isMapping(parsed)) {
    const got = Array.isArray(parsed) ? "a list" : `a ${typeof parsed}`;
    throw new ConfigError(where, [`expected a mapping of argument names to values, got ${got}`]);
  }
  const raw: Raw = { ...parsed };
  const fromCli = applyOverrides(raw, overrides, where);
  const problems: string[] = [];
  const warnings: string[] = [];
  const from = (key: string) => (fromCli.has(key) ? " (command line)" : "");

  for (const [old, key] of Object.entries(KEY_ALIASES)) {
    if (!(old in raw)) continue;
    if (key in raw && raw[key] !== raw[old]) {
      problems.push(`${old} and ${key} disagree (${show(raw[old])} vs ${show(raw[key])}); ${old} is ${key}'s old name`);
    } else raw[key] = raw[old];
    delete raw[old];
  }

  const read: Raw = {};
  for (const [key, value] of Object.entries(raw)) {
    const spec = Object.hasOwn(KEYS, key) ? KEYS[key] : undefined;
    if (!spec) {
      const close = closeNames(key, Object.keys(KEYS), 3);
      problems.push(
        `unknown key "${key}"${from(key)}${
          close.length ? `; did you mean ${close.join(", ")}?` : " (not a LLaMA-Factory or Whetstone argument)"
        }`,
      );
    } else if (spec.use === "unsupported") {
      if (!isOff(value, spec.def)) {
        const reset = spec.def === null ? "remove it" : `remove it or set it to ${show(spec.def)}`;
        problems.push(
          `${key} is not supported by Whetstone yet${spec.what ? ` (${spec.what})` : ""}; got ${show(value)}${
            from(key)
          }: ${reset}`,
        );
      }
    } else if (spec.use === "ignored") {
      const rejected = spec.reject?.(value);
      if (rejected) problems.push(`${key}: ${rejected}`);
      const note = typeof spec.note === "function" ? spec.note(value) : isOff(value, spec.def) ? undefined : spec.note;
      if (note) warnings.push(`${key}: ${note}`);
    } else {
      try {
        read[key] = readValue(key, spec, value);
      } catch (e) {
        problems.push((e as Error).message + from(key));
      }
    }
  }
  const out: Raw = {};
  for (const [key, spec] of Object.entries(KEYS)) {
    if (spec.use === "train") out[key] = key in read ? read[key] : structuredClone(spec.def);
  }
  const args = out as unknown as TrainArgs;
  args.warnings = warnings;
  if (problems.length === 0) crossCheck(args, new Set(Object.keys(raw)), problems, warnings);
  if (problems.length) throw new ConfigError(where, problems);
  return args;
}

/** Reads a YAML or JSON config file and parses it with {@linkcode parseTrainArgs} (errors name the file). */
export async function loadTrainConfig(path: string, overrides: readonly string[] = []): Promise<TrainArgs> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound ? "no such file" : (e as Error).message;
    throw new ConfigError(path, [`cannot read the config: ${why}`]);
  }
  return parseTrainArgs(text, overrides, path);
}

/**
 * Splits a `train` command line as llamafactory-cli does: `config.yaml [key=value ...]`, or, without a config file,
 * `--key value` / `--key=value` flags (a bare `--flag` is true) turned into overrides.
 */
export function splitTrainCommand(argv: readonly string[]): { config?: string; overrides: string[] } {
  if (argv.length && /\.(ya?ml|json)$/i.test(argv[0]) && !argv[0].includes("=")) {
    return { config: argv[0], overrides: argv.slice(1) };
  }
  const overrides: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const m = /^--([A-Za-z_][\w.]*)(?:=([\s\S]*))?$/.exec(a);
    if (!m) {
      if (a.includes("=") && !a.startsWith("-")) {
        overrides.push(a);
        continue;
      }
      throw new ConfigError("<command line>", [
        `unexpected argument ${JSON.stringify(a)}: expected config.yaml [key=value ...] or --key value flags`,
      ]);
    }
    if (m[2] !== undefined) overrides.push(`${m[1]}=${m[2]}`);
    else if (i + 1 < argv.length && !argv[i + 1].startsWith("--")) overrides.push(`${m[1]}=${argv[++i]}`);
    else overrides.push(`${m[1]}=true`);
  }
  return { overrides };
}
