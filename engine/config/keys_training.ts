/**
 * The keys of HF `Seq2SeqTrainingArguments` as LLaMA-Factory takes them (its `TrainingArguments`).
 * Rows as described in `key_spec.ts`; the whole table is `KEYS` in `keys.ts`.
 * @module
 */
import { F32, I, ignore, lack, T, typed, U } from "./key_spec.ts";

/** HF's `lr_scheduler_kwargs` (each schedule's keys: `SCHEDULER_KWARGS` in schedulers.ts). */
export interface LrSchedulerKwargs {
  num_cycles?: number;
  min_lr?: number;
  min_lr_rate?: number;
  warmup_lr_rate?: number;
  lr_end?: number;
  power?: number;
  timescale?: number;
  num_decay_steps?: number;
  num_stable_steps?: number;
  warmup_type?: string;
  decay_type?: string;
  min_lr_ratio?: number;
  mode?: string;
  factor?: number;
  patience?: number;
  threshold?: number;
  threshold_mode?: string;
  cooldown?: number;
  eps?: number;
}

/** The HF `SchedulerType` values Whetstone has. */
const SCHEDULERS = [
  "linear",
  "cosine",
  "constant",
  "constant_with_warmup",
  "cosine_with_min_lr",
  "cosine_with_restarts",
  "polynomial",
  "inverse_sqrt",
  "reduce_lr_on_plateau",
  "warmup_stable_decay",
  "cosine_warmup_with_min_lr",
] as const;
/** The HF `SchedulerType` values Whetstone computes (not transformers' `greedy`). */
export const LR_SCHEDULERS = SCHEDULERS;

/** The `optim` values Whetstone runs (canonical names; see the aliases). */
export const OPTIMS = ["adamw", "sgd", "adafactor", "lion_32bit", "adamw_8bit"] as const;
/** One of {@link OPTIMS}. */
export type OptimName = typeof OPTIMS[number];

/**
 * HF optimizer names that are plain AdamW (→ "adamw"): torch's, its fused kernels (CUDA, NPU, apex, XLA: the same math
 * in fewer launches) and bitsandbytes' 32-bit paged AdamW (the same update; paging moves its states between GPU and CPU
 * memory under CUDA, a warning says so).
 */
const ADAMW = [
  "adamw_torch",
  "adamw_torch_fused",
  "adamw_torch_npu_fused",
  "adamw_hf",
  "adamw_apex_fused",
  "adamw_torch_xla",
  "paged_adamw_32bit",
] as const;
/** HF `OptimizerNames` that Whetstone lacks yet. */
const LACKING_OPTIM = [
  "adamw_anyprecision",
  "adamw_torch_4bit",
  "adamw_torch_8bit",
  "ademamix",
  "adagrad",
  "ademamix_8bit",
  "lion_8bit",
  "paged_ademamix_32bit",
  "paged_ademamix_8bit",
  "paged_lion_8bit",
  "rmsprop",
  "rmsprop_bnb",
  "rmsprop_bnb_8bit",
  "rmsprop_bnb_32bit",
  "galore_adamw",
  "galore_adamw_8bit",
  "galore_adafactor",
  "galore_adamw_layerwise",
  "galore_adamw_8bit_layerwise",
  "galore_adafactor_layerwise",
  "lomo",
  "adalomo",
  "grokadamw",
  "schedule_free_radam",
  "schedule_free_adamw",
  "schedule_free_sgd",
  "apollo_adamw",
  "apollo_adamw_layerwise",
  "stable_adamw",
] as const;

