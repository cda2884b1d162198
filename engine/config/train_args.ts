/**
 * The types of parsed training arguments and the config error, apart from the parser (`args.ts`) so the cross-field
 * rules (`rules.ts`) can use them without importing the parser that calls them.
 * @module
 */
import type { MixStrategy } from "../data/mix.ts";
import type { Stage } from "../data/process.ts";
import type { LR_SCHEDULERS } from "./keys.ts";

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
