/**
 * BAdam in ratio mode (`badam_mode: ratio`), as LLaMA-Factory runs it: `BlockOptimizerRatio` from Ledzy/BAdam
 * (src/badam/block_optim.py) built by LF's `_create_badam_optimizer` with `update_ratio = badam_update_ratio`,
 * `mask_mode = badam_mask_mode`, `include_embedding=False`, `lr`, `betas`, `eps`, and BAdam's defaults for the rest
 * (`switch_every=100`, `preserve_threshold=100`, `keep_mask=True`, `include_lm_head=False`). LF's trainer clips with
 * BAdam's `clip_grad_norm_old_version` (src/badam/utils.py): it returns the norm of the sparse gradients (the logged
 * `grad_norm`) but scales them by `g.detach().mul_(coef)`, and on a sparse COO tensor `detach()` is a copy in torch 2
 * (checked on torch 2.13), so the gradients are never clipped; Whetstone logs the norm and does not clip either.
 * Line by line:
 *
 * - `__init__`: the first parameter whose name holds "embed" and the first holding "lm_head" stop training
 *   (`requires_grad_(False)`; a model without one of them — e.g. tied embeddings, where named_parameters lists no
 *   lm_head — makes BAdam fail with an AttributeError, so {@link badamRatioTrainable} throws); every other parameter
 *   gets the gradient hook.
 * - `sparse_update_hook`: with n elements and k = int(n · update_ratio) (Python's int of the float product): if
 *   n < preserve_threshold the gradient gets + 1e-9; if update_ratio == 1 it gets + 1e-9 (again) and is kept whole;
 *   else only the mask's k entries are kept (`sparse_mask`). The "adjacent" mask is the k entries from the param's
 *   offset on, wrapping to 0 (`_generate_mask_adjacent`); the offset advances by k (mod n) on every step number that
 *   is a multiple of switch_every, after that step's mask. "scatter" takes the k entries of a random permutation from
 *   the offset on (`_generate_mask_scatter`). With keep_mask one mask serves every parameter of a shape.
 * - `step` / `_sparse_adam` (t = steps since the last reset, from 1; the states hold the k kept entries, in index
 *   order, as `grad.coalesce()` orders them):
 *
 *     m ← m + (g − m)(1 − β1);  v ← v + (g² − v)(1 − β2)
 *     p[idx] ← p[idx] − lr·√(1 − β2^t)/(1 − β1^t) · m / (√v + eps)        # no weight decay
 *
 *   and after every switch_every-th step the states are dropped (`_reset_state_dict`): the next block starts from
 *   zero moments, t back at 1.
 *
 * Where Whetstone differs: "scatter" permutes with a seeded mulberry32 Fisher–Yates per element count (BAdam draws a
 * `torch.randperm` from a per-param seed of torch's generator, so on a switch step, where its mask cache is cleared
 * after each param, params of one shape can differ for that step); with gradient accumulation the mask and the 1e-9
 * apply to the accumulated gradient (BAdam's hook runs per micro-batch: the same mask, the 1e-9 added once per
 * micro-batch). At ratio 1 BAdam's hook fails on a param under preserve_threshold (it adds 1e-9 to the sparse
 * gradient it has just made: "add(sparse, dense) is not supported"); so does this module (BadamRatioRun throws).
 * @module
 */
import {
  add,
  assign,
  div,
  embedding,
  embeddingBwd,
  graphOf,
  mul,
  pow,
  reshape,
  sqrt,
  sub,
  type Tensor,
  where,
} from "../graph/mod.ts";
import { mulberry32 } from "../util/rng.ts";
import { checkBetas } from "./lion.ts";

/** BlockOptimizerRatio's defaults that LF keeps. */
export const BADAM_RATIO = { switchEvery: 100, preserveThreshold: 100 } as const;
/** badam_mask_mode values. */
export const BADAM_MASK_MODES = ["adjacent", "scatter"] as const;
/** One of {@link BADAM_MASK_MODES}. */
export type BadamMaskMode = typeof BADAM_MASK_MODES[number];

