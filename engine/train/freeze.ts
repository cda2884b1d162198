/**
 * LLaMA-Factory's freeze tuning: which parameters train for finetuning_type "freeze".
 * freeze_trainable_layers N > 0 trains the last N layers, N < 0 the first |N|; freeze_trainable_modules
 * "all" or names (e.g. "mlp,self_attn") picks modules inside those layers; freeze_extra_modules adds
 * modules outside the layers (e.g. "embed_tokens,norm"). As in LF's `_setup_freeze_tuning`, an extra module trains
 * every parameter whose name contains it: "norm" trains the final norm and every layer's norms too.
 * With use_llama_pro (LLaMA Pro's block expansion, engine/nn/llama_pro.ts), N counts the expanded blocks: with stride
 * layers / N, layers stride − 1, 2·stride − 1, ... train (LF's `range(stride - 1, num_layers + stride - 1, stride)`),
 * and N must divide the layer count.
 * @module
 */
import type { DecoderConfig } from "../nn/config.ts";
import { llamaProLayers } from "../nn/llama_pro.ts";

/** The names of the parameters that train. */
export function freezeTrainable(
  params: readonly string[],
  c: DecoderConfig,
  o: { layers: number; modules: string | string[]; extra?: string | string[] | null; llamaPro?: boolean },
): string[] {
  const list = (v: string | string[] | null | undefined) =>
    (Array.isArray(v) ? v : (v ?? "").split(",")).map((s) => s.trim()).filter(Boolean);
  const n = o.layers;
  if (!Number.isInteger(n) || n === 0 || Math.abs(n) > c.layers) {
    throw new Error(`freeze_trainable_layers must be a non-zero integer within ±${c.layers}, got ${n}`);
  }
  const ids = o.llamaPro
    ? llamaProLayers(c.layers, n)
    : n > 0
    ? Array.from({ length: n }, (_, i) => c.layers - n + i)
    : Array.from({ length: -n }, (_, i) => i);
  const mods = list(o.modules);
  const all = mods.length === 0 || mods.includes("all");
  const extra = list(o.extra);
  // Mixtral's checkpoint calls its sparse block block_sparse_moe; transformers 5 (which LF runs on) calls it mlp.
  const paths = (path: string) =>
    c.moe?.block === "block_sparse_moe" ? [path, path.replace(/^block_sparse_moe\./, "mlp.")] : [path];
  const inModule = (p: string, mod: string) =>
    paths(/^model\.layers\.\d+\.(.+)$/.exec(p)?.[1] ?? "").some((q) => q.startsWith(`${mod}.`));
  const out = params.filter((p) => {
    // LF: `any(trainable_layer in name ...)` over the layer patterns and the extra module names.
    if (extra.some((e) => p.includes(e))) return true;
    const m = /^model\.layers\.(\d+)\.(.+)$/.exec(p);
    return !!m && ids.includes(Number(m[1])) && (all || mods.some((mod) => inModule(p, mod)));
  });
  if (!all) {
    for (const mod of mods) {
      if (!out.some((p) => p.includes(`.${mod}.`) || inModule(p, mod))) {
        throw new Error(`freeze_trainable_modules: no module "${mod}" in the trainable layers`);
      }
    }
  }
  return out;
}
