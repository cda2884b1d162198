/**
 * KV-cached generation against transformers' greedy `generate` (fixtures/models/<family>/generate.json, made by
 * fixtures/make_models.py) token for token, on the reference executor, on WebGPU and on ONNX Runtime; the cached decode's
 * next-token logits against a full forward; and the host-side sampling processors.
 */
import assert from "node:assert/strict";
import { loadModel } from "./model.ts";
import { chooseToken, seededRandom } from "./generate.ts";
import { decodeMask } from "./kv_decoder.ts";
import { ReferenceExecutor } from "../exec/reference.ts";
import { OnnxExecutor } from "../exec/onnx/executor.ts";
import { loadTokenizer } from "../data/tokenizer.ts";
import { writePaddedVocabModel } from "./vocab_testing.ts";

import { DENSE } from "./families_testing.ts";
import { executors } from "./executors_testing.ts";
const root = new URL("../../fixtures/models/", import.meta.url).pathname;
const FAMILIES = ["llama", "llama_bf16", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", ...DENSE];

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return a.length === b.length ? worst : Infinity;
}

interface GenGolden {
  eos: number[];
  max_new_tokens: number;
  runs: { prompt: number[]; new_tokens: number[] }[];
}

for (const family of FAMILIES) {
  for (const [exName, make] of executors()) {
    Deno.test(`generate ${family} on ${exName}: greedy tokens match transformers, cached logits match forward, batched too`, async () => {
      const gold: GenGolden = JSON.parse(await Deno.readTextFile(`${root}${family}/generate.json`));
      const model = await loadModel(`${root}${family}`, { executor: await make() });
      const opts = { maxNewTokens: gold.max_new_tokens, stop: gold.eos };
      const V = model.config.vocab;
      const single: Float32Array[][] = [];
      for (const run of gold.runs) {
        const steps: Float32Array[] = [];
        const streamed: number[] = [];
        const got = await model.generate(run.prompt, {
          ...opts,
          onToken: (t) => streamed.push(t),
          onLogits: (l) => steps.push(l.slice()),
        });
        assert.deepEqual(got, run.new_tokens, `prompt [${run.prompt}]`);
        assert.deepEqual(streamed, got);
        single.push(steps);
        // Each step's logits (prefill, then cached decode) against a full forward over the same tokens.
        const all = [...run.prompt, ...got];
        const { logits } = await model.forward([all]);
        steps.forEach((l, k) => {
          const row = (run.prompt.length - 1 + k) * V;
          assert.ok(maxDiff(l, logits.subarray(row, row + V)) <= 1e-4, `step ${k}`);
        });
      }
      // The golden prompts and a longer third one in one batch (3 rows, bucket 4): the same tokens, and the same
      // logits at every step, as each prompt alone.
      const long = [...gold.runs[0].prompt, ...gold.runs[1].prompt]; // same buckets: no extra single graphs
      const prompts = [...gold.runs.map((r) => r.prompt), long];
      const want = [...gold.runs.map((r) => r.new_tokens), await model.generate(long, opts)];
      const batchLogits: Float32Array[][] = prompts.map(() => []);
      const got = await model.generateBatch(prompts, { ...opts, onLogits: (l, b) => batchLogits[b].push(l.slice()) });
      assert.deepEqual(got, want);
      single.forEach((steps, b) =>
        steps.forEach((l, k) => assert.ok(maxDiff(batchLogits[b][k], l) <= 1e-4, `row ${b} step ${k}`))
      );
    });
  }
}

Deno.test("generate: sampling is seeded, stops on eos, and grows the cache bucket past 64", async () => {
  const model = await loadModel(`${root}llama`, { executor: new ReferenceExecutor() });
  const opts = { maxNewTokens: 6, doSample: true, temperature: 0.8, topK: 20, topP: 0.9, seed: 7 };
  const a = await model.generate([1, 5, 9], opts), b = await model.generate([1, 5, 9], opts);
  assert.deepEqual(a, b);
  assert.equal(a.length, 6);
  const greedy = await model.generate([1, 5, 9], { maxNewTokens: 6 });
  const stopped = await model.generate([1, 5, 9], { maxNewTokens: 6, stop: [greedy[1]] });
  assert.deepEqual(stopped, greedy.slice(0, greedy.indexOf(greedy[1]) + 1));
  const long = Array.from({ length: 62 }, (_, i) => 1 + (i * 7) % 120);
  const steps: Float32Array[] = [];
  const got = await model.generate(long, { maxNewTokens: 4, onLogits: (l) => steps.push(l.slice()) });
  const { logits } = await model.forward([[...long, ...got]]);
  steps.forEach((l, k) => {
    const row = (long.length - 1 + k) * model.config.vocab;
    for (let v = 0; v < model.config.vocab; v++) assert.ok(Math.abs(l[v] - logits[row + v]) <= 1e-4);
  });
});