/** The training group. */
export const TRAINING_KEYS = {
  output_dir: T("str", "trainer_output"),
  overwrite_output_dir: T("bool", false),
  do_train: T("bool", false),
  /** True when eval_strategy is not "no" (as HF sets it). */
  do_eval: T("bool", false),
  per_device_train_batch_size: T("int", 8, { min: 1 }),
  per_device_eval_batch_size: T("int", 8, { min: 1 }),
  gradient_accumulation_steps: T("int", 1, { min: 1 }),
  learning_rate: T("num", 5e-5, { min: 0 }),
  num_train_epochs: T("num", 3, { min: 0 }),
  /** > 0 overrides num_train_epochs. */
  max_steps: T("int", -1, { min: -1 }),
  lr_scheduler_type: T(LR_SCHEDULERS, "linear"),
  lr_scheduler_kwargs: typed<LrSchedulerKwargs>()(T("dict", {}, { nullable: true })),
  warmup_ratio: T("num", 0, { min: 0, max: 1 }),
  /** > 0 overrides warmup_ratio; below 1 it is itself a ratio (transformers 5) (warmupSteps in rules.ts). */
  warmup_steps: T("num", 0, { min: 0 }),
  weight_decay: T("num", 0, { min: 0 }),
  adam_beta1: T("num", 0.9, { min: 0, lt: 1 }),
  adam_beta2: T("num", 0.999, { min: 0, lt: 1 }),
  adam_epsilon: T("num", 1e-8, { min: 0 }),
  /** 0 disables clipping. */
  max_grad_norm: T("num", 1, { min: 0 }),
  optim: T([...OPTIMS, ...LACKING_OPTIM], "adamw", {
    lacking: LACKING_OPTIM,
    // bitsandbytes' paged optimizers page their states between devices: the same update. adamw_8bit is HF's alias of
    // adamw_bnb_8bit.
    aliases: {
      ...Object.fromEntries(ADAMW.map((n) => [n, "adamw"])),
      paged_lion_32bit: "lion_32bit",
      adamw_bnb_8bit: "adamw_8bit",
      paged_adamw_8bit: "adamw_8bit",
    },
  }),
  seed: T("int", 42),
  /** The seed of the training data order (HF's sampler seed); null: `seed`. */
  data_seed: T("int", null),
  bf16: T("bool", false, { inert: "compute stays f32 (WGSL has no bf16 arithmetic)" }),
  fp16: T("bool", false),
  logging_strategy: T(["no", "steps", "epoch"], "steps"),
  /** Below 1: a ratio of the total steps (resolveSteps in intervals.ts). */
  logging_steps: T("num", 500, { min: 0 }),
  logging_first_step: T("bool", false),
  logging_nan_inf_filter: T("bool", true, { inert: "the logged loss is the mean of the losses as computed" }),
  save_strategy: T(["no", "steps", "epoch", "best"], "steps", { lacking: ["best"] }),
  /** Below 1: a ratio of the total steps (resolveSteps in intervals.ts). */
  save_steps: T("num", 500, { min: 0 }),
  /** Checkpoints kept (older ones are deleted); null or <= 0: all. */
  save_total_limit: T("int", null),
  /** Checkpoints without optimizer states (they cannot be resumed from, as in HF). */
  save_only_model: T("bool", false),
  eval_strategy: T(["no", "steps", "epoch"], "no"),
  /** null with eval_strategy "steps" becomes logging_steps; below 1: a ratio of the total steps. */
  eval_steps: T("num", null, { min: 0 }),
  /** A checkpoint folder, true (the last checkpoint in output_dir), false (never resume) or null (resume when output_dir holds checkpoints, as LF does). Resolved by checkOutputDir. */
  resume_from_checkpoint: T("resume", null),
  /** Trackers (HF's integrations): tensorboard writes event files (train/trackers.ts); the others get a note. */
  report_to: T("list", ["none"], { nullable: true }),
  /** TensorBoard's folder; null: output_dir/runs/<date>_<host> (HF's default_logdir). */
  logging_dir: T("str", null),
  gradient_checkpointing: I(
    false,
    "LF sets it from disable_gradient_checkpointing (default false: checkpointing on); use that key; ignored",
  ),
  include_num_input_tokens_seen: I(
    false,
    (v) => v && v !== "no" ? "throughput and total_tokens are not logged yet; ignored" : undefined,
    "throughput and total_tokens are not logged yet",
  ),
  include_tokens_per_second: I(false, "tokens per second are not logged yet; ignored"),
  save_safetensors: I(true, "Whetstone always saves safetensors; ignored"),
  use_cpu: I(false, "Whetstone runs on WebGPU (`executor: reference` is the slow f64 oracle); ignored"),
  bf16_full_eval: I(false, F32, "Whetstone trains in f32 (f32 master weights and compute)"),
  fp16_full_eval: I(false, F32, "Whetstone trains in f32 (f32 master weights and compute)"),
  tf32: I(null, (v) => (v === true ? "Whetstone computes in f32; ignored" : undefined), "Whetstone computes in f32"),
  torch_compile: I(false, "Whetstone plans and fuses its graphs itself; ignored"),
  ...ignore(
    "torch.compile and distributed (DDP) settings; Whetstone trains on one device and plans its own graphs",
    "torch_compile_backend",
    "torch_compile_mode",
    "ddp_timeout",
    "ddp_backend",
    "ddp_find_unused_parameters",
  ),
  ...ignore(
    "distributed and data-loader worker settings; Whetstone trains on one device, data in memory",
    "ddp_bucket_cap_mb",
    "ddp_broadcast_buffers",
    "dataloader_num_workers",
    "dataloader_pin_memory",
  ),
  ...ignore(
    "data-loader settings; Whetstone batches in memory",
    "dataloader_persistent_workers",
    "dataloader_prefetch_factor",
    "remove_unused_columns",
    "label_names",
  ),
  ...ignore(
    "HF logging and run naming; Whetstone writes trainer_log.jsonl",
    "log_level",
    "log_level_replica",
    "log_on_each_node",
    "disable_tqdm",
    "run_name",
  ),
  ...ignore(
    "tracking, debugging and device-selection settings of HF",
    "project",
    "trackio_space_id",
    "skip_memory_metrics",
    "debug",
    "local_rank",
    "no_cuda",
    "use_mps_device",
  ),
  ...ignore(
    "multi-node and evaluation-gathering settings of HF",
    "save_on_each_node",
    "full_determinism",
    "accelerator_config",
    "prediction_loss_only",
    "past_index",
  ),
  ...ignore(
    "evaluation-gathering settings of HF; Whetstone sums evaluation losses on the device",
    "eval_accumulation_steps",
    "eval_do_concat_batches",
    "eval_use_gather_object",
    "batch_eval_metrics",
  ),
  ...ignore(
    "metric inputs and cache settings of HF",
    "include_inputs_for_metrics",
    "include_for_metrics",
    "torch_empty_cache_steps",
    "use_cache",
  ),
  ...ignore(
    "multi-device and callback-state settings of HF",
    "average_tokens_across_devices",
    "enable_jit_checkpoint",
    "restore_callback_states_from_checkpoint",
  ),
  ...ignore(
    "pushing to the hub (push_to_hub is an error naming the key)",
    "hub_model_id",
    "hub_strategy",
    "hub_token",
    "hub_private_repo",
    "hub_always_push",
    "hub_revision",
  ),
  ...ignore(
    "pushing to the hub, and apex / fp16 back-end settings",
    "push_to_hub_model_id",
    "push_to_hub_organization",
    "push_to_hub_token",
    "fp16_opt_level",
  ),
  ...ignore(
    "mixed-precision back-ends and accelerators of torch",
    "half_precision_backend",
    "fp16_backend",
    "jit_mode_eval",
    "use_ipex",
    "tpu_num_cores",
  ),
  ...ignore(
    "TPU, model-parallel and accelerate settings",
    "tpu_metrics_debug",
    "mp_parameters",
    "torchdynamo",
    "ray_scope",
    "split_batches",
    "dispatch_batches",
  ),
  ...ignore(
    "HF prediction-loop and sampler details",
    "use_legacy_prediction_loop",
    "length_column_name",
    "gradient_checkpointing_kwargs",
    "sortish_sampler",
  ),
  ...ignore(
    "Seq2SeqTrainer's generation settings; prediction uses the generating keys (max_new_tokens, ...)",
    "generation_max_length",
    "generation_num_beams",
    "generation_config",
  ),
  // LF: Ray (USE_RAY=1) and the torch profiler
  ...ignore(
    "Ray (USE_RAY=1) settings; Whetstone runs in one process",
    "ray_run_name",
    "ray_storage_path",
    "ray_storage_filesystem",
    "ray_num_workers",
    "resources_per_worker",
  ),
  ...ignore(
    "Ray settings and the torch profiler",
    "placement_strategy",
    "ray_init_kwargs",
    "master_addr",
    "master_port",
    "enable_torch_profiler",
  ),
  ...ignore(
    "the torch profiler",
    "profiler_output_dir",
    "profiler_wait_steps",
    "profiler_warmup_steps",
    "profiler_active_steps",
  ),
  ...ignore(
    "the torch profiler",
    "profiler_repeat",
    "profiler_record_shapes",
    "profiler_profile_memory",
    "profiler_with_stack",
  ),
  do_predict: T("bool", false),
  predict_with_generate: T("bool", false),
  /** Ends the run with the weights of the best checkpoint (train/best_model.ts). */
  load_best_model_at_end: T("bool", false),
  /** The evaluation metric of the best model ("loss" under load_best_model_at_end when unset). */
  metric_for_best_model: T("str", null),
  /** null: the metric's name does not end in "loss" (HF). */
  greater_is_better: T("bool", null),
  eval_delay: U(0, "delayed evaluation"),
  /** An evaluation before the first step (HF's `eval_on_start`). */
  eval_on_start: T("bool", false),
  dataloader_drop_last: U(false),
  ignore_data_skip: U(false),
  group_by_length: T("bool", false),
  train_sampling_strategy: U("random", "other sampling strategies"),
  auto_find_batch_size: U(false),
  label_smoothing_factor: U(0, "label smoothing"),
  /** NEFTune noise on the input embeddings in training (engine/nn/neftune.ts). */
  neftune_noise_alpha: T("num", null, { gt: 0 }),
  /** HF's "key=value,..." text; `optim: sgd` reads momentum, dampening, nesterov (config/optim_args.ts). */
  optim_args: T("str", null),
  optim_target_modules: U(null),
  adafactor: U(false, "Adafactor"),
  use_liger_kernel: U(false, "third-party kernels"),
  liger_kernel_config: U(null, "third-party kernels"),
  push_to_hub: U(false, "pushing to the hub"),
  /** A DeepSpeed config file: on one device the run goes ahead without it, with a note (config/deepspeed.ts). */
  deepspeed: T("str", null),
  ...lack("FSDP; Whetstone trains on one device", {
    fsdp: null,
    fsdp_config: null,
    fsdp_min_num_params: 0,
    fsdp_transformer_layer_cls_to_wrap: null,
  }),
  parallelism_config: U(null, "parallelism"),
};
