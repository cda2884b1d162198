/**
 * Stage processing against LLaMA-Factory: the goldens of fixtures/data_goldens/make_goldens.py (sft with truncation,
 * train_on_prompt, mask_history, efficient_eos, tools, packing and neat packing; rm/dpo; kto with KL pairs; pt
 * blocks) compared exactly, plus LF's own test tables (infer_seqlen, collator padding).
 */
import assert from "node:assert/strict";
import { goldens, goldenTemplate, toAligned, toDataArgs } from "./data_goldens.ts";
import {
  greedyKnapsack,
  IGNORE_INDEX,
  inferSeqlen,
  type KtoRecord,
  processDataset,
  type ProcessedRecord,
  resolveDataArgs,
} from "./process.ts";
import { collate, collateKto, collatePairwise } from "./process_collate.ts";
import type { AlignedExample } from "./aligned.ts";

Deno.test("infer_seqlen (LF test_processor_utils.py and more)", () => {
  assert.deepEqual(inferSeqlen(3000, 2000, 1000), [600, 400]);
  for (const [s, t, c, ns, nt] of goldens.infer_seqlen) {
    assert.deepEqual(inferSeqlen(s, t, c), [ns, nt], `${s},${t},${c}`);
  }
});

Deno.test("greedy_knapsack", () => {
  for (const [lengths, cap, want] of goldens.knapsack) assert.deepEqual(greedyKnapsack(lengths, cap), want);
});

/** Fills LF's all-ones attention masks the generator leaves out. */
function withMasks(r: Record<string, number[] | boolean>): Record<string, number[] | boolean> {
  const out = { ...r };
  for (const p of ["", "chosen_", "rejected_", "kl_"]) {
    const ids = r[`${p}input_ids`];
    if (Array.isArray(ids) && !(`${p}attention_mask` in r)) out[`${p}attention_mask`] = ids.map(() => 1);
  }
  return out;
}

Deno.test("processing matches the LLaMA-Factory goldens for every stage", async () => {
  for (const g of goldens.process) {
    const tpl = await goldenTemplate(g.template, g.options);
    const examples = goldens.examples[g.examples].map(toAligned);
    const { records } = processDataset(examples, tpl, toDataArgs(g.args));
    const what = `${g.template} ${JSON.stringify(g.args)} ${JSON.stringify(g.options)} ${g.label}`;
    assert.equal(records.length, g.records.length, `${what}: record count`);
    for (const [i, want] of g.records.entries()) {
      assert.deepEqual(records[i] as unknown, withMasks(want), `${what}: record ${i}`);
    }
  }
});

function ex(prompt: string[], response: string[], extra: Partial<AlignedExample> = {}): AlignedExample {
  return {
    prompt: prompt.map((content, i) => ({ role: i % 2 ? "assistant" : "user", content })),
    response: response.map((content) => ({ role: "assistant", content })),
    system: "",
    tools: "",
    source: { dataset: "t", file: "t.json", row: 1 },
    ...extra,
  };
}

Deno.test("invalid rows are dropped with LF's warning; sources point back at the examples", async () => {
  const tpl = await goldenTemplate("qwen3_nothink");
  const rows = [ex(["a"], ["b"]), ex(["a", "b"], ["c"]), ex(["a"], []), ex(["c"], ["d"])];
  const r = processDataset(rows, tpl, { stage: "sft" });
  assert.equal(r.records.length, 2);
  assert.deepEqual(r.sources, [[0], [3]]);
  assert.equal(r.warnings.filter((w) => w.startsWith("Dropped invalid example")).length, 2);
});

Deno.test("kto: KL partner is the previous row of the batch; an invalid partner falls back to an earlier valid row", async () => {
  const tpl = await goldenTemplate("qwen3_nothink");
  const rows = [
    ex(["q0"], ["a0"], { ktoTag: true }),
    ex(["q1"], [], { ktoTag: false }), // invalid: no response
    ex(["q2"], ["a2"], { ktoTag: false }),
  ];
  const { records, warnings } = processDataset(rows, tpl, { stage: "kto" });
  const recs = records as KtoRecord[];
  const text = (ids: number[]) => tpl.tokenizer.decode(ids);
  assert.equal(recs.length, 2);
  assert.match(text(recs[0].kl_input_ids), /q0[\s\S]*a2/); // row 0 pairs with the batch's last row
  assert.match(text(recs[1].kl_input_ids), /q2[\s\S]*a0/); // row 2's partner (row 1) is invalid → row 0
  assert.deepEqual(recs.map((r) => r.kto_tags), [true, false]);
  assert.ok(warnings.some((w) => w.startsWith("Dropped invalid example")));
  const batches = processDataset([rows[0], rows[2], rows[0]], tpl, { stage: "kto", batchSize: 2 })
    .records as KtoRecord[];
  assert.match(text(batches[2].kl_input_ids), /q0[\s\S]*a0/); // a batch of one pairs a row with itself
});

