/**
 * LLaMA Pro's block expansion, ported from LLaMA-Factory's `scripts/llama_pro.py` (`block_expansion`, after Tencent's
 * LLaMA-Pro `scripts/block_expansion.py`): with split = layers / num_expand, after every split-th original layer a
 * copy of it is inserted whose `o_proj` and `down_proj` weights are zero, so each new block adds nothing to the
 * residual stream and the expanded model computes what the original did. Training then takes finetuning_type freeze
 * with use_llama_pro and freeze_trainable_layers num_expand, which trains exactly the new blocks
 * (engine/train/freeze.ts).
 *
 * @example
 * ```ts
 * await expandBlocks("models/llama", "models/llama-pro", 2);
 * ```
 * @module
 */
import { openModelFolder } from "../io/hf_folder.ts";
import type { DecoderConfig } from "./config.ts";
import { resolveTargets } from "./lora.ts";
import { writeSafetensorsStream } from "../io/safetensors.ts";

/** One layer of the expanded model: the original layer it copies, and whether it is a new (zeroed) block. */
export interface ExpandedLayer {
  source: number;
  added: boolean;
}

/** The expanded layer list of LF's script: each original layer, and after every split-th one its zeroed copy. */
export function blockExpansionPlan(numLayers: number, numExpand: number): ExpandedLayer[] {
  if (!Number.isInteger(numExpand) || numExpand < 1) {
    throw new Error(`num_expand: expected a positive integer, got ${numExpand}`);
  }
  if (numLayers % numExpand !== 0) {
    throw new Error(`num_expand: \`num_layers\` ${numLayers} should be divisible by \`num_expand\` ${numExpand}.`);
  }
  const split = numLayers / numExpand;
  const out: ExpandedLayer[] = [];
  for (let i = 0; i < numLayers; i++) {
    out.push({ source: i, added: false });
    if ((i + 1) % split === 0) out.push({ source: i, added: true });
  }
  return out;
}

/** LF's `change_name`: `.{old}.` → `.{new}.`. */
const changeName = (name: string, from: number, to: number) => name.replaceAll(`.${from}.`, `.${to}.`);

/** Whether an added block's copy of `name` is zeroed (LF: `"down_proj" in key or "o_proj" in key`). */
export const zeroedInExpansion = (name: string): boolean => name.includes("down_proj") || name.includes("o_proj");

/**
 * Writes the block-expanded copy of model folder `src` to `dst`: config.json with num_hidden_layers + num_expand, one
 * model.safetensors (weights in their stored dtypes), and the folder's other files (tokenizer, generation config)
 * copied. Returns the expanded layer list.
 */
export async function expandBlocks(
  src: string,
  dst: string,
  numExpand: number,
  log: (line: string) => void = () => {},
): Promise<ExpandedLayer[]> {
  using folder = await openModelFolder(src);
  const layers = Number(folder.config.num_hidden_layers);
  if (!Number.isInteger(layers) || layers < 1) throw new Error(`${src}: config.json has no num_hidden_layers`);
  const plan = blockExpansionPlan(layers, numExpand);
  // new name → [source name, zeroed]
  const names = new Map<string, [string, boolean]>();
  const all = [...folder.tensors.keys()];
  plan.forEach(({ source, added }, target) => {
    for (const n of all) {
      if (n.includes(`.${source}.`)) names.set(changeName(n, source, target), [n, added && zeroedInExpansion(n)]);
    }
    log(`Add layer ${target} ${added ? "expanded" : "copied"} from layer ${source}.`);
  });
  for (const n of all) if (!names.has(n) && !/\.\d+\./.test(n)) names.set(n, [n, false]);
  await Deno.mkdir(dst, { recursive: true });
  const specs = Object.fromEntries(
    [...names].map((
      [to, [from]],
    ) => [to, { dtype: folder.tensors.get(from)!.dtype, shape: folder.tensors.get(from)!.shape }]),
  );
  await writeSafetensorsStream(`${dst}/model.safetensors`, specs, async (to) => {
    const [from, zero] = names.get(to)!;
    return zero ? new Uint8Array(folder.tensors.get(from)!.byteLength) : await folder.read(from);
  }, { format: "pt" });
  const config = { ...folder.config, num_hidden_layers: layers + numExpand };
  await Deno.writeTextFile(`${dst}/config.json`, JSON.stringify(config, null, 2) + "\n");
  for await (const e of Deno.readDir(src)) {
    if (!e.isFile || e.name === "config.json" || /\.safetensors(\.index\.json)?$/.test(e.name)) continue;
    await Deno.copyFile(`${src}/${e.name}`, `${dst}/${e.name}`);
  }
  return plan;
}

/**
 * The layers LLaMA Pro trains among `numLayers` when `trainable` of them are new: LF's
 * `range(stride - 1, num_layers + stride - 1, stride)` with stride = layers / trainable; `trainable` must divide the
 * layer count (LF's message).
 */
export function llamaProLayers(numLayers: number, trainable: number): number[] {
  if (!Number.isInteger(trainable) || trainable < 1 || numLayers % trainable !== 0) {
    throw new Error(
      `freeze_trainable_layers: \`num_layers\` ${numLayers} should be divisible by \`num_layer_trainable\` ${trainable}.`,
    );
  }
  const stride = numLayers / trainable;
  return Array.from({ length: trainable }, (_, i) => stride - 1 + i * stride);
}

/**
 * LF's `find_expanded_modules` for LoRA and OFT with use_llama_pro: the full names of the targeted linear modules in
 * the expanded layers, which become PEFT's target_modules.
 */
export function expandedModules(c: DecoderConfig, targets: readonly string[] | string, trainable: number): string[] {
  const ids = new Set(llamaProLayers(c.layers, trainable));
  return resolveTargets(c, { targets }).filter((m) => ids.has(Number(/^model\.layers\.(\d+)\./.exec(m)?.[1])));
}
