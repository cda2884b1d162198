/**
 * Vocabulary growth in a training run, as LLaMA-Factory's loader does it: `patch_tokenizer` adds `add_tokens` /
 * `add_special_tokens` (and turns `resize_vocab` on when the tokenizer grew), `resize_embedding_layer` resizes the
 * embeddings (engine/nn/vocab.ts), and under LoRA the adapter's `_setup_lora_tuning` makes the input and output
 * embeddings trainable (`additional_target`, PEFT's `modules_to_save`) when the vocabulary was resized.
 *
 * The grown model is written to `<output_dir>/resized_base` and the run trains from it, so the run's tokenizer (and
 * the tokenizer saved with the adapter or model) has the new tokens, and an adapter's `base_model_name_or_path`
 * names a base of the right vocabulary size for PEFT to load onto.
 * @module
 */
import type { TrainArgs } from "../config/args.ts";
import { hubOptionsOf } from "../config/views.ts";
import { resolveModel } from "../io/hub.ts";
import type { Model } from "../nn/model.ts";
import { addsTokens, growVocab, VocabArgError, vocabSpec } from "../nn/vocab.ts";
import { ConfigError } from "../config/train_args.ts";

const EMBED = "model.embed_tokens.weight";
const HEAD = "lm_head.weight";

/**
 * When `a` adds tokens or sets `resize_vocab`: grows the model into `<output_dir>/resized_base` and returns the
 * arguments that train from it (`resize_vocab` on when the tokenizer grew, as LLaMA-Factory warns and sets it);
 * otherwise `a` as it is.
 */
export async function prepareVocab(a: TrainArgs, log: (s: string) => void): Promise<TrainArgs> {
  // A bad value is a ConfigError naming its key (the routes answer 400 {error, field}).
  const named = <T>(p: Promise<T>) =>
    p.catch((e) => {
      throw e instanceof VocabArgError ? new ConfigError("arguments", [e.message]) : e;
    });
  const spec = await named(vocabSpec(a));
  if (!addsTokens(spec) && !a.resize_vocab) return a;
  for (const w of spec.warnings) log(`warning: ${w}`);
  const src = await resolveModel(a.model_name_or_path, hubOptionsOf(a));
  const dir = `${a.output_dir}/resized_base`;
  const r = await named(growVocab(src, dir, spec, { seed: a.seed }));
  let resize = a.resize_vocab;
  if (r.added > 0 && !resize) {
    log("warning: New tokens have been added, changed `resize_vocab` to True.");
    resize = true;
  }
  log(`vocab: ${r.added} token(s) added ${JSON.stringify(r.ids)}; embedding rows ${r.oldRows} -> ${r.newRows}`);
  return { ...a, model_name_or_path: dir, resize_vocab: resize };
}

/**
 * The base parameters LLaMA-Factory trains next to a LoRA adapter when the vocabulary was resized: the input
 * embedding and, when the model has its own, the output head. Stored as bf16/f16 they are upcast to f32 on the
 * executor (they take gradients); the adapter saves them in f32, as PEFT's modules_to_save copies train.
 */
export async function vocabTrainable(model: Model): Promise<string[]> {
  const names = [EMBED, HEAD].filter((n) => model.params.has(n));
  for (const n of names) {
    const p = model.params.get(n)!;
    if (p.dtype === "f32") continue;
    const data = Float32Array.from(await model.executor.getParam(model.prefix + n));
    model.executor.setParam(model.prefix + n, data, p.shape, "f32");
    model.params.set(n, { shape: p.shape, dtype: "f32" });
  }
  return names;
}