Deno.test("argument rules: packing lowers cutoff_len, pt packs by default, sft-only switches", () => {
  assert.equal(resolveDataArgs({ stage: "sft", cutoffLen: 256, packing: true }).cutoffLen, 255);
  assert.equal(resolveDataArgs({ stage: "sft", cutoffLen: 256, neatPacking: true }).packing, true);
  assert.deepEqual(
    [
      resolveDataArgs({ stage: "pt", cutoffLen: 256 }).cutoffLen,
      resolveDataArgs({ stage: "pt", cutoffLen: 256 }).packing,
    ],
    [256, true],
  );
  assert.equal(resolveDataArgs({ stage: "sft" }).packing, false);
  assert.throws(() => resolveDataArgs({ stage: "sft", trainOnPrompt: true, maskHistory: true }), /incompatible/);
  assert.throws(() => resolveDataArgs({ stage: "dpo", neatPacking: true }), /except SFT/);
  assert.throws(() => resolveDataArgs({ stage: "kto", trainOnPrompt: true }), /except SFT/);
});

Deno.test("collator pads right to a multiple (LF test_base_collator with multiple 8)", () => {
  const q = IGNORE_INDEX;
  const p = 99;
  const b = collate([
    { input_ids: [0, 1, 2, 3, 4, 5], attention_mask: [1, 1, 1, 1, 1, 1], labels: [q, q, 2, 3, 4, 5] },
    { input_ids: [6, 7], attention_mask: [1, 1], labels: [q, 7] },
  ], { padId: p, multiple: 8 });
  assert.deepEqual(b.input_ids, [[0, 1, 2, 3, 4, 5, p, p], [6, 7, p, p, p, p, p, p]]);
  assert.deepEqual(b.attention_mask, [[1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0]]);
  assert.deepEqual(b.labels, [[q, q, 2, 3, 4, 5, q, q], [q, 7, q, q, q, q, q, q]]);
  assert.equal(b.position_ids, undefined);
  assert.equal(collate([{ input_ids: [1] }], { padId: 0 }).length, 64);
  assert.equal(collate([{ input_ids: [1] }], { padId: 0, minLength: 65 }).length, 128);
});

Deno.test("pairwise and kto collators; packed records keep segment ids and positions", async () => {
  const tpl = await goldenTemplate("llama3");
  const pairs = goldens.examples.pairs.map(toAligned);
  const rm = processDataset(pairs, tpl, { stage: "rm" }).records as ProcessedRecord[];
  const b = collatePairwise(rm as never, { padId: tpl.padId, multiple: 16 });
  assert.equal(b.input_ids.length, 2 * rm.length);
  assert.deepEqual(
    b.input_ids[rm.length].slice(0, 5),
    (rm[0] as { rejected_input_ids: number[] }).rejected_input_ids.slice(0, 5),
  );
  const kto = processDataset(goldens.examples.kto.map(toAligned), tpl, { stage: "kto" }).records as KtoRecord[];
  const k = collateKto(kto, { padId: tpl.padId });
  assert.deepEqual(k.ktoTags, [true, false, true, false]);
  assert.equal(k.kl.input_ids.length, 4);

  const sft = goldens.examples.sft_packing.map(toAligned);
  const packed = processDataset(sft, tpl, { stage: "sft", cutoffLen: 128, neatPacking: true });
  const batch = collate(packed.records as never, { padId: tpl.padId, multiple: 64 });
  assert.equal(batch.length, 128);
  const seg = batch.attention_mask[0];
  assert.equal(seg[0], 1);
  assert.equal(seg.at(-1), 0);
  assert.ok(batch.position_ids && batch.position_ids[0][0] === 0);
  assert.deepEqual(packed.sources.flat().toSorted((a, b) => a - b), sft.map((_, i) => i));
});
