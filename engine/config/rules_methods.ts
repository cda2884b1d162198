/**
 * The rules of the training methods that act on the model or its inputs — NEFTune, LongLoRA's shift_attn and LLaMA Pro
 * — as LLaMA-Factory's `FinetuningArguments.__post_init__` and Whetstone's support state them (called by
 * `crossCheck`). Checks that need the model (its family, its layer count) run when it loads.
 * @module
 */
import type { TrainArgs } from "./train_args.ts";

/** Adds the problems of the method keys of `a`. */
export function checkMethods(
  a: TrainArgs,
  err: (key: string, msg: string) => void,
  given: ReadonlySet<string> = new Set(),
  warnings: string[] = [],
): void {
  // Both depend on the padded length: pad as LF's training collator does (pad_to_multiple_of 8), unless bucket is set.
  if ((a.shift_attn || a.neftune_noise_alpha !== null) && !given.has("bucket") && a.bucket !== 8) {
    a.bucket = 8;
    warnings.push(
      `bucket: 8 (LF pads training batches to a multiple of 8), so that ${
        a.shift_attn ? "shift_attn's groups" : "NEFTune's noise scale"
      } follow LF's padded length; set bucket to choose another`,
    );
  }
  // pt, sft, rm, dpo and kto train through HF's Trainer.train, which hooks NEFTune's noise; LF's PPO loop
  // (CustomPPOTrainer.ppo_train) does not go through it, and Whetstone's ppo step does not take either method yet.
  if (a.neftune_noise_alpha !== null && a.stage === "ppo") {
    err(
      "neftune_noise_alpha",
      "Whetstone adds NEFTune noise in stages pt, sft, rm, dpo and kto, not ppo (LF's ppo_train never runs " +
        "Trainer.train, where transformers activates it)",
    );
  }
  if (a.shift_attn && a.stage === "ppo") {
    // LF's patched attention acts in training mode: TRL's step (rollout log-probs and values, the LoRA reference, the
    // update), not generation nor reward scoring (engine/train/step/ppo.ts).
    warnings.push(
      "shift_attn: in ppo S²-attention acts in the training-mode forwards (rollout log-probs and values, the LoRA " +
        "reference, the update), not in generation or reward scoring, as LF's patch does; its groups follow the " +
        "length padded to `bucket` (LF pads PPO batches to the longest sequence)",
    );
  }
  if (a.finetuning_type === "oft") {
    // PEFT's OFTConfig.__post_init__ (LF passes r = oft_rank, oft_block_size).
    if (a.oft_rank === 0 && a.oft_block_size === 0) {
      err("oft_rank", "Either `r` or `oft_block_size` must be non-zero. Currently, r = 0 and oft_block_size = 0.");
    } else if (a.oft_rank !== 0 && a.oft_block_size !== 0) {
      err(
        "oft_rank",
        `You can only specify either r (${a.oft_rank}) or oft_block_size (${a.oft_block_size}), but not both ` +
          "simultaneously, because r x oft_block_size == in_features.",
      );
    }
    if (a.additional_target) err("additional_target", "modules_to_save is not supported with OFT in Whetstone yet");
    // LF trains the resized embeddings beside the adapter (additional_target); Whetstone does that for LoRA only.
    const grows = ["resize_vocab", "add_tokens", "add_special_tokens", "new_special_tokens_config"] as const;
    const key = grows.find((k) => a[k] !== null && a[k] !== false);
    if (key) err(key, "training the resized embeddings beside an OFT adapter is not supported in Whetstone yet");
  }
  // LF: FinetuningArguments.__post_init__ (LoRA and OFT train the expanded layers' modules: find_expanded_modules).
  if (a.use_llama_pro && a.finetuning_type === "full") {
    err("use_llama_pro", "`use_llama_pro` is only valid for Freeze or LoRA training.");
  }
}