/** The names that train in ratio mode: all but the first "embed" and the first "lm_head" parameter. */
export function badamRatioTrainable(names: readonly string[]): string[] {
  const embed = names.find((n) => n.includes("embed")), head = names.find((n) => n.includes("lm_head"));
  for (const [what, name] of [["embed", embed], ["lm_head", head]]) {
    if (name === undefined) {
      throw new Error(
        `badam_mode ratio: BAdam's BlockOptimizerRatio freezes the first parameter named "${what}", and this model ` +
          `has none${what === "lm_head" ? " (tied word embeddings list no lm_head)" : ""}: BAdam fails there`,
      );
    }
  }
  return names.filter((n) => n !== embed && n !== head);
}

/** The number of entries of an n-element param that update: int(n · ratio), all of them at ratio 1. */
export function ratioCount(n: number, ratio: number): number {
  return ratio === 1 ? n : Math.trunc(n * ratio);
}

/** What the hook adds to a param's kept gradient entries: 1e-9 for small params, again at ratio 1. */
export function ratioEpsilon(n: number, ratio: number): number {
  return (n < BADAM_RATIO.preserveThreshold ? 1e-9 : 0) + (ratio === 1 ? 1e-9 : 0);
}

/** The block (0, 1, …) and the AdamW step within it (from 1) of optimizer step `step` (from 1). */
export function ratioBlock(step: number, switchEvery: number = BADAM_RATIO.switchEvery): { block: number; t: number } {
  if (!Number.isInteger(step) || step < 1) throw new Error(`BAdam steps count from 1, got ${step}`);
  return { block: Math.floor((step - 1) / switchEvery), t: ((step - 1) % switchEvery) + 1 };
}

/** A seeded permutation of 0..n−1 (Fisher–Yates over mulberry32), "scatter"'s order for a shape of n elements. */
export function scatterPermutation(n: number, seed: number): Int32Array {
  const rnd = mulberry32((Math.imul(seed, 1000003) + n) >>> 0);
  const a = Int32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}

/**
 * The sorted flat indices a param of n elements updates in block `block`: k entries from offset block·k mod n on,
 * of 0..n−1 ("adjacent") or of `perm` ("scatter"), wrapping around.
 */
export function ratioIndices(n: number, k: number, block: number, perm?: Int32Array): Int32Array {
  const offset = n ? (block * k) % n : 0;
  const at = (i: number) => (perm ? perm[i] : i);
  const out = Int32Array.from({ length: k }, (_, j) => at((offset + j) % n));
  return out.sort();
}

/** Sparse AdamW's hyper-parameters (BAdam's defaults from LF: lr, betas, eps; no weight decay). */
export interface SparseAdamOptions {
  beta1: number;
  beta2: number;
  eps: number;
}

/**
 * The kept gradient entries of `grad` (n elements) at `index` [k] i32, plus `epsilon` ({@link ratioEpsilon}): [k].
 */
export function ratioGather(grad: Tensor, index: Tensor, epsilon: number): Tensor {
  const n = grad.shape.reduce((a, b) => a * b, 1), k = index.shape[0];
  const g = reshape(embedding(reshape(grad, [n, 1]), index), [k]);
  return epsilon ? add(g, epsilon) : g;
}

/**
 * One `_sparse_adam` step of `param` on its kept entries: `g` [k] (gathered, clipped), states `m`, `v` [k] (zeros
 * after a reset), `index` [k] i32, `lr`, `t` f32 scalars; `gate` (fp16's finite check) keeps every value where 0.
 */
export function sparseAdam(
  param: Tensor,
  g: Tensor,
  m: Tensor,
  v: Tensor,
  index: Tensor,
  lr: Tensor,
  t: Tensor,
  o: SparseAdamOptions,
  gate?: Tensor,
): void {
  graphOf(param, g, m, v, index, lr, t);
  checkBetas("badam ratio", { ...o });
  const n = param.shape.reduce((a, b) => a * b, 1), k = index.shape[0];
  const keep = (old: Tensor, next: Tensor) => (gate ? where(gate, next, old) : next);
  const m1 = add(m, mul(sub(g, m), 1 - o.beta1));
  const v1 = add(v, mul(sub(mul(g, g), v), 1 - o.beta2));
  const stepSize = div(mul(lr, sqrt(sub(1, pow(o.beta2, t)))), sub(1, pow(o.beta1, t)));
  const u = mul(div(m1, add(sqrt(v1), o.eps)), stepSize);
  const dense = reshape(embeddingBwd(index, reshape(u, [k, 1]), n), param.shape);
  assign(m, keep(m, m1));
  assign(v, keep(v, v1));
  assign(param, keep(param, sub(param, dense)));
}
