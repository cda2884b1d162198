/**
 * LLaMA-Factory's `pissa_convert` (its `PissaConvertCallback`): at the end of training a PiSSA adapter is also
 * written as a plain LoRA for the original base model, in `output_dir/pissa_converted` (PEFT's
 * `save_pretrained(path_initial_model_for_weight_conversion=...)`, engine/nn/lora.ts `saveAdapter`'s
 * `convertPissa`); output_dir keeps the PiSSA adapter. Whetstone keeps the initial adapter in memory, so no
 * `pissa_init` folder is needed for the conversion and none is written.
 * @module
 */
import { LoraAdapter, saveAdapter } from "../nn/lora.ts";
import type { Model } from "../nn/model.ts";

/** The folder LF writes the converted adapter to, inside output_dir. */
export const PISSA_CONVERTED_DIR = "pissa_converted";

/**
 * Writes `outputDir/pissa_converted` when the model's adapter was PiSSA-initialised; returns its path, or null
 * (no PiSSA adapter: LF's callback has nothing to convert either).
 */
export async function savePissaConverted(model: Model, outputDir: string): Promise<string | null> {
  const ad = model.adapter;
  if (!(ad instanceof LoraAdapter) || !ad.initial) return null;
  const dir = `${outputDir.replace(/\/+$/, "")}/${PISSA_CONVERTED_DIR}`;
  await saveAdapter(model, dir, { convertPissa: true });
  return dir;
}