Deno.test("chooseToken: transformers' processors (repetition penalty, temperature, top-k, top-p)", () => {
  const r = seededRandom(1);
  // Repetition penalty divides positive and multiplies negative logits of seen tokens.
  assert.equal(chooseToken([2, 1.5, -1], [0], { repetitionPenalty: 2 }, r), 1);
  assert.equal(chooseToken([2, 1.5, -1], [], {}, r), 0);
  // top-k 1 and a tiny top-p are greedy.
  for (let i = 0; i < 20; i++) {
    assert.equal(chooseToken([0.1, 3, 0.2, 2.9], [], { doSample: true, topK: 1 }, r), 1);
    assert.equal(chooseToken([0.1, 3, 0.2, 2.9], [], { doSample: true, topP: 0.01 }, r), 1);
  }
  // top-p 0.6 over probabilities [0.5, 0.3, 0.2] keeps the first two.
  const logits = [Math.log(0.5), Math.log(0.3), Math.log(0.2)];
  const counts = [0, 0, 0];
  for (let i = 0; i < 2000; i++) counts[chooseToken(logits, [], { doSample: true, topP: 0.6 }, r)]++;
  assert.equal(counts[2], 0);
  assert.ok(Math.abs(counts[0] / 2000 - 0.625) < 0.05, `${counts}`);
  // A decode mask over 5 slots and the new token: window 2 at position 3 sees slot 2 and itself.
  assert.deepEqual(Array.from(decodeMask(5, 3, 2), (x) => x === 0), [false, false, true, false, false, true]);
  assert.deepEqual(Array.from(decodeMask(4, 2, 0), (x) => x === 0), [true, true, false, false, true]);
});

Deno.test("generateBatch: rows stop on their own, sampling row i uses seed + i, padding rows are dropped", async () => {
  const model = await loadModel(`${root}llama`, { executor: new ReferenceExecutor() });
  const prompts = [[1, 5, 9], [1, 7, 7, 3, 12, 40, 2, 8, 9], [3]];
  const greedy = await model.generateBatch(prompts, { maxNewTokens: 6 });
  assert.equal(greedy.length, 3);
  // A stop id that row 1 reaches early: each row equals its own generate with that stop.
  const stop = [greedy[1][1]];
  const alone = [];
  for (const p of prompts) alone.push(await model.generate(p, { maxNewTokens: 6, stop }));
  const stopped = await model.generateBatch(prompts, { maxNewTokens: 6, stop });
  assert.deepEqual(stopped, alone);
  assert.equal(stopped[1].length, 2);
  assert.ok(stopped.some((r) => r.length === 6), `${JSON.stringify(stopped)}`);
  const opts = { maxNewTokens: 5, doSample: true, temperature: 0.9, topK: 30, seed: 7 };
  const sampled = await model.generateBatch(prompts.slice(0, 2), opts);
  assert.deepEqual(sampled, [
    await model.generate(prompts[0], opts),
    await model.generate(prompts[1], { ...opts, seed: 8 }),
  ]);
  assert.deepEqual(await model.generateBatch([], opts), []);
  assert.deepEqual(await model.generateBatch(prompts, { maxNewTokens: 0 }), [[], [], []]);
});

Deno.test("generateStream: yields generate's ids, ends early on break, and guards a shared cache", async () => {
  const model = await loadModel(`${root}llama`, { executor: new ReferenceExecutor() });
  const want = await model.generate([1, 5, 9], { maxNewTokens: 6 });
  const got: number[] = [];
  for await (const t of model.generateStream([1, 5, 9], { maxNewTokens: 6 })) got.push(t);
  assert.deepEqual(got, want);
  // Breaking out ends it (and frees its cache for the next call).
  const first: number[] = [];
  for await (const t of model.generateStream([1, 5, 9], { maxNewTokens: 6 })) {
    first.push(t);
    if (first.length === 2) break;
  }
  assert.deepEqual(first, want.slice(0, 2));
  // An overlapping call that would share the running stream's KV cache throws; after the stream ends it runs.
  const stream = model.generateStream([1, 5, 9], { maxNewTokens: 6 });
  assert.equal((await stream.next()).value, want[0]);
  await assert.rejects(model.generate([4], { maxNewTokens: 3 }), /another generation .* is running/);
  await stream.return(undefined);
  assert.equal((await model.generate([4], { maxNewTokens: 3 })).length, 3);
});

