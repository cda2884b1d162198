import * as assert from "node:assert/strict";
import { loadTokenizer } from "../data/tokenizer.ts";
import { openModelFolder } from "../io/hf_folder.ts";
import { makeTinyModel } from "../train/testing.ts";
import { Rng } from "../util/rng.ts";
import { loadModel } from "./model.ts";
import { growVocab, noisyMeanInit, VocabArgError, vocabSpec } from "./vocab.ts";

const root = await Deno.makeTempDir({ prefix: "vocab_test_" });

Deno.test("vocabSpec: LLaMA-Factory's comma lists, config precedence and init fallback", async () => {
  const a = await vocabSpec({ add_tokens: " foo , bar", add_special_tokens: "<think>,</think>" });
  assert.deepEqual([a.tokens, a.specialTokens, a.init, a.descriptions], [
    ["foo", "bar"],
    ["<think>", "</think>"],
    "noise_init",
    null,
  ]);
  const cfg = `${root}/tokens.yaml`;
  await Deno.writeTextFile(cfg, "<svg>: start of an svg document\n</svg>: end of an svg document\n");
  const b = await vocabSpec({
    add_special_tokens: "<x>",
    new_special_tokens_config: cfg,
    init_special_tokens: "desc_init",
  });
  assert.deepEqual(b.specialTokens, ["<svg>", "</svg>"]);
  assert.equal(b.init, "desc_init");
  assert.match(b.warnings[0], /Using tokens from config/);
  const c = await vocabSpec({ add_special_tokens: "<x>", init_special_tokens: "desc_init_w_noise" });
  assert.equal(c.init, "noise_init");
  await assert.rejects(
    vocabSpec({ init_special_tokens: "zero" }),
    (e) => e instanceof VocabArgError && e.field === "init_special_tokens",
  );
  await Deno.writeTextFile(`${root}/list.yaml`, "- a\n- b\n");
  await assert.rejects(vocabSpec({ new_special_tokens_config: `${root}/list.yaml` }), /must be a dictionary/);
  await assert.rejects(vocabSpec({ add_tokens: "a,,b" }), /add_tokens: empty token/);
});

Deno.test("noisyMeanInit: new rows are the old mean plus N(0, 1/dim) noise, seeded", () => {
  const dim = 256, old = 300, fresh = 200;
  const r = new Rng(7);
  const w = new Float32Array((old + fresh) * dim);
  for (let i = 0; i < old * dim; i++) w[i] = 0.5 + r.normal() * 0.1 + (i % dim) * 1e-3;
  const ids = Array.from({ length: fresh }, (_, i) => old + i);
  noisyMeanInit(w, dim, ids, new Rng(1));
  const again = w.slice();
  noisyMeanInit(again, dim, ids, new Rng(1));
  assert.deepEqual(again, w, "same seed, same rows");
  let worst = 0, sq = 0;
  for (let j = 0; j < dim; j++) {
    let m = 0, n = 0;
    for (let r0 = 0; r0 < old; r0++) m += w[r0 * dim + j];
    m /= old;
    for (const id of ids) {
      n += w[id * dim + j];
      sq += (w[id * dim + j] - m) ** 2;
    }
    worst = Math.max(worst, Math.abs(n / fresh - m));
  }
  const std = 1 / Math.sqrt(dim);
  // each column's new-row mean is within 5 standard errors of the old mean
  assert.ok(worst < (5 * std) / Math.sqrt(fresh), `column mean off by ${worst}`);
  const sd = Math.sqrt(sq / (fresh * dim));
  assert.ok(Math.abs(sd - std) < 0.02 * std, `noise sd ${sd} vs ${std}`);
});

