import assert from "node:assert/strict";
import { ChatEngine, type ChatResult, resolveChatOptions } from "./chat.ts";
import { writePaddedVocabModel } from "../nn/vocab_testing.ts";

const TINY = new URL("../../fixtures/tiny/model", import.meta.url).pathname;
const chat = await ChatEngine.load(TINY, { template: "qwen" });
const prompt = chat.encode([{ role: "user", content: "What is Whetstone?" }]);
const greedy = { maxNewTokens: 12, doSample: false };

Deno.test("chat: LF's per-request rules over its GeneratingArguments defaults", () => {
  const d = resolveChatOptions({ seed: 1 });
  assert.deepEqual(d, {
    maxNewTokens: 1024,
    doSample: true,
    temperature: 0.95,
    topP: 0.7,
    topK: 50,
    repetitionPenalty: 1,
    seed: 1,
  });
  const zero = resolveChatOptions({ temperature: 0 });
  assert.equal(zero.doSample, false, "temperature 0 is greedy");
  const many = resolveChatOptions({ temperature: 0, doSample: false }, 3);
  assert.deepEqual([many.doSample, many.temperature], [true, 1], "several answers force sampling");
  assert.throws(() => resolveChatOptions({ repetitionPenalty: 0 }), /repetition_penalty must be > 0/);
});

Deno.test("chat: greedy answers equal model.generate; a stop string cuts the answer and never streams", async () => {
  const stop = chat.template.stopTokenIds();
  const ids = await chat.model.generate(prompt, { ...greedy, stop });
  const r = await chat.complete(prompt, greedy);
  assert.deepEqual(r.ids, ids);
  assert.equal(r.completionTokens, ids.length);
  assert.equal(r.promptTokens, prompt.length);
  assert.equal(r.finishReason, stop.includes(ids.at(-1)!) ? "stop" : "length");
  assert.ok(r.text.length >= 4, `a greedy answer to cut: ${JSON.stringify(r.text)}`);
  const word = r.text.slice(2, 4);
  const deltas: string[] = [];
  const cut = await chat.complete(prompt, { ...greedy, stop: ["never there", word] }, (d) => deltas.push(d));
  assert.equal(cut.text, r.text.slice(0, r.text.indexOf(word)));
  assert.equal(cut.finishReason, "stop");
  assert.equal(deltas.join(""), cut.text);
  const streamed: string[] = [];
  const whole = await chat.complete(prompt, greedy, (d) => streamed.push(d));
  assert.equal(streamed.join(""), whole.text);
});

Deno.test("chat: calls queue instead of colliding on the KV cache; n answers sample with seed + i", async () => {
  const [a, b] = await Promise.all([chat.complete(prompt, greedy), chat.complete(prompt, greedy)]);
  assert.equal(a.text, b.text);
  const many = await chat.completeMany(prompt, 3, { maxNewTokens: 6, seed: 11 });
  assert.equal(many.length, 3);
  const again = await chat.completeMany(prompt, 3, { maxNewTokens: 6, seed: 11 });
  assert.deepEqual(again.map((x) => x.ids), many.map((x) => x.ids));
  const one = await chat.complete(prompt, { maxNewTokens: 6, seed: 12, temperature: 1, topP: 1, topK: 0 });
  const rowOne = await chat.completeMany(prompt, 2, { maxNewTokens: 6, seed: 11, temperature: 1, topP: 1, topK: 0 });
  assert.deepEqual(rowOne[1].ids, one.ids, "row 1 samples with seed + 1");
});

Deno.test("chat: a model padded past its tokenizer never answers with an id the tokenizer cannot decode", async () => {
  // fixtures/tiny/model with 2048 padded rows (row 2048 + i = 10 × row i): unmasked, a padded id wins every step.
  const dir = await Deno.makeTempDir({ prefix: "whetstone-padded-chat-" });
  try {
    const { vocab } = await writePaddedVocabModel(TINY, dir, 2048);
    const padded = await ChatEngine.load(dir, { template: "qwen" });
    assert.equal(padded.template.tokenizer.idLimit, vocab);
    const decodable = (r: ChatResult, what: string) =>
      assert.ok(r.ids.length > 0 && r.ids.every((t) => t >= 0 && t < vocab), `${what}: ${r.ids}`);
    const g = await padded.complete(prompt, greedy);
    decodable(g, "greedy");
    const want = await chat.complete(prompt, greedy);
    assert.deepEqual([g.ids, g.text], [want.ids, want.text], "greedy answers as the unpadded model does");
    for (const seed of [1, 2, 3]) {
      decodable(await padded.complete(prompt, { maxNewTokens: 8, seed }), `sampled, seed ${seed}`);
      const wide = { maxNewTokens: 8, seed, temperature: 1, topP: 1, topK: 0 };
      (await padded.completeMany(prompt, 3, wide)).forEach((r, i) => decodable(r, `completeMany ${i}, seed ${seed}`));
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
