/**
 * NEFTune (Jain et al., 2023), as transformers adds it (`integrations/neftune.py`, `neftune_post_forward_hook`): in
 * training only, the input embeddings [B, L, H] get noise drawn uniformly from [−m, m] with
 * m = neftune_noise_alpha / √(L · H), L the padded length of the batch and H the hidden size. transformers hooks the
 * embedding module's output, so the noise comes after the embedding scale that Gemma's module applies inside.
 * Evaluation, prediction and generation never add it.
 *
 * Here the noise is drawn on the host from a seeded mulberry32 stream (one per micro-batch of each step, from the run's
 * `seed`), so a run repeats exactly, and is fed to the step graph as `noise_k` (engine/train/step/lm.ts).
 * @module
 */
import { mulberry32 } from "../util/rng.ts";

/** transformers' magnitude: alpha / √(L · H). */
export function neftuneMagnitude(alpha: number, L: number, H: number): number {
  return alpha / Math.sqrt(L * H);
}

/** The u32 seed of micro-batch `k`'s noise under a step seed (see `stepSeed` in engine/train/stages/stage.ts). */
export function neftuneSeed(stepSeed: number, k: number): number {
  return (Math.imul((stepSeed ^ 0x4e454654) >>> 0, 0x9e3779b1) + k) >>> 0;
}

/**
 * The noise of one micro-batch: B·L·H floats, row-major [B, L, H], each `(2u − 1) · m` with u the next draw of
 * mulberry32(`seed`) and m = {@link neftuneMagnitude}.
 */
export function neftuneNoise(seed: number, B: number, L: number, H: number, alpha: number): Float32Array {
  const m = neftuneMagnitude(alpha, L, H);
  const r = mulberry32(seed);
  const out = new Float32Array(B * L * H);
  for (let i = 0; i < out.length; i++) out[i] = (2 * r() - 1) * m;
  return out;
}

/** Checks `neftune_noise_alpha` as transformers' TrainingArguments takes it (null: off; else a positive number). */
export function checkNeftuneAlpha(alpha: unknown): number | null {
  if (alpha === null || alpha === undefined) return null;
  if (typeof alpha !== "number" || !Number.isFinite(alpha) || alpha <= 0) {
    throw new Error(`neftune_noise_alpha: expected a positive number, got ${JSON.stringify(alpha)}`);
  }
  return alpha;
}
