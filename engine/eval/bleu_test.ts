import assert from "node:assert/strict";
import { bleu4, brevityPenalty, closestRefLength, fsum, modifiedPrecision, sentenceBleu } from "./bleu.ts";
import { metricGoldens } from "./testing.ts";

const g = await metricGoldens();

Deno.test("bleu: LLaMA-Factory's char BLEU-4 equals nltk's sentence_bleu with method3 on every golden pair", () => {
  for (const c of g.cases) {
    const raw = sentenceBleu([Array.from(c.label)], Array.from(c.pred));
    const what = `${JSON.stringify(c.pred)} vs ${JSON.stringify(c.label)}`;
    assert.ok(Math.abs(raw - c.bleu) <= 1e-15, `${what}: ${raw} vs nltk ${c.bleu}`);
    assert.equal(bleu4(c.pred, c.label), c.scores["bleu-4"], what);
  }
});

Deno.test("bleu: agrees with sacrebleu's char-level sentence BLEU (exp smoothing) where the definitions coincide", () => {
  const checked = g.cases.filter((c) => c.sacrebleu !== null);
  assert.ok(checked.length >= 10, `only ${checked.length} sacrebleu cases`);
  for (const c of checked) {
    const ours = 100 * sentenceBleu([Array.from(c.label)], Array.from(c.pred));
    assert.ok(Math.abs(ours - c.sacrebleu!) < 1e-9, `${c.pred}: ${ours} vs sacrebleu ${c.sacrebleu}`);
  }
});

Deno.test("bleu: nltk's pieces — clipped precision, closest reference, brevity penalty, zero rules", () => {
  const t = (s: string) => s.split(" ");
  // nltk's docstring example: "the the the the the the the" against two references → 2/7 unigrams.
  const refs = [t("the cat is on the mat"), t("there is a cat on the mat")];
  assert.deepEqual(modifiedPrecision(refs, t("the the the the the the the"), 1), { numerator: 2, denominator: 7 });
  // Denominators are at least 1: a 1-token hypothesis has 0/1 bigrams.
  assert.deepEqual(modifiedPrecision(refs, ["the"], 2), { numerator: 0, denominator: 1 });
  assert.equal(closestRefLength([t("a b c"), t("a b c d e")], 4), 3); // a tie goes to the shorter reference
  assert.equal(brevityPenalty(5, 7), 1);
  assert.equal(brevityPenalty(5, 0), 0);
  assert.equal(brevityPenalty(6, 3), Math.exp(-1));
  assert.equal(sentenceBleu([["a", "b"]], ["c", "d"]), 0); // no unigram match → 0 whatever the smoothing
  assert.equal(sentenceBleu([["a"]], []), 0);
  // method3 on "ab" vs "ab": p = [1, 1, 1/2, 1/4] → exp((log 1/2 + log 1/4) / 4).
  assert.equal(sentenceBleu([["a", "b"]], ["a", "b"]), Math.exp(0.25 * Math.log(0.5) + 0.25 * Math.log(0.25)));
  assert.equal(sentenceBleu([["a", "b"]], ["a", "b"], { smoothing: "none" }), 1);
  assert.throws(() => sentenceBleu([], ["a"]), /at least one reference/);
});

Deno.test("bleu: fsum is Python's math.fsum", () => {
  assert.equal(fsum(Array(10).fill(0.1)), 1.0);
  assert.equal(fsum([1, 1e100, 1, -1e100]), 2.0);
  assert.equal(fsum([1.0, 1e-16, 1e-16]), 1.0000000000000002);
  assert.equal(fsum([1.0, 1.1102230246251565e-16]), 1.0); // exactly half an ulp: ties to even
  assert.equal(fsum([1.0, 1.1102230246251565e-16, 1e-300]), 1.0000000000000002);
  assert.equal(fsum([]), 0);
});
