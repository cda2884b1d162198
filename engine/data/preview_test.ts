/** Dataset preview: spans cover the processed sequence exactly and mark the trained tokens. */
import assert from "node:assert/strict";
import { goldens, goldenTemplate, goldenTokenizer, toAligned } from "./data_goldens.ts";
import { previewDataset } from "./preview.ts";
import { encodeSupervised } from "./process_sft.ts";

Deno.test("sft preview: spans concatenate to the record, trained spans are the answers", async () => {
  const tpl = await goldenTemplate("qwen3_nothink");
  const examples = goldens.examples.sft.map(toAligned);
  const rows = previewDataset(examples, tpl.tokenizer.base, tpl, 3);
  assert.equal(rows.length, 3);
  for (const row of rows) {
    const ex = examples[row.index];
    const [view] = row.views;
    const { input_ids, labels } = encodeSupervised(tpl, ex, { cutoffLen: 2048 });
    assert.deepEqual(view.spans.flatMap((s) => s.ids), input_ids);
    assert.equal(view.trainedTokens, labels.filter((l) => l !== -100).length);
    const trained = view.spans.filter((s) => s.trained).map((s) => s.text);
    const answers = row.messages.filter((_, i) => i % 2 === 1).map((m) => m.content + "<|im_end|>\n");
    assert.deepEqual(trained, answers);
    assert.deepEqual(row.messages, [...ex.prompt, ...ex.response]);
  }
});

Deno.test("preview by template name, pairwise and kto views, dropped rows", async () => {
  const tok = await goldenTokenizer("llama3");
  const pairs = goldens.examples.pairs.map(toAligned);
  const rm = previewDataset(pairs, tok, "llama3", 2, { stage: "dpo", cutoffLen: 48 });
  assert.deepEqual(rm[0].views.map((v) => v.name), ["chosen", "rejected"]);
  assert.ok(rm.every((r) => r.views.every((v) => v.length <= 48)));
  const kto = previewDataset(goldens.examples.kto.map(toAligned), tok, "llama3", 4, { stage: "kto" });
  assert.deepEqual(kto[1].views.map((v) => v.name), ["input", "kl"]);
  assert.equal(kto[1].ktoTag, false);
  const broken = { ...pairs[0], response: pairs[0].response.slice(0, 1) };
  const [row] = previewDataset([broken], tok, "llama3", 1, { stage: "rm" });
  assert.equal(row.views.length, 0);
  assert.match(row.dropped!, /invalid example/);
  const pt = previewDataset(goldens.examples.pt.map(toAligned), tok, null, 2, { stage: "pt", cutoffLen: 8 });
  assert.equal(pt[0].views[0].length, 8);
  assert.ok(pt[0].views[0].spans.every((s) => s.trained));
});
