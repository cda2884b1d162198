/**
 * Attaching a PEFT adapter folder of either kind Whetstone trains: LoRA (and its variants, lora.ts) or OFT (oft.ts),
 * chosen by the folder's adapter_config.json `peft_type`.
 * @module
 */
import { ADAPTER_CONFIG_FILE } from "../io/peft.ts";
import { attachAdapter } from "./lora.ts";
import type { ModelAdapter, ModelCore } from "./model_core.ts";
import { attachOft } from "./oft.ts";

/** Attaches the adapter in folder `dir` (LoRA or OFT by its peft_type); `baseModel` is recorded on save. */
export async function attachAdapterFolder(
  model: ModelCore,
  dir: string,
  opts: { baseModel?: string } = {},
): Promise<ModelAdapter> {
  let type: unknown;
  try {
    type = JSON.parse(await Deno.readTextFile(`${dir}/${ADAPTER_CONFIG_FILE}`)).peft_type;
  } catch {
    type = undefined; // attachAdapter reports the folder's problem
  }
  return type === "OFT" ? await attachOft(model, dir, opts.baseModel) : await attachAdapter(model, dir, opts);
}