Deno.test("growVocab: the tokenizer gets the tokens, embeddings and untied head grow to a multiple of 64", async () => {
  const src = await makeTinyModel(`${root}/base`, 3, { tie_word_embeddings: false });
  // the fixture vocabulary has 2045 pieces and 3 added tokens (2045..2047); piece 100 is a token already
  const before = await loadTokenizer(src);
  const piece = before.idToToken(100)!;
  const spec = await vocabSpec({ add_tokens: [piece, "wonderland"], add_special_tokens: "<think>,<|im_end|>" });
  const out = `${root}/grown`;
  const r = await growVocab(src, out, spec, { seed: 5 });
  const tok = await loadTokenizer(out);
  assert.equal(r.ids[piece], 100, "a token the tokenizer has keeps its id");
  assert.equal(r.ids["<|im_end|>"], 2047, "an existing special token keeps its id");
  assert.deepEqual([r.ids.wonderland, r.ids["<think>"], r.added], [2048, 2049, 3], "new ids from len(tokenizer) on");
  assert.deepEqual([r.oldRows, r.newRows], [2048, 2112]);
  assert.deepEqual(r.resized, ["model.embed_tokens.weight", "lm_head.weight"]);
  assert.deepEqual(tok.encode("a<think>b", { addSpecialTokens: false }).includes(2049), true);
  assert.ok(tok.encode("x wonderland y", { addSpecialTokens: false }).includes(2048));
  assert.ok(tok.specialTokens.all.some((t) => t.content === "<think>" && t.id === 2049));
  assert.equal(tok.decode([2049], { skipSpecialTokens: true }), "", "<think> is special");
  const tcfg = JSON.parse(await Deno.readTextFile(`${out}/tokenizer_config.json`));
  const extra = tcfg.extra_special_tokens ?? tcfg.additional_special_tokens;
  assert.ok(extra.includes("<think>"));
  using f = await openModelFolder(out);
  assert.equal(f.config.vocab_size, 2112);
  assert.deepEqual(f.tensors.get("lm_head.weight")!.shape, [2112, 32]);
  const w = await f.readF32("model.embed_tokens.weight");
  using g = await openModelFolder(src);
  const old = await g.readF32("model.embed_tokens.weight");
  assert.deepEqual(w.slice(0, old.length), old, "old rows unchanged");
  // old logits unchanged on old ids
  const ids = [[3, 7, 11, 19, 23, 2046]];
  const a = await loadModel(src, { executor: "reference" }), b = await loadModel(out, { executor: "reference" });
  const la = (await a.forward(ids)).logits, lb = (await b.forward(ids)).logits;
  for (let t = 0; t < ids[0].length; t++) {
    for (let v = 0; v < 2048; v++) assert.ok(Math.abs(la[t * 2048 + v] - lb[t * 2112 + v]) < 1e-5);
  }
});

Deno.test("growVocab: desc_init gives a token the mean embedding of its description's tokens", async () => {
  const src = await makeTinyModel(`${root}/base2`, 4);
  const cfg = `${root}/desc.yaml`;
  await Deno.writeTextFile(cfg, "<svg>: hello world\n");
  const spec = await vocabSpec({ new_special_tokens_config: cfg, init_special_tokens: "desc_init" });
  const out = `${root}/grown2`;
  const r = await growVocab(src, out, spec);
  assert.deepEqual(r.resized, ["model.embed_tokens.weight"], "tied head: only the embedding");
  const tok = await loadTokenizer(src);
  const desc = tok.encode("hello world", { addSpecialTokens: false });
  using f = await openModelFolder(out);
  const w = await f.readF32("model.embed_tokens.weight");
  const id = r.ids["<svg>"];
  for (let j = 0; j < 32; j++) {
    const m = desc.reduce((s, t) => s + w[t * 32 + j], 0) / desc.length;
    assert.ok(Math.abs(w[id * 32 + j] - m) < 1e-6);
  }
});

Deno.test("growVocab matches transformers' add_tokens / add_special_tokens and resize (fixtures/vocab)", async () => {
  const g = JSON.parse(await Deno.readTextFile(new URL("../../fixtures/vocab/golden.json", import.meta.url)));
  const src = await makeTinyModel(`${root}/base3`, 6, { tie_word_embeddings: false });
  const spec = await vocabSpec({ add_tokens: g.add_tokens, add_special_tokens: g.add_special_tokens });
  const r = await growVocab(src, `${root}/grown3`, spec);
  const tok = await loadTokenizer(`${root}/grown3`);
  assert.deepEqual([r.ids, r.added], [g.ids, g.added]);
  assert.equal(tok.vocabSize, g.len_after);
  assert.equal(r.newRows, g.resized_rows);
  for (const [text, ids] of Object.entries(g.encode)) {
    assert.deepEqual(tok.encode(text, { addSpecialTokens: false }), ids, text);
    assert.equal(tok.decode(ids as number[], { skipSpecialTokens: true }), g.decode_skip_special[text], text);
  }
});
