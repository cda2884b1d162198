/**
 * The key table of `deno task train config.yaml`: every argument name LLaMA-Factory's `get_train_args` accepts
 * (its `ModelArguments`, `DataArguments`, `TrainingArguments` — HF `Seq2SeqTrainingArguments` plus LF's fields —,
 * `FinetuningArguments` and `GeneratingArguments`), each with LF's default and what Whetstone does with it, plus
 * Whetstone's own keys. A key is one of:
 *
 * - `train` — a field of `TrainArgs` (args.ts), type-checked and normalised;
 * - `ignored` — accepted and without effect here (workers, loggers, distributed settings, inference back-ends);
 *   some print a note when set to a value that would matter in LF;
 * - `unsupported` — a feature Whetstone lacks yet: any value other than LF's default (or null) is an error naming the
 *   key. To support a feature, move its keys from `unsupported` to `train` and add the fields to `TrainArgs`.
 *
 * Enum keys also list LF values Whetstone lacks yet (`lacking`: `pref_loss: kto_pair`, `finetuning_type: oft`, ...).
 * @module
 */
import { MIX_STRATEGIES } from "../data/mix.ts";

/** How a `train` key's value is checked. */
export type KeyKind =
  | "bool"
  | "int"
  | "num"
  | "str"
  /** A comma list or a YAML list of names → `string[]`. */
  | "list"
  /** A comma list or a YAML list of numbers → `number[]`. */
  | "nums"
  /** A mapping, or a JSON object text (as HF parses dict fields). */
  | "dict"
  /** `resume_from_checkpoint`: a path, true (the last checkpoint of output_dir) or false. */
  | "resume"
  /** One of these strings. */
  | readonly string[];

/** One row of the table. */
export interface KeySpec {
  use: "train" | "ignored" | "unsupported";
  /** LF's default (for `train` keys, the value when the key is absent). */
  def?: unknown;
  kind?: KeyKind;
  /** null is accepted (and kept) even though the default is not null. */
  nullable?: boolean;
  /** Inclusive bounds. */
  min?: number;
  max?: number;
  /** Exclusive bounds. */
  gt?: number;
  lt?: number;
  /** Enum values LF accepts that Whetstone lacks yet. */
  lacking?: readonly string[];
  /** Enum spellings that mean another value (e.g. optimizer names). */
  aliases?: Readonly<Record<string, string>>;
  /** List keys: a lone "all" stays the string "all". */
  all?: boolean;
  /** `unsupported`: the feature, for the error. */
  what?: string;
  /** `ignored`: a note, printed as `key: note`, when the value differs from `def` (or a function deciding). */
  note?: string | ((value: unknown) => string | undefined);
  /** `ignored`: an error for values LF itself refuses in training. */
  reject?: (value: unknown) => string | undefined;
}

type Opts = Omit<KeySpec, "use" | "def" | "kind">;
const T = (kind: KeyKind, def: unknown, o: Opts = {}): KeySpec => ({ use: "train", kind, def, ...o });
const U = (def: unknown, what?: string): KeySpec => ({ use: "unsupported", def, what });
const I = (def?: unknown, note?: KeySpec["note"]): KeySpec => ({ use: "ignored", def, note });
const ignore = (...keys: string[]): Record<string, KeySpec> => Object.fromEntries(keys.map((k) => [k, I()]));
const lack = (what: string, defs: Record<string, unknown>): Record<string, KeySpec> =>
  Object.fromEntries(Object.entries(defs).map(([k, d]) => [k, U(d, what)]));

const F32 = (v: unknown) =>
  v === true ? "Whetstone trains in f32 (f32 master weights and compute); ignored" : undefined;

/** HF `SchedulerType` values; the ones after `cosine_with_min_lr` are lacking. */
export const LR_SCHEDULERS = [
  "linear",
  "cosine",
  "constant",
  "constant_with_warmup",
  "cosine_with_min_lr",
  "cosine_with_restarts",
  "polynomial",
  "inverse_sqrt",
  "reduce_lr_on_plateau",
  "cosine_warmup_with_min_lr",
  "warmup_stable_decay",
] as const;