Deno.test("generate, generateBatch, generateStream: bad inputs name the prompt", async () => {
  const model = await loadModel(`${root}llama`, { executor: new ReferenceExecutor() });
  const V = model.config.vocab;
  await assert.rejects(model.generateBatch([[1, 2], []], { maxNewTokens: 2 }), /generateBatch: prompts\[1\] is empty/);
  await assert.rejects(
    model.generateBatch([[1], [1, V]], { maxNewTokens: 2 }),
    new RegExp(`generateBatch: prompts\\[1\\]\\[1\\] = ${V} is not a token id in \\[0, ${V}\\)`),
  );
  await assert.rejects(model.generateBatch([[1], [2.5]], { maxNewTokens: 2 }), /prompts\[1\]\[0\] = 2.5/);
  await assert.rejects(
    model.generateBatch([[1], 7 as unknown as number[]], { maxNewTokens: 2 }),
    /prompts\[1\] must be an array/,
  );
  await assert.rejects(model.generateBatch([[1]], { maxNewTokens: -1 }), /maxNewTokens must be an integer >= 0/);
  await assert.rejects(model.generate([], { maxNewTokens: 2 }), /generate: inputIds is empty/);
  await assert.rejects(model.generateStream([3, -1], { maxNewTokens: 2 }).next(), /generateStream: inputIds\[1\] = -1/);
});

Deno.test("generate: ids past the tokenizer are never chosen, even when their rows hold the largest logits", async () => {
  // fixtures/tiny/model with 2048 padded rows (row 2048 + i = 10 × row i): a padded id wins every argmax.
  const tiny = new URL("../../fixtures/tiny/model", import.meta.url).pathname;
  const dir = await Deno.makeTempDir({ prefix: "whetstone-padded-" });
  try {
    const { vocab } = await writePaddedVocabModel(tiny, dir, 2048);
    const tok = await loadTokenizer(dir);
    assert.equal(tok.idLimit, vocab, "the tokenizer decodes ids below 2048 only");
    const model = await loadModel(dir, { executor: new ReferenceExecutor() });
    assert.equal(model.config.vocab, 2 * vocab);
    const prompt = tok.encode("What is Whetstone?"), prompts = [prompt, tok.encode("Hello"), [5]];
    const rawIds = await model.generate(prompt, { maxNewTokens: 3 });
    assert.ok(rawIds.every((t) => t >= vocab), `unmasked, the padded rows win: ${rawIds}`);
    const limit = { vocabLimit: tok.idLimit };
    const sampled = [
      { doSample: true, temperature: 1, topK: 0, topP: 1, seed: 3 },
      { doSample: true, temperature: 0.95, topK: 50, topP: 0.7, seed: 4 },
      { doSample: true, temperature: 1, topK: 3000, repetitionPenalty: 1.2, seed: 5 },
    ];
    const decodable = (ids: number[], what: string) => {
      assert.ok(ids.length > 0 && ids.every((t) => t >= 0 && t < vocab), `${what}: ${ids}`);
      assert.equal(typeof tok.decode(ids), "string");
    };
    // Greedy with the limit is the unpadded model's greedy: the real rows' logits are the same.
    const plain = await loadModel(tiny, { executor: new ReferenceExecutor() });
    const greedy = await model.generate(prompt, { maxNewTokens: 8, ...limit });
    assert.deepEqual(greedy, await plain.generate(prompt, { maxNewTokens: 8 }));
    for (const o of [{}, ...sampled]) {
      const opts = { maxNewTokens: 8, ...limit, ...o };
      decodable(await model.generate(prompt, opts), `generate ${JSON.stringify(o)}`);
      (await model.generateBatch(prompts, opts)).forEach((r, b) => decodable(r, `generateBatch row ${b}`));
      const streamed: number[] = [];
      for await (const t of model.generateStream(prompt, opts)) streamed.push(t);
      decodable(streamed, `generateStream ${JSON.stringify(o)}`);
    }
    assert.throws(() => chooseToken([1, 2], [], { vocabLimit: 0 }, Math.random), /vocabLimit must be an integer >= 1/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("generate: a one-shot generation on ONNX Runtime compiles its own sizes only, and gives the same tokens", async () => {
  const tiny = new URL("../../fixtures/tiny/model", import.meta.url).pathname;
  const prompt = [1, 5, 9, 13, 2, 7];
  const dir = await Deno.makeTempDir({ prefix: "whetstone-oneshot-" });
  // A symbolic model (one session for every size) is saved to the cache's symbolic/ folder when it is built.
  const symbolicModels = () => {
    try {
      return Array.from(Deno.readDirSync(`${dir}/symbolic`)).length;
    } catch {
      return 0; // no folder: nothing saved
    }
  };
  const run = async (oneShot: boolean) => {
    const ex = await OnnxExecutor.create({ modelCache: { dir, minNodes: 0 } });
    const model = await loadModel(tiny, { executor: ex });
    const ids = await model.generate(prompt, { maxNewTokens: 6, oneShot });
    ex.dispose();
    return ids;
  };
  try {
    const once = await run(true);
    assert.equal(symbolicModels(), 0, "one shot: no symbolic model");
    assert.deepEqual(once, await run(false));
    assert.equal(symbolicModels(), 2, "the default: a symbolic prefill and decode");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
