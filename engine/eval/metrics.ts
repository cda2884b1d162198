/**
 * LLaMA-Factory's generation metrics (`train/sft/metric.py::ComputeSimilarity`, used with `predict_with_generate`):
 * per example, ROUGE-1/2/L of the jieba-segmented texts (rouge.ts) and character-level BLEU-4 (bleu.ts), each ×100
 * and rounded to 4 decimals; reported as their means.
 *
 * ```python
 * hypothesis, reference = list(jieba.cut(pred)), list(jieba.cut(label))
 * if len(" ".join(hypothesis).split()) == 0 or len(" ".join(reference).split()) == 0:
 *     result = {"rouge-1": {"f": 0.0}, "rouge-2": {"f": 0.0}, "rouge-l": {"f": 0.0}}
 * else:
 *     result = Rouge().get_scores(" ".join(hypothesis), " ".join(reference))[0]
 * ```
 *
 * Segmentation is jieba-wasm 2.4.0 (jieba-rs compiled to WebAssembly, loaded on first use) with the HMM on, as
 * `jieba.cut`'s default: it splits text as Python jieba does with its default dictionary (checked on the
 * rouge-chinese README example, whose jieba output it reproduces token for token), but it is a separate
 * implementation, so rare words may be cut differently. Means are NumPy's (`float(np.mean(v))`, pairwise summation),
 * so they equal LLaMA-Factory's bit for bit on equal per-example scores.
 *
 * @example
 * ```ts
 * const m = await computeSimilarity(["今天天气不错"], ["今天天气很好"]);
 * // { "rouge-1": 40, "rouge-2": 0, "rouge-l": 40, "bleu-4": 50.8133 }
 * ```
 * @module
 */
import { loadJieba } from "../../deps.ts";
import { pyRound } from "../util/py_round.ts";
import { bleu4 } from "./bleu.ts";
import { pySplit, rougeScores } from "./rouge.ts";

/** A word segmenter: `list(jieba.cut(text))`. */
export type Segmenter = (text: string) => string[];

let jieba: Promise<Segmenter> | undefined;

/** jieba's default cut (HMM on), loaded on first use. */
export function jiebaSegmenter(): Promise<Segmenter> {
  return jieba ??= loadJieba().then((m) => (text: string) => text.length ? m.cut(text, true) : []);
}

/** The four scores of one example, as LLaMA-Factory appends them (×100, 4 decimals). */
export interface SimilarityScores {
  "rouge-1": number;
  "rouge-2": number;
  "rouge-l": number;
  "bleu-4": number;
}

/** The metric names in LLaMA-Factory's order. */
export const SIMILARITY_KEYS = ["rouge-1", "rouge-2", "rouge-l", "bleu-4"] as const;

/** One example's scores, given the segmenter (see {@link jiebaSegmenter}). */
export function similarityScores(pred: string, label: string, cut: Segmenter): SimilarityScores {
  const hyp = cut(pred).join(" "), ref = cut(label).join(" ");
  let rouge = { "rouge-1": 0, "rouge-2": 0, "rouge-l": 0 };
  if (pySplit(hyp).length > 0 && pySplit(ref).length > 0) {
    const s = rougeScores(hyp, ref);
    rouge = {
      "rouge-1": pyRound(s["rouge-1"].f * 100, 4),
      "rouge-2": pyRound(s["rouge-2"].f * 100, 4),
      "rouge-l": pyRound(s["rouge-l"].f * 100, 4),
    };
  }
  return { ...rouge, "bleu-4": bleu4(pred, label) };
}

/**
 * NumPy's float64 sum (`np.add.reduce`): pairwise summation in blocks of 128 unrolled by 8, as `pairwise_sum` in
 * numpy/_core/src/umath/loops_utils.h.
 */
export function numpySum(a: readonly number[], start = 0, n = a.length - start): number {
  if (n < 8) {
    let res = 0;
    for (let i = 0; i < n; i++) res += a[start + i];
    return res;
  }
  if (n <= 128) {
    const r = a.slice(start, start + 8);
    let i = 8;
    for (; i < n - (n % 8); i += 8) for (let j = 0; j < 8; j++) r[j] += a[start + i + j];
    let res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; i++) res += a[start + i];
    return res;
  }
  let n2 = Math.floor(n / 2);
  n2 -= n2 % 8;
  return numpySum(a, start, n2) + numpySum(a, start + n2, n - n2);
}

/** `float(np.mean(a))` (NaN for an empty list, as NumPy). */
export function numpyMean(a: readonly number[]): number {
  return a.length ? numpySum(a) / a.length : NaN;
}

/**
 * LLaMA-Factory's `ComputeSimilarity` over decoded predictions and labels: the mean of each per-example score
 * ({@link similarityScores}). `scores` receives the per-example values when given.
 */
export async function computeSimilarity(
  preds: readonly string[],
  labels: readonly string[],
  scores?: SimilarityScores[],
): Promise<SimilarityScores> {
  if (preds.length !== labels.length) {
    throw new Error(
      `computeSimilarity: expected as many labels as predictions, got ${labels.length} and ${preds.length}`,
    );
  }
  const cut = await jiebaSegmenter();
  const each = preds.map((p, i) => similarityScores(p, labels[i], cut));
  scores?.push(...each);
  const mean = (k: keyof SimilarityScores) => numpyMean(each.map((s) => s[k]));
  return {
    "rouge-1": mean("rouge-1"),
    "rouge-2": mean("rouge-2"),
    "rouge-l": mean("rouge-l"),
    "bleu-4": mean("bleu-4"),
  };
}