/** HF optimizer names that are plain AdamW (→ "adamw"). */
const ADAMW = ["adamw_torch", "adamw_torch_fused", "adamw_hf", "adamw_apex_fused", "adamw_torch_xla"];
/** HF `OptimizerNames` that Whetstone lacks yet. */
const LACKING_OPTIM = [
  "adamw_torch_npu_fused",
  "adamw_anyprecision",
  "adamw_torch_4bit",
  "adamw_torch_8bit",
  "adafactor",
  "ademamix",
  "adagrad",
  "adamw_bnb_8bit",
  "adamw_8bit",
  "ademamix_8bit",
  "lion_8bit",
  "lion_32bit",
  "paged_adamw_32bit",
  "paged_adamw_8bit",
  "paged_ademamix_32bit",
  "paged_ademamix_8bit",
  "paged_lion_32bit",
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
];

/** Renamed keys: the old name on the left. */
export const KEY_ALIASES: Readonly<Record<string, string>> = { evaluation_strategy: "eval_strategy" };

/** Every key `train` accepts. */
export const KEYS: Readonly<Record<string, KeySpec>> = {
  // ── ModelArguments ──
  model_name_or_path: T("str", null),
  adapter_name_or_path: T("list", null),
  model_revision: T("str", "main"),
  cache_dir: T("str", null),
  hf_hub_token: T("str", null),
  use_fast_tokenizer: I(true, "Whetstone always uses the fast tokenizer (tokenizer.json); ignored"),
  infer_backend: {
    use: "ignored",
    reject: (v) =>
      v === "huggingface" || v === null ? undefined : "vLLM/SGLang backend is only available for API, CLI and Web.",
  },
  ...ignore("trust_remote_code", "low_cpu_mem_usage", "flash_attn"),
  /** false (LF's default): every decoder layer is activation-checkpointed (recomputed in the backward pass). */
  disable_gradient_checkpointing: T("bool", false),
  ...ignore("use_reentrant_gc", "upcast_layernorm", "upcast_lmhead_output", "offload_folder", "use_kv_cache"),
  ...ignore("infer_dtype", "print_param_status"),
  adapter_folder: U(null),
  resize_vocab: U(false, "resizing the vocabulary"),
  split_special_tokens: U(false, "slow tokenizers"),
  ...lack("adding tokens", { add_tokens: null, add_special_tokens: null, new_special_tokens_config: null }),
  init_special_tokens: U("noise_init", "adding tokens"),
  rope_scaling: U(null, "RoPE scaling"),
  shift_attn: U(false, "LongLoRA S²-Attn"),
  mixture_of_depths: U(null, "mixture-of-depths"),
  ...lack("third-party kernels", { use_unsloth: false, use_unsloth_gc: false, enable_liger_kernel: false }),
  use_v1_kernels: U(false, "third-party kernels"),
  moe_aux_loss_coef: U(null, "mixture-of-experts models"),
  train_from_scratch: U(false),
  ...lack("hub other than Hugging Face", { ms_hub_token: null, om_hub_token: null }),
  // QuantizationArguments
  // QLoRA (engine/nn/quantize.ts): bitsandbytes' 4-bit NF4 / FP4 and 8-bit blockwise formats, quantized at load.
  quantization_method: T(["bnb", "gptq", "awq", "aqlm", "quanto", "eetq", "hqq", "mxfp4", "fp8"], "bnb", {
    lacking: ["gptq", "awq", "aqlm", "quanto", "eetq", "hqq", "mxfp4", "fp8"],
  }),
  quantization_bit: T("int", null),
  quantization_type: T(["nf4", "fp4"], "nf4"),
  double_quantization: T("bool", true),
  quantization_device_map: U(null, "quantization_device_map (the model lives on one executor)"),
  ...lack("FP8 training", { fp8: false, fp8_backend: "auto", fp8_enable_fsdp_float8_all_gather: false }),
  // ProcessorArguments (multimodal only), ExportArguments (`export`), vLLM / SGLang (inference)
  ...ignore("image_max_pixels", "image_min_pixels", "image_do_pan_and_scan", "crop_to_patches", "video_max_pixels"),
  ...ignore("video_min_pixels", "video_fps", "video_maxlen", "use_audio_in_video", "audio_sampling_rate"),
  ...ignore("export_dir", "export_size", "export_device", "export_quantization_bit", "export_quantization_dataset"),
  ...ignore("export_quantization_nsamples", "export_quantization_maxlen", "export_legacy_format"),
  ...ignore("export_hub_model_id", "vllm_maxlen", "vllm_gpu_util", "vllm_enforce_eager", "vllm_max_lora_rank"),
  ...ignore("vllm_config", "sglang_maxlen", "sglang_mem_fraction", "sglang_tp_size", "sglang_config"),
  ...ignore("sglang_lora_backend", "cpu_infer", "chunk_size", "mode", "kt_maxlen", "kt_use_cuda_graph", "kt_mode"),
  ...ignore("kt_force_think"),
  ...lack("KTransformers", { use_kt: false, kt_optimize_rule: null }),

  // ── DataArguments (names and defaults as engine/data/loader.ts and process.ts take them) ──
  template: T("str", null),
  dataset: T("list", null),
  eval_dataset: T("list", null),
  dataset_dir: T("str", "data"),
  cutoff_len: T("int", 2048, { min: 1 }),
  train_on_prompt: T("bool", false),
  mask_history: T("bool", false),
  streaming: T("bool", false),
  mix_strategy: T(MIX_STRATEGIES, "concat"),
  interleave_probs: T("nums", null),
  preprocessing_batch_size: T("int", 1000, { min: 1 }),
  max_samples: T("int", null, { min: 1 }),
  val_size: T("num", 0, { min: 0 }),
  packing: T("bool", null),
  neat_packing: T("bool", false),
  tool_format: T("str", null),
  default_system: T("str", null),
  enable_thinking: T("bool", true, { nullable: true }),
  preserve_thinking: T("bool", false),
  media_dir: I(null, "images, videos and audios are not supported yet; ignored"),
  buffer_size: I(16384, "streaming reads the datasets in order (no shuffle buffer); ignored"),
  ...ignore("overwrite_cache", "preprocessing_num_workers", "data_shared_file_system", "eval_num_beams"),
  ignore_pad_token_for_loss: U(true),
  eval_on_each_dataset: U(false, "per-dataset evaluation"),
  tokenized_path: U(null, "saved tokenized datasets; `deno task preprocess` writes JSONL instead"),

  // ── FinetuningArguments ──
  stage: T(["pt", "sft", "rm", "ppo", "dpo", "kto"], "sft"),
  finetuning_type: T(["lora", "oft", "freeze", "full"], "lora", { lacking: ["oft"] }),
  freeze_trainable_layers: T("int", 2),
  freeze_trainable_modules: T("list", "all", { all: true }),
  freeze_extra_modules: T("list", null),
  lora_rank: T("int", 8, { min: 1 }),
  lora_alpha: T("num", null, { min: 0 }),
  lora_dropout: T("num", 0, { min: 0, lt: 1 }),
  lora_target: T("list", "all", { all: true }),
  additional_target: T("list", null),
  loraplus_lr_ratio: T("num", null, { gt: 0 }),
  loraplus_lr_embedding: T("num", 1e-6, { min: 0 }),
  use_rslora: T("bool", false),
  use_dora: T("bool", false),
  pissa_init: T("bool", false),
  pissa_iter: T("int", 16, { min: -1 }),
  pissa_convert: T("bool", false),
  create_new_adapter: T("bool", false),
  plot_loss: T("bool", false),
  disable_shuffling: T("bool", false),
  pure_bf16: I(false, F32),
  include_effective_tokens_per_second: I(false, "effective tokens per second are not logged yet; ignored"),
  ...ignore("freeze_vision_tower", "freeze_multi_modal_projector", "freeze_language_model"),
  use_swanlab: I(false, "SwanLab is not available (Whetstone writes trainer_log.jsonl); ignored"),
  ...ignore("swanlab_project", "swanlab_workspace", "swanlab_run_name", "swanlab_mode", "swanlab_api_key"),
  ...ignore("swanlab_logdir", "swanlab_lark_webhook_url", "swanlab_lark_secret"),
  ...lack("OFT", { oft_rank: 0, oft_block_size: 32, oft_target: "all", module_dropout: 0 }),
  // RLHFArguments (stages rm, dpo, kto, ppo: engine/train/stages/)
  pref_beta: T("num", 0.1, { gt: 0 }),
  pref_ftx: T("num", 0, { min: 0 }),
  pref_bco_weight: U(0, "BCO"),
  pref_loss: T(["sigmoid", "hinge", "ipo", "kto_pair", "orpo", "simpo"], "sigmoid", { lacking: ["kto_pair"] }),
  dpo_label_smoothing: T("num", 0, { min: 0, max: 0.5 }),
  kto_chosen_weight: T("num", 1, { min: 0 }),
  kto_rejected_weight: T("num", 1, { min: 0 }),
  simpo_gamma: T("num", 0.5, { min: 0 }),
  ld_alpha: U(null, "LD-DPO"),
  ppo_buffer_size: T("int", 1, { min: 1 }),
  ppo_epochs: T("int", 4, { min: 1 }),
  ppo_score_norm: T("bool", false),
  ppo_target: T("num", 6, { gt: 0 }),
  ppo_whiten_rewards: T("bool", false),
  ref_model: T("str", null),
  ref_model_adapters: T("list", null),
  ref_model_quantization_bit: U(null, "on-the-fly quantization / QLoRA"),
  reward_model: T("str", null),
  reward_model_adapters: T("list", null),
  reward_model_quantization_bit: U(null, "on-the-fly quantization / QLoRA"),
  reward_model_type: T(["lora", "full", "api"], "lora", { lacking: ["api"] }),
  // GaLore (engine/optim/galore.ts)
  use_galore: T("bool", false),
  galore_target: T("list", "all", { all: true }),
  galore_rank: T("int", 16, { min: 1 }),
  galore_update_interval: T("int", 200, { min: 1 }),
  galore_scale: T("num", 2, { gt: 0 }),
  galore_proj_type: T(["std", "reverse_std", "right", "left", "full"], "std"),
  galore_layerwise: U(false, "layer-wise GaLore"),
  ...lack("APOLLO", {
    use_apollo: false,
    apollo_target: "all",
    apollo_rank: 16,
    apollo_update_interval: 200,
    apollo_scale: 32,
    apollo_proj: "random",
    apollo_proj_type: "std",
    apollo_scale_type: "channel",
    apollo_layerwise: false,
    apollo_scale_front: false,
  }),
  // BAdam, layer mode (engine/optim/badam.ts)
  use_badam: T("bool", false),
  badam_mode: T(["layer", "ratio"], "layer", { lacking: ["ratio"] }),
  badam_start_block: T("int", null, { min: 0 }),
  badam_switch_mode: T(["ascending", "descending", "random", "fixed"], "ascending"),
  badam_switch_interval: T("int", 50, { min: 1 }),
  ...lack("BAdam ratio mode", { badam_update_ratio: 0.05, badam_mask_mode: "adjacent" }),
  badam_verbose: I(0),
  use_llama_pro: U(false, "LLaMA Pro"),
  use_adam_mini: U(false, "Adam-mini"),
  use_muon: U(false, "Muon"),
  ...lack("alternative SFT losses", {
    use_dft_loss: false,
    use_asft_loss: false,
    asft_alpha: 0.1,
    use_eaft_loss: false,
    eaft_alpha: 1,
  }),
  ...lack("distributed back-ends", {
    use_mca: false,
    use_megatron_bridge: false,
    use_hyper_parallel: false,
    hyper_parallel_args: null,
    hyper_parallel_cp_size: 1,
  }),
  compute_accuracy: U(false, "token accuracy at evaluation"),
  early_stopping_steps: U(null, "early stopping"),

  // ── GeneratingArguments (do_predict with predict_with_generate: engine/train/predict.ts) ──
  do_sample: T("bool", true),
  temperature: T("num", 0.95, { min: 0 }),
  top_p: T("num", 0.7, { min: 0, max: 1 }),
  top_k: T("int", 50, { min: 0 }),
  num_beams: U(1, "beam search"),
  max_length: T("int", 1024),
  max_new_tokens: T("int", 1024),
  repetition_penalty: T("num", 1, { gt: 0 }),
  length_penalty: I(1, "only beam search uses it; ignored"),
  skip_special_tokens: T("bool", true),

  // ── TrainingArguments (HF Seq2SeqTrainingArguments + LF) ──
  output_dir: T("str", "trainer_output"),
  overwrite_output_dir: T("bool", false),
  do_train: T("bool", false),
  do_eval: T("bool", false),
  per_device_train_batch_size: T("int", 8, { min: 1 }),
  per_device_eval_batch_size: T("int", 8, { min: 1 }),
  gradient_accumulation_steps: T("int", 1, { min: 1 }),
  learning_rate: T("num", 5e-5, { min: 0 }),
  num_train_epochs: T("num", 3, { min: 0 }),
  max_steps: T("int", -1, { min: -1 }),
  lr_scheduler_type: T(LR_SCHEDULERS, "linear", { lacking: LR_SCHEDULERS.slice(5) }),
  lr_scheduler_kwargs: T("dict", {}, { nullable: true }),
  warmup_ratio: T("num", 0, { min: 0, max: 1 }),
  warmup_steps: T("num", 0, { min: 0 }),
  weight_decay: T("num", 0, { min: 0 }),
  adam_beta1: T("num", 0.9, { min: 0, lt: 1 }),
  adam_beta2: T("num", 0.999, { min: 0, lt: 1 }),
  adam_epsilon: T("num", 1e-8, { min: 0 }),
  max_grad_norm: T("num", 1, { min: 0 }),
  optim: T(["adamw", "sgd", ...LACKING_OPTIM], "adamw", {
    lacking: LACKING_OPTIM,
    aliases: Object.fromEntries(ADAMW.map((n) => [n, "adamw"])),
  }),
  seed: T("int", 42),
  data_seed: T("int", null),
  bf16: T("bool", false),
  fp16: T("bool", false),
  logging_strategy: T(["no", "steps", "epoch"], "steps"),
  logging_steps: T("num", 500, { min: 0 }),
  logging_first_step: T("bool", false),
  logging_nan_inf_filter: T("bool", true),
  save_strategy: T(["no", "steps", "epoch", "best"], "steps", { lacking: ["best"] }),
  save_steps: T("num", 500, { min: 0 }),
  save_total_limit: T("int", null),
  save_only_model: T("bool", false),
  eval_strategy: T(["no", "steps", "epoch"], "no"),
  eval_steps: T("num", null, { min: 0 }),
  resume_from_checkpoint: T("resume", null),
  report_to: I("none", (v) => {
    const list = (Array.isArray(v) ? v : [v]).filter((x) => x !== null && x !== "none");
    return list.length ? `Whetstone writes only trainer_log.jsonl, not to ${JSON.stringify(v)}; ignored` : undefined;
  }),
  gradient_checkpointing: I(
    false,
    "LF sets it from disable_gradient_checkpointing (default false: checkpointing on); use that key; ignored",
  ),
  include_num_input_tokens_seen: I(
    false,
    (v) => v && v !== "no" ? "throughput and total_tokens are not logged yet; ignored" : undefined,
  ),
  include_tokens_per_second: I(false, "tokens per second are not logged yet; ignored"),
  save_safetensors: I(true, "Whetstone always saves safetensors; ignored"),
  use_cpu: I(false, "Whetstone runs on WebGPU (`executor: reference` is the slow f64 oracle); ignored"),
  bf16_full_eval: I(false, F32),
  fp16_full_eval: I(false, F32),
  tf32: I(null, (v) => (v === true ? "Whetstone computes in f32; ignored" : undefined)),
  torch_compile: I(false, "Whetstone plans and fuses its graphs itself; ignored"),
  ...ignore("torch_compile_backend", "torch_compile_mode", "ddp_timeout", "ddp_backend", "ddp_find_unused_parameters"),
  ...ignore("ddp_bucket_cap_mb", "ddp_broadcast_buffers", "dataloader_num_workers", "dataloader_pin_memory"),
  ...ignore("dataloader_persistent_workers", "dataloader_prefetch_factor", "remove_unused_columns", "label_names"),
  ...ignore("log_level", "log_level_replica", "log_on_each_node", "logging_dir", "disable_tqdm", "run_name"),
  ...ignore("project", "trackio_space_id", "skip_memory_metrics", "debug", "local_rank", "no_cuda", "use_mps_device"),
  ...ignore("save_on_each_node", "full_determinism", "accelerator_config", "prediction_loss_only", "past_index"),
  ...ignore("eval_accumulation_steps", "eval_do_concat_batches", "eval_use_gather_object", "batch_eval_metrics"),
  ...ignore("include_inputs_for_metrics", "include_for_metrics", "torch_empty_cache_steps", "use_cache"),
  ...ignore("average_tokens_across_devices", "enable_jit_checkpoint", "restore_callback_states_from_checkpoint"),
  ...ignore("hub_model_id", "hub_strategy", "hub_token", "hub_private_repo", "hub_always_push", "hub_revision"),
  ...ignore("push_to_hub_model_id", "push_to_hub_organization", "push_to_hub_token", "fp16_opt_level"),
  ...ignore("half_precision_backend", "fp16_backend", "jit_mode_eval", "use_ipex", "tpu_num_cores"),
  ...ignore("tpu_metrics_debug", "mp_parameters", "torchdynamo", "ray_scope", "split_batches", "dispatch_batches"),
  ...ignore("use_legacy_prediction_loop", "length_column_name", "gradient_checkpointing_kwargs", "sortish_sampler"),
  ...ignore("generation_max_length", "generation_num_beams", "generation_config"),
  // LF: Ray (USE_RAY=1) and the torch profiler
  ...ignore("ray_run_name", "ray_storage_path", "ray_storage_filesystem", "ray_num_workers", "resources_per_worker"),
  ...ignore("placement_strategy", "ray_init_kwargs", "master_addr", "master_port", "enable_torch_profiler"),
  ...ignore("profiler_output_dir", "profiler_wait_steps", "profiler_warmup_steps", "profiler_active_steps"),
  ...ignore("profiler_repeat", "profiler_record_shapes", "profiler_profile_memory", "profiler_with_stack"),
  do_predict: T("bool", false),
  predict_with_generate: T("bool", false),
  load_best_model_at_end: U(false, "best-checkpoint tracking"),
  metric_for_best_model: U(null, "best-checkpoint tracking"),
  greater_is_better: U(null, "best-checkpoint tracking"),
  eval_delay: U(0, "delayed evaluation"),
  eval_on_start: U(false, "evaluation before training"),
  dataloader_drop_last: U(false),
  ignore_data_skip: U(false),
  group_by_length: U(false, "length-grouped sampling"),
  train_sampling_strategy: U("random", "other sampling strategies"),
  auto_find_batch_size: U(false),
  label_smoothing_factor: U(0, "label smoothing"),
  neftune_noise_alpha: U(null, "NEFTune"),
  optim_args: U(null),
  optim_target_modules: U(null),
  adafactor: U(false, "Adafactor"),
  use_liger_kernel: U(false, "third-party kernels"),
  liger_kernel_config: U(null, "third-party kernels"),
  push_to_hub: U(false, "pushing to the hub"),
  deepspeed: U(null, "DeepSpeed; Whetstone trains on one device"),
  ...lack("FSDP; Whetstone trains on one device", {
    fsdp: null,
    fsdp_config: null,
    fsdp_min_num_params: 0,
    fsdp_transformer_layer_cls_to_wrap: null,
  }),
  parallelism_config: U(null, "parallelism"),

  // ── Whetstone ──
  /**
   * Where the graphs run: "auto" (WebGPU on a hardware adapter, ONNX Runtime on a software one or none),
   * "webgpu" (the WGSL kernels), "onnx" (onnxruntime-node on the CPU) or "reference" (the f64 oracle, slow).
   */
  executor: T(["auto", "webgpu", "onnx", "reference"], "auto"),
  /** Sequence lengths are padded up to a multiple of this (one traced graph per length). */
  bucket: T("int", 64, { min: 1 }),
};
