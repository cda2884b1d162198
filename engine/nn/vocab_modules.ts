/**
 * The embeddings a LoRA adapter carries as PEFT's `modules_to_save` (LLaMA-Factory's `additional_target`, set by
 * `resize_vocab`): read from a model's parameters for saving, and loaded over the base parameters when an adapter
 * that has them is attached. PEFT saves `embed_tokens` and `lm_head` as whole copies; on a model whose head is tied
 * to its embedding (Whetstone keeps one matrix), both are written from that matrix and, on load, must be equal.
 * @module
 */
import type { AdapterTensor } from "../io/peft.ts";
import type { ModelCore } from "./model_core.ts";

const EMBED = "model.embed_tokens.weight";
const HEAD = "lm_head.weight";

/**
 * The current values of `names` (base parameter names) as PEFT writes `modules_to_save = ["embed_tokens",
 * "lm_head"]`: both weights, the head taken from the embedding when the model ties them. Empty for no names.
 */
export async function readModulesToSave(
  model: ModelCore,
  names: readonly string[],
): Promise<Map<string, AdapterTensor>> {
  const out = new Map<string, AdapterTensor>();
  if (!names.length) return out;
  const read = async (n: string) => ({
    shape: [...model.params.get(n)!.shape],
    data: Float32Array.from(await model.executor.getParam(model.prefix + n)),
  });
  const embed = await read(EMBED);
  out.set(EMBED, embed);
  out.set(HEAD, model.params.has(HEAD) ? await read(HEAD) : embed);
  return out;
}

/**
 * Loads an adapter's `modules_to_save` weights over the model's base parameters (shapes must match: attach to a base
 * of the adapter's vocabulary size, e.g. the run's `resized_base`); returns the base parameter names they replaced.
 * A tied model takes the embedding and refuses a head that differs from it.
 */
export async function loadModulesToSave(
  model: ModelCore,
  saved: ReadonlyMap<string, AdapterTensor>,
  from: string,
): Promise<string[]> {
  const names: string[] = [];
  for (const [name, t] of saved) {
    const p = model.params.get(name);
    if (!p) {
      const embed = saved.get(EMBED)?.data ?? await model.executor.getParam(model.prefix + EMBED);
      if (name !== HEAD || t.data.some((v, i) => v !== embed[i])) {
        throw new Error(
          `${from}: modules_to_save weight ${name} differs from the tied embedding; Whetstone ties lm_head to ` +
            "embed_tokens for this model",
        );
      }
      continue;
    }
    if (p.shape.join() !== t.shape.join()) {
      throw new Error(
        `${from}: modules_to_save weight ${name} is [${t.shape.join(", ")}], the base has [${p.shape.join(", ")}] ` +
          "(attach to a base of the adapter's vocabulary size)",
      );
    }
    model.executor.setParam(model.prefix + name, t.data, t.shape, p.dtype);
    names.push(name);
  }
  return names;
}
