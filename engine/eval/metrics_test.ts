import assert from "node:assert/strict";
import { computeSimilarity, jiebaSegmenter, numpyMean, type SimilarityScores, similarityScores } from "./metrics.ts";
import { metricGoldens } from "./testing.ts";

const g = await metricGoldens();
const cut = await jiebaSegmenter();

Deno.test("metrics: jieba-wasm cuts as Python jieba (rouge-chinese README) and as when the goldens were made", () => {
  assert.deepEqual(cut(g.readme_jieba.text), g.readme_jieba.tokens);
  for (const c of g.cases) {
    assert.deepEqual(cut(c.pred), c.pred_tokens, JSON.stringify(c.pred));
    assert.deepEqual(cut(c.label), c.label_tokens, JSON.stringify(c.label));
  }
});

Deno.test("metrics: per-example scores and means equal LLaMA-Factory's ComputeSimilarity", async () => {
  for (const c of g.cases) assert.deepEqual(similarityScores(c.pred, c.label, cut), c.scores, JSON.stringify(c.pred));
  const each: SimilarityScores[] = [];
  const means = await computeSimilarity(g.cases.map((c) => c.pred), g.cases.map((c) => c.label), each);
  assert.deepEqual(means, g.means);
  assert.equal(each.length, g.cases.length);
  await assert.rejects(() => computeSimilarity(["a"], []), /as many labels as predictions/);
});

Deno.test("metrics: numpyMean is np.mean bit for bit (pairwise summation)", () => {
  assert.equal(numpyMean(g.numpy_mean.values), g.numpy_mean.mean);
  for (const n of [1, 7, 8, 9, 17, 128, 129, 300]) {
    const v = g.numpy_mean.values.slice(0, n);
    const naive = v.reduce((a, b) => a + b, 0) / n;
    assert.ok(Math.abs(numpyMean(v) - naive) < 1e-12, `n ${n}`);
  }
  assert.ok(Number.isNaN(numpyMean([])));
});
