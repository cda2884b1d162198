/**
 * The rules of the training methods that act on the model or its inputs — NEFTune, LongLoRA's shift_attn and LLaMA Pro
 * — as LLaMA-Factory's `FinetuningArguments.__post_init__` and Whetstone's support state them (called by
 * `crossCheck`). Checks that need the model (its family, its layer count) run when it loads.
 * @module
 */
import type { TrainArgs } from "./train_args.ts";

/** Adds the problems of the method keys of `a`. */
export function checkMethods(a: TrainArgs, err: (key: string, msg: string) => void): void {
  if (a.neftune_noise_alpha !== null && a.stage !== "pt" && a.stage !== "sft") {
    err("neftune_noise_alpha", `Whetstone adds NEFTune noise in stages pt and sft, got stage ${a.stage}`);
  }
  if (a.shift_attn && a.stage !== "pt" && a.stage !== "sft") {
    err("shift_attn", `Whetstone applies S²-attention in stages pt and sft, got stage ${a.stage}`);
  }
  if (a.use_llama_pro) {
    // LF: FinetuningArguments.__post_init__.
    if (a.finetuning_type === "full") {
      err("use_llama_pro", "`use_llama_pro` is only valid for Freeze or LoRA training.");
    } else if (a.finetuning_type !== "freeze") {
      err(
        "use_llama_pro",
        `Whetstone trains LLaMA Pro's expanded blocks with finetuning_type freeze, got ${a.finetuning_type}`,
      );
    }
  }
}
