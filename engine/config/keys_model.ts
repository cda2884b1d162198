/**
 * The keys of LLaMA-Factory's `ModelArguments` (with its quantization, processor, export and inference-engine arguments).
 * Rows as described in `key_spec.ts`; the whole table is `KEYS` in `keys.ts`.
 * @module
 */
import { I, ignore, lack, T, typed, U } from "./key_spec.ts";

/** The model group. */
export const MODEL_KEYS = {
  /** A local HF model folder or a hub model id (required). */
  model_name_or_path: typed<string>()(T("str", null)),
  /** Adapters to load: all but the last are merged, the last is trained on (unless create_new_adapter). */
  adapter_name_or_path: T("list", null),
  model_revision: T("str", "main"),
  /** Root of the hub download cache (default $WHETSTONE_CACHE/hub, else ~/.cache/whetstone/hub). */
  cache_dir: T("str", null),
  /** The bearer token of hub downloads (default $HF_TOKEN). */
  hf_hub_token: T("str", null),
  use_fast_tokenizer: I(true, "Whetstone always uses the fast tokenizer (tokenizer.json); ignored"),
  infer_backend: {
    use: "ignored" as const,
    reject: (v: unknown) =>
      v === "huggingface" || v === null ? undefined : "vLLM/SGLang backend is only available for API, CLI and Web.",
  },
  ...ignore(
    "remote code, low-memory loading and attention kernels of transformers; Whetstone has its own loader and kernels",
    "trust_remote_code",
    "low_cpu_mem_usage",
    "flash_attn",
  ),
  /** false (LF's default): every decoder layer is activation-checkpointed (recomputed in the backward pass). */
  disable_gradient_checkpointing: T("bool", false),
  ...ignore(
    "transformers model-loading details; Whetstone has its own loader",
    "use_reentrant_gc",
    "upcast_layernorm",
    "upcast_lmhead_output",
    "offload_folder",
    "use_kv_cache",
  ),
  ...ignore("inference-engine settings (chat and API use the loaded dtype)", "infer_dtype", "print_param_status"),
  adapter_folder: U(null),
  // Vocabulary growth (engine/nn/vocab.ts, engine/train/vocab_run.ts), as LLaMA-Factory's patch_tokenizer and
  // resize_embedding_layer: tokens join the tokenizer, the embedding (and untied head) grow, embeddings train.
  /** Resize the embedding (and untied head) to the tokenizer, padded to 64; set by itself when tokens are added. */
  resize_vocab: T("bool", false),
  split_special_tokens: U(false, "slow tokenizers"),
  /** Non-special tokens to add to the tokenizer (comma list). */
  add_tokens: T("list", null),
  /** Special tokens to add to the tokenizer (comma list). */
  add_special_tokens: T("list", null),
  /** A YAML file mapping new special tokens to descriptions; its tokens replace add_special_tokens. */
  new_special_tokens_config: T("str", null),
  /**
   * How new embedding rows start: noisy mean of the old rows, the mean embedding of each description (with noise or
   * not), the plain mean, or noise alone. LF's newest names are aliases of its earlier ones (INIT_METHOD_ALIASES).
   */
  init_special_tokens: T(["noise_init", "desc_init", "desc_init_w_noise", "vocab_mean", "noise"], "noise_init", {
    aliases: { vocab_mean_noise: "noise_init", description: "desc_init", description_noise: "desc_init_w_noise" },
  }),
  /** LF's newest: a gradient mask so only the new embedding rows train. */
  freeze_original_embeddings: U(false, "training only the new embedding rows"),
  /** RoPE scaling applied to config.json as LLaMA-Factory's configure_rope does (engine/nn/rope_lf.ts). */
  rope_scaling: T(["linear", "dynamic", "yarn", "llama3"], null),
  /** LongLoRA S²-attention in training (llama models; engine/nn/longlora.ts). */
  shift_attn: T("bool", false),
  mixture_of_depths: U(null, "mixture-of-depths"),
  ...lack("third-party kernels", { use_unsloth: false, use_unsloth_gc: false, enable_liger_kernel: false }),
  use_v1_kernels: U(false, "third-party kernels"),
  /**
   * Mixture-of-experts models (mixtral, qwen2_moe, qwen3_moe): when set, the router's load-balancing loss times this
   * coefficient is added to each micro-batch's training loss (output_router_logits on, as LLaMA-Factory's configure_moe).
   * deepseek_v3 and glm4_moe ignore it, as configure_moe does (transformers computes no router loss for them).
   */
  moe_aux_loss_coef: T("num", null, { min: 0 }),
  train_from_scratch: U(false),
  ...lack("hub other than Hugging Face", { ms_hub_token: null, om_hub_token: null }),
  // QuantizationArguments
  // QLoRA (engine/nn/quantize.ts): bitsandbytes' 4-bit NF4 / FP4 and 8-bit blockwise formats, quantized at load.
  quantization_method: T(["bnb", "gptq", "awq", "aqlm", "quanto", "eetq", "hqq", "mxfp4", "fp8"], "bnb", {
    lacking: ["gptq", "awq", "aqlm", "quanto", "eetq", "hqq", "mxfp4", "fp8"],
  }),
  /** 4 or 8: the base linears are quantized at load (LoRA only); null: not quantized. */
  quantization_bit: T("int", null),
  quantization_type: T(["nf4", "fp4"], "nf4"),
  double_quantization: T("bool", true),
  quantization_device_map: U(null, "quantization_device_map (the model lives on one executor)"),
  ...lack("FP8 training", { fp8: false, fp8_backend: "auto", fp8_enable_fsdp_float8_all_gather: false }),
  // ProcessorArguments (multimodal only), ExportArguments (`export`), vLLM / SGLang (inference)
  ...ignore(
    "multimodal inputs (images, videos, audio); Whetstone trains text decoders",
    "image_max_pixels",
    "image_min_pixels",
    "image_do_pan_and_scan",
    "crop_to_patches",
    "video_max_pixels",
  ),
  ...ignore(
    "multimodal inputs (images, videos, audio); Whetstone trains text decoders",
    "video_min_pixels",
    "video_fps",
    "video_maxlen",
    "use_audio_in_video",
    "audio_sampling_rate",
  ),
  ...ignore(
    "`llamafactory-cli export` keys; `deno task export` takes its own arguments",
    "export_dir",
    "export_size",
    "export_device",
    "export_quantization_bit",
    "export_quantization_dataset",
  ),
  ...ignore(
    "`llamafactory-cli export` keys; `deno task export` takes its own arguments",
    "export_quantization_nsamples",
    "export_quantization_maxlen",
    "export_legacy_format",
  ),
  ...ignore(
    "export and vLLM inference-engine keys, unused in training",
    "export_hub_model_id",
    "vllm_maxlen",
    "vllm_gpu_util",
    "vllm_enforce_eager",
    "vllm_max_lora_rank",
  ),
  ...ignore(
    "vLLM / SGLang inference-engine keys, unused in training",
    "vllm_config",
    "sglang_maxlen",
    "sglang_mem_fraction",
    "sglang_tp_size",
    "sglang_config",
  ),
  ...ignore(
    "SGLang / KTransformers inference-engine keys, unused in training",
    "sglang_lora_backend",
    "cpu_infer",
    "chunk_size",
    "mode",
    "kt_maxlen",
    "kt_use_cuda_graph",
    "kt_mode",
  ),
  ...ignore("KTransformers inference-engine keys, unused in training", "kt_force_think"),
  ...lack("KTransformers", { use_kt: false, kt_optimize_rule: null }),
};
