import assert from "node:assert/strict";
import { cutSent, lcsLength, pySplit, rougeL, rougeN, rougeScores, rougeSentences } from "./rouge.ts";
import { metricGoldens } from "./testing.ts";

const g = await metricGoldens();

function close(got: number, want: number, what: string, tol = 1e-15) {
  assert.ok(Math.abs(got - want) <= tol, `${what}: ${got} vs ${want}`);
}

Deno.test("rouge: rouge-chinese's get_scores on every golden pair's jieba tokens (p, r, f)", () => {
  let n = 0;
  for (const c of g.cases) {
    if (!c.rouge) continue;
    n++;
    const s = rougeScores(c.pred_tokens.join(" "), c.label_tokens.join(" "));
    for (const k of ["rouge-1", "rouge-2", "rouge-l"] as const) {
      for (const stat of ["p", "r", "f"] as const) close(s[k][stat], c.rouge[k][stat], `${c.pred} ${k}.${stat}`);
    }
  }
  assert.ok(n >= 25, `only ${n} ROUGE cases`);
});

Deno.test("rouge: precision and recall agree with torchmetrics' ROUGEScore where the definitions coincide", () => {
  const checked = g.cases.filter((c) => c.torchmetrics !== null);
  assert.ok(checked.length >= 15, `only ${checked.length} torchmetrics cases`);
  for (const c of checked) {
    const s = rougeScores(c.pred_tokens.join(" "), c.label_tokens.join(" "));
    for (const [key, v] of Object.entries(c.torchmetrics!)) {
      const [k, stat] = key.split(".") as ["rouge-1" | "rouge-2" | "rouge-l", "p" | "r"];
      close(s[k][stat], v, `${c.pred} ${key} (torchmetrics, f32)`, 1e-6);
    }
  }
});

Deno.test("rouge: sentence cutting, Python whitespace, sets of n-grams, plain LCS", () => {
  assert.deepEqual(cutSent("你好。世界！好吗？是的"), ["你好。", "世界！", "好吗？", "是的"]);
  assert.deepEqual(cutSent("他说：“好。”然后走了。  "), ["他说：“好。”", "然后走了。"]); // no cut before a quote
  assert.deepEqual(cutSent("等等……好......吧"), ["等等……", "好......", "吧"]);
  assert.deepEqual(cutSent("a?b"), ["a?", "b"]);
  // A whitespace-only piece becomes "" and stays (one empty-string word), as in Python.
  assert.deepEqual(rougeSentences("第一行 \n \n 第二行"), ["第一行", "", "第二行"]);
  assert.deepEqual(pySplit("a\u3000b\x1cc\u0085d\ufeffe"), ["a", "b", "c", "d\ufeffe"]); // U+FEFF is not Python space
  // Repeated n-grams count once (rouge-chinese's exclusive=True).
  const r1 = rougeN(["a a a b"], ["a b"], 1);
  assert.deepEqual([r1.p, r1.r], [1, 1]);
  const l = rougeL(["a b", "c d"], ["a c", "d"]); // flattened, not union-LCS per sentence
  assert.equal(lcsLength(["a", "b", "c", "d"], ["a", "c", "d"]), 3);
  assert.deepEqual([l.p, l.r], [3 / 4, 1]);
  assert.throws(() => rougeN([], ["a"], 1), /Hypothesis is empty/);
});
