/**
 * Sentence BLEU exactly as NLTK computes it (`nltk.translate.bleu_score.sentence_bleu`, ported from nltk 3.9/3.10,
 * `nltk/translate/bleu_score.py`), with NLTK's smoothing method 3 (NIST geometric sequence), which is what
 * LLaMA-Factory's `ComputeSimilarity` uses, character by character:
 *
 * ```python
 * sentence_bleu([list(label)], list(pred), smoothing_function=SmoothingFunction().method3)
 * ```
 *
 * The port keeps NLTK's details that change results: clipped n-gram counts over all references (max count per
 * n-gram), precision denominators of at least 1 (so a hypothesis shorter than n has p_n = 0/1, not 0/0), the closest
 * reference length (ties to the shorter reference) in the brevity penalty, a score of 0 whenever no unigram
 * matches (`p_numerators[1] == 0`), method 3's 1 / (2^k · denominator) for the k-th zero precision, and
 * `math.fsum` (exact summation) of the weighted logs. `auto_reweigh` is off, as in `sentence_bleu`'s default.
 *
 * Versus sacrebleu's `sentence_bleu(hyp, [ref], tokenize="char", smooth_method="exp")`: the two agree (up to the
 * ×100) when neither text has whitespace, the hypothesis has at least 4 characters and shares at least one
 * character with the reference. They differ otherwise: sacrebleu's char tokenizer drops whitespace while Python's
 * `list(str)` keeps every code point; sacrebleu uses the "effective order" (orders with no hypothesis n-gram are left
 * out of the mean) where NLTK smooths them as 0/1; and sacrebleu smooths a zero unigram precision instead of
 * returning 0 (fixtures/metrics/make_goldens.py checks the agreement on such texts).
 *
 * @example
 * ```ts
 * bleu4("今天天气不错", "今天天气很好"); // 50.8133 (LLaMA-Factory's per-example "bleu-4")
 * ```
 * @module
 */
import { pyRound } from "../util/py_round.ts";

/** A token sequence: characters (code points) for LLaMA-Factory's BLEU, or words. */
export type Tokens = readonly string[];

/** The n-grams of `tokens` with their counts (keys join the tokens with U+0000, which no token holds here). */
export function ngramCounts(tokens: Tokens, n: number): Map<string, number> {
  const counts = new Map<string, number>();
  for (let i = 0; i + n <= tokens.length; i++) {
    const key = tokens.slice(i, i + n).join("\u0000");
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return counts;
}

/** NLTK's `modified_precision`: clipped matches over max(1, hypothesis n-grams), unreduced. */
export function modifiedPrecision(
  references: readonly Tokens[],
  hypothesis: Tokens,
  n: number,
): { numerator: number; denominator: number } {
  const counts = ngramCounts(hypothesis, n);
  const maxCounts = new Map<string, number>();
  for (const ref of references) {
    const refCounts = ngramCounts(ref, n);
    for (const g of counts.keys()) maxCounts.set(g, Math.max(maxCounts.get(g) ?? 0, refCounts.get(g) ?? 0));
  }
  let numerator = 0, total = 0;
  for (const [g, c] of counts) {
    numerator += Math.min(c, maxCounts.get(g)!);
    total += c;
  }
  return { numerator, denominator: Math.max(1, total) };
}

/** NLTK's `closest_ref_length`: the reference length closest to `hypLen`, the shorter one on a tie. */
export function closestRefLength(references: readonly Tokens[], hypLen: number): number {
  let best = references[0].length;
  for (const r of references) {
    const d = Math.abs(r.length - hypLen), bd = Math.abs(best - hypLen);
    if (d < bd || (d === bd && r.length < best)) best = r.length;
  }
  return best;
}

/** NLTK's `brevity_penalty`: 1 when the hypothesis is longer, 0 when it is empty, else exp(1 − r/c). */
export function brevityPenalty(closestRefLen: number, hypLen: number): number {
  if (hypLen > closestRefLen) return 1;
  if (hypLen === 0) return 0;
  return Math.exp(1 - closestRefLen / hypLen);
}

/**
 * Python's `math.fsum`: the correctly rounded sum of finite floats (Shewchuk's partials, as CPython's
 * `math_fsum`, including its half-way correction).
 */
export function fsum(xs: Iterable<number>): number {
  const partials: number[] = [];
  for (let x of xs) {
    let i = 0;
    for (let y of partials) {
      if (Math.abs(x) < Math.abs(y)) [x, y] = [y, x];
      const hi = x + y;
      const lo = y - (hi - x);
      if (lo !== 0) partials[i++] = lo;
      x = hi;
    }
    partials.length = i;
    partials.push(x);
  }
  let n = partials.length;
  let hi = 0, lo = 0;
  if (n > 0) {
    hi = partials[--n];
    while (n > 0) {
      const x = hi, y = partials[--n];
      hi = x + y;
      lo = y - (hi - x);
      if (lo !== 0) break;
    }
    if (n > 0 && ((lo < 0 && partials[n - 1] < 0) || (lo > 0 && partials[n - 1] > 0))) {
      const y = lo * 2, x = hi + y;
      if (y === x - hi) hi = x;
    }
  }
  return hi;
}

/** Options of {@link sentenceBleu}. */
export interface BleuOptions {
  /** N-gram weights (default 4 × 0.25: BLEU-4). */
  weights?: readonly number[];
  /** "method3" (NIST geometric sequence, default) or "none" (NLTK's method0 without its warnings). */
  smoothing?: "method3" | "none";
}

/**
 * NLTK's `sentence_bleu(references, hypothesis, weights, smoothing_function)` in [0, 1]: one hypothesis against one
 * or more references, all token sequences.
 */
export function sentenceBleu(references: readonly Tokens[], hypothesis: Tokens, opts: BleuOptions = {}): number {
  if (!references.length) throw new Error("sentenceBleu: expected at least one reference, got none");
  const weights = opts.weights ?? [0.25, 0.25, 0.25, 0.25];
  const p = weights.map((_, i) => modifiedPrecision(references, hypothesis, i + 1));
  const hypLen = hypothesis.length;
  const bp = brevityPenalty(closestRefLength(references, hypLen), hypLen);
  if (p[0].numerator === 0) return 0;
  let k = 1;
  const pn = p.map(({ numerator, denominator }) => {
    if (numerator !== 0) return numerator / denominator;
    // method3: 1 / (2^k · denominator) for the k-th zero precision; method0 drops zero precisions.
    return opts.smoothing === "none" ? 0 : 1 / (2 ** k++ * denominator);
  });
  const logs: number[] = [];
  weights.forEach((w, i) => {
    if (pn[i] > 0) logs.push(w * Math.log(pn[i]));
  });
  return bp * Math.exp(fsum(logs));
}

/**
 * LLaMA-Factory's per-example "bleu-4": character-level BLEU-4 of `pred` against `label` with method-3 smoothing,
 * ×100, rounded to 4 decimals (Python's `round`). Characters are Unicode code points, as Python's `list(str)`.
 */
export function bleu4(pred: string, label: string): number {
  return pyRound(sentenceBleu([Array.from(label)], Array.from(pred)) * 100, 4);
}
