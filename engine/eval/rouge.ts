/**
 * ROUGE-1/2/L exactly as `rouge_chinese.Rouge().get_scores(hyp, ref)` computes them (the package LLaMA-Factory's
 * `ComputeSimilarity` uses). Ported from github.com/Isaac-JL-Chen/rouge_chinese: `rouge_chinese/rouge_score.py` at
 * commit 25119ce and the `Rouge` class with `cut_sent` of `rouge/rouge.py` at commit 20cab31 (the newer
 * `rouge_chinese/rouge.py` was not available to read; PyPI's rouge-chinese 1.0.3 could not be installed here to
 * compare). The package is a fork of pltrdy/rouge 1.0.1. What the fork does, and this port keeps:
 *
 * - Sentences are cut by `Rouge.cut_sent`: a newline is inserted after `。！？?` (unless a closing quote follows),
 *   after six dots, after `……`, and after a closing quote that follows `。！？?` (unless more punctuation follows);
 *   the text is right-stripped and split on "\n". Pieces that are empty are dropped, then each piece's whitespace
 *   runs are collapsed to one space (`" ".join(s.split())`) — so a whitespace-only piece becomes "" and yields
 *   one empty-string token, as in Python.
 * - Words are the sentences split on single spaces, all sentences flattened.
 * - ROUGE-N (`rouge_n`, `exclusive=True`, the default): n-grams are SETS — repeated n-grams count once in the
 *   hypothesis, the reference and the overlap. p = overlap / |hyp n-grams| (0 when none), r likewise,
 *   f = 2·(p·r / (p + r + 1e-8)).
 * - ROUGE-L (`rouge_l_summary_level` of the fork): NOT the union-LCS summary level of pltrdy/rouge but the plain
 *   LCS of the two flattened word lists: p = LCS / hyp words, r = LCS / ref words, f = 2·(p·r / (p + r + 1e-8)).
 *
 * Empty inputs raise in Python ("Hypothesis is empty."); LLaMA-Factory never calls it then (see metrics.ts).
 * Whitespace is Python's (`str.split()` / `str.rstrip()`), which is not JavaScript's `\s`.
 * @module
 */

/** Python's `str.isspace` characters: what `str.split()` and `str.rstrip()` without arguments remove. */
const PY_WS = "\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const WS_RUN = new RegExp(`[${PY_WS}]+`, "u");
const WS_TAIL = new RegExp(`[${PY_WS}]+$`, "u");

/** Python's `s.split()`: the non-empty runs between whitespace. */
export function pySplit(s: string): string[] {
  return s.split(WS_RUN).filter((w) => w.length > 0);
}

/** `Rouge.cut_sent`: the sentences of a paragraph (Chinese and ASCII end punctuation, ellipses, quotes). */
export function cutSent(para: string): string[] {
  para = para.replace(/([。！？?])([^”’])/gu, "$1\n$2");
  para = para.replace(/(\.{6})([^”’])/gu, "$1\n$2");
  para = para.replace(/(…{2})([^”’])/gu, "$1\n$2");
  para = para.replace(/([。！？?][”’])([^，。！？?])/gu, "$1\n$2");
  return para.replace(WS_TAIL, "").split("\n");
}

/** One ROUGE score. */
export interface RougeScore {
  f: number;
  p: number;
  r: number;
}

/** `Rouge.get_scores` for one pair: ROUGE-1, ROUGE-2 and ROUGE-L. */
export interface RougeScores {
  "rouge-1": RougeScore;
  "rouge-2": RougeScore;
  "rouge-l": RougeScore;
}

/** `_split_into_words`: every sentence split on single spaces, flattened. */
export function splitIntoWords(sentences: readonly string[]): string[] {
  return sentences.flatMap((s) => s.split(" "));
}

function fScore(p: number, r: number): number {
  return 2.0 * ((p * r) / (p + r + 1e-8));
}

/** `rouge_n` with `exclusive=True`: n-gram sets of the flattened words. */
export function rougeN(evaluated: readonly string[], reference: readonly string[], n: number): RougeScore {
  if (evaluated.length <= 0) throw new Error("Hypothesis is empty.");
  if (reference.length <= 0) throw new Error("Reference is empty.");
  const grams = (sentences: readonly string[]) => {
    const words = splitIntoWords(sentences), set = new Set<string>();
    for (let i = 0; i + n <= words.length; i++) set.add(JSON.stringify(words.slice(i, i + n)));
    return set;
  };
  const hyp = grams(evaluated), ref = grams(reference);
  let overlap = 0;
  for (const g of hyp) if (ref.has(g)) overlap++;
  const p = hyp.size === 0 ? 0.0 : overlap / hyp.size;
  const r = ref.size === 0 ? 0.0 : overlap / ref.size;
  return { f: fScore(p, r), p, r };
}

/** The length of the longest common subsequence of two word lists (`_len_lcs`). */
export function lcsLength(x: readonly string[], y: readonly string[]): number {
  let prev = new Array<number>(y.length + 1).fill(0), cur = new Array<number>(y.length + 1).fill(0);
  for (let i = 1; i <= x.length; i++) {
    for (let j = 1; j <= y.length; j++) {
      cur[j] = x[i - 1] === y[j - 1] ? prev[j - 1] + 1 : Math.max(prev[j], cur[j - 1]);
    }
    [prev, cur] = [cur, prev];
  }
  return prev[y.length];
}

/** rouge_chinese's `rouge_l_summary_level`: the LCS of the flattened word lists. */
export function rougeL(evaluated: readonly string[], reference: readonly string[]): RougeScore {
  if (evaluated.length <= 0 || reference.length <= 0) throw new Error("Collections must contain at least 1 sentence.");
  const ref = splitIntoWords(reference), hyp = splitIntoWords(evaluated);
  const llcs = lcsLength(ref, hyp);
  const r = llcs / ref.length, p = llcs / hyp.length;
  return { f: fScore(p, r), p, r };
}

/** The sentences `get_scores` scores: `cut_sent`, empty pieces dropped, whitespace runs collapsed. */
export function rougeSentences(text: string): string[] {
  return cutSent(text).filter((s) => s.length > 0).map((s) => pySplit(s).join(" "));
}

/**
 * `rouge_chinese.Rouge().get_scores(hyp, ref)[0]`: texts whose words are separated by spaces (LLaMA-Factory joins
 * jieba's tokens with " "). Throws, as the Python does, when a side has no sentence.
 */
export function rougeScores(hyp: string, ref: string): RougeScores {
  const h = rougeSentences(hyp), r = rougeSentences(ref);
  return { "rouge-1": rougeN(h, r, 1), "rouge-2": rougeN(h, r, 2), "rouge-l": rougeL(h, r) };
}
