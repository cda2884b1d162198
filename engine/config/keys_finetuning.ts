/**
 * The keys of LLaMA-Factory's `FinetuningArguments` (LoRA, freeze, QLoRA companions, RLHF, GaLore, BAdam, ...).
 * Rows as described in `key_spec.ts`; the whole table is `KEYS` in `keys.ts`.
 * @module
 */
import { F32, I, ignore, lack, T, typed, U } from "./key_spec.ts";

/** The finetuning group. */
export const FINETUNING_KEYS = {
  stage: T(["pt", "sft", "rm", "ppo", "dpo", "kto"], "sft"),
  finetuning_type: T(["lora", "oft", "freeze", "full"], "lora"),
  freeze_trainable_layers: T("int", 2),
  freeze_trainable_modules: T("list", "all", { all: true }),
  freeze_extra_modules: T("list", null),
  lora_rank: T("int", 8, { min: 1 }),
  /** Resolved at parse time: `lora_rank * 2` when unset. */
  lora_alpha: typed<number>()(T("num", null, { min: 0 })),
  lora_dropout: T("num", 0, { min: 0, lt: 1 }),
  /** "all": every linear layer but lm_head. */
  lora_target: T("list", "all", { all: true }),
  additional_target: T("list", null),
  loraplus_lr_ratio: T("num", null, { gt: 0 }),
  loraplus_lr_embedding: T("num", 1e-6, {
    min: 0,
    inert: "LoRA+ gives it to LoRA on embedding layers; Whetstone's LoRA does not adapt embed_tokens",
  }),
  use_rslora: T("bool", false),
  use_dora: T("bool", false),
  pissa_init: T("bool", false),
  pissa_iter: T("int", 16, { min: -1 }),
  /** With pissa_init: also write output_dir/pissa_converted, a plain LoRA for the original base. */
  pissa_convert: T("bool", false),
  create_new_adapter: T("bool", false),
  plot_loss: T("bool", false),
  /** The training data in order every epoch (LF's sequential sampler). */
  disable_shuffling: T("bool", false),
  pure_bf16: I(false, F32, "Whetstone trains in f32 (f32 master weights and compute)"),
  include_effective_tokens_per_second: I(false, "effective tokens per second are not logged yet; ignored"),
  ...ignore(
    "multimodal models only; Whetstone trains text decoders",
    "freeze_vision_tower",
    "freeze_multi_modal_projector",
    "freeze_language_model",
  ),
  use_swanlab: I(false, "SwanLab is not available (Whetstone writes trainer_log.jsonl); ignored"),
  ...ignore(
    "SwanLab settings (use_swanlab is off here)",
    "swanlab_project",
    "swanlab_workspace",
    "swanlab_run_name",
    "swanlab_mode",
    "swanlab_api_key",
  ),
  ...ignore(
    "SwanLab settings (use_swanlab is off here)",
    "swanlab_logdir",
    "swanlab_lark_webhook_url",
    "swanlab_lark_secret",
  ),
  // OFT (engine/nn/oft.ts): PEFT's r (0: from oft_block_size) and oft_block_size (0: from r), exactly one non-zero.
  oft_rank: T("int", 0, { min: 0 }),
  oft_block_size: T("int", 32, { min: 0 }),
  /** "all": every linear layer but lm_head. */
  oft_target: T("list", "all", { all: true }),
  /** PEFT 0.21's OFT Linear never applies it; recorded in adapter_config.json. */
  module_dropout: T("num", 0, { min: 0, lt: 1 }),
  // RLHFArguments (stages rm, dpo, kto, ppo: engine/train/stages/)
  /** β of the preference losses (dpo with each pref_loss, kto). */
  pref_beta: T("num", 0.1, { gt: 0 }),
  /** Weight of the SFT loss on the chosen response (dpo) or desirable examples (kto). */
  pref_ftx: T("num", 0, { min: 0 }),
  /** LF's BCO-in-DPO mixture weight (step/pref_loss.ts bcoLosses). */
  pref_bco_weight: T("num", 0, { min: 0 }),
  pref_loss: T(["sigmoid", "hinge", "ipo", "kto_pair", "orpo", "simpo"], "sigmoid"),
  dpo_label_smoothing: T("num", 0, { min: 0, max: 0.5 }),
  kto_chosen_weight: T("num", 1, { min: 0 }),
  kto_rejected_weight: T("num", 1, { min: 0 }),
  simpo_gamma: T("num", 0.5, { min: 0 }),
  /** LD-DPO: the policy's log-prob of the tokens past the shorter response's length is weighted by this (dpo). */
  ld_alpha: T("num", null, { min: 0 }),
  ppo_buffer_size: T("int", 1, { min: 1 }),
  ppo_epochs: T("int", 4, { min: 1 }),
  ppo_score_norm: T("bool", false),
  ppo_target: T("num", 6, { gt: 0 }),
  ppo_whiten_rewards: T("bool", false),
  /** A model folder (or hub id) for the reference of dpo / kto; null: the base (LoRA) or a frozen copy. */
  ref_model: T("str", null),
  ref_model_adapters: T("list", null),
  ref_model_quantization_bit: U(null, "on-the-fly quantization / QLoRA"),
  /** Stage ppo: the output of a stage rm run (its adapter or model folder, and value_head.safetensors). */
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
  /** Each param steps as its gradient is ready (LF's hooks): no gradient clipping, no accumulation. */
  galore_layerwise: T("bool", false),
  // APOLLO (engine/optim/apollo.ts)
  use_apollo: T("bool", false),
  apollo_target: T("list", "all", { all: true }),
  apollo_rank: T("int", 16, { min: 1 }),
  apollo_update_interval: T("int", 200, { min: 1 }),
  apollo_scale: T("num", 32, { gt: 0 }),
  apollo_proj: T(["random", "svd"], "random", { lacking: ["svd"] }),
  apollo_proj_type: T(["std", "reverse_std", "right", "left"], "std"),
  apollo_scale_type: T(["channel", "tensor"], "channel"),
  /** Each param steps as its gradient is ready (LF's hooks): no gradient clipping, no accumulation. */
  apollo_layerwise: T("bool", false),
  apollo_scale_front: T("bool", false),
  // BAdam, layer mode (engine/optim/badam.ts) and ratio mode (engine/optim/badam_ratio.ts)
  use_badam: T("bool", false),
  badam_mode: T(["layer", "ratio"], "layer"),
  badam_start_block: T("int", null, { min: 0 }),
  badam_switch_mode: T(["ascending", "descending", "random", "fixed"], "ascending"),
  badam_switch_interval: T("int", 50, { min: 1 }),
  /** The fraction of each parameter's entries ratio mode updates (LF asserts > 1e-6). */
  badam_update_ratio: T("num", 0.05, { gt: 1e-6, max: 1 }),
  badam_mask_mode: T(["adjacent", "scatter"], "adjacent"),
  badam_verbose: I(0, undefined, "BAdam's progress printing"),
  /** LLaMA Pro: train only the expanded blocks (engine/nn/llama_pro.ts, engine/train/freeze.ts). */
  use_llama_pro: T("bool", false),
  /** LLaMA-Factory's Adam-mini (engine/optim/adam_mini.ts). */
  use_adam_mini: T("bool", false),
  /** LLaMA-Factory's Muon (engine/optim/muon.ts): Muon on 2-D matrices, its AdamW on the rest. */
  use_muon: T("bool", false),
  /** LF's DFT loss in stage sft: each token's loss weighted by its detached probability (train/step/lm.ts). */
  use_dft_loss: T("bool", false),
  ...lack("alternative SFT losses", {
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
  /** LF's ComputeAccuracy at sft evaluation: `eval_accuracy`, the mean per-sequence token accuracy (stages/lm.ts). */
  compute_accuracy: T("bool", false),
  /** LF's EarlyStoppingCallback patience: evaluations without improvement before the training stops. */
  early_stopping_steps: T("int", null, { min: 1 }),
};
