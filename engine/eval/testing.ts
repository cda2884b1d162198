/**
 * The metric goldens of fixtures/metrics/goldens.json (made by fixtures/metrics/make_goldens.py with nltk, NumPy,
 * sacrebleu, torchmetrics and a Python port of rouge-chinese), for the eval tests.
 * @module
 */
import type { RougeScores } from "./rouge.ts";
import type { SimilarityScores } from "./metrics.ts";

/** One (prediction, label) pair and what the Python tools give for it. */
export interface MetricCase {
  pred: string;
  label: string;
  pred_tokens: string[];
  label_tokens: string[];
  /** nltk sentence_bleu, method3, in [0, 1]. */
  bleu: number;
  /** The rouge-chinese port's scores; null when LLaMA-Factory skips ROUGE (an empty side). */
  rouge: RougeScores | null;
  /** LLaMA-Factory's per-example values (×100, 4 decimals). */
  scores: SimilarityScores;
  /** sacrebleu's char BLEU (×100) where it coincides with nltk's; else null. */
  sacrebleu: number | null;
  /** torchmetrics' ROUGE precision and recall ("rouge-1.p", ...) where they coincide; else null. */
  torchmetrics: Record<string, number> | null;
}

/** The golden file. */
export interface MetricGoldens {
  versions: Record<string, string>;
  readme_jieba: { text: string; tokens: string[] };
  cases: MetricCase[];
  means: SimilarityScores;
  numpy_mean: { values: number[]; mean: number };
}

/** Reads fixtures/metrics/goldens.json. */
export async function metricGoldens(): Promise<MetricGoldens> {
  const url = new URL("../../fixtures/metrics/goldens.json", import.meta.url);
  return JSON.parse(await Deno.readTextFile(url)) as MetricGoldens;
}
