/**
 * RoPE whose frequencies depend on the sequence length ("dynamic", "longrope"), against transformers
 * (fixtures/rope/<name>/runs.json, made by fixtures/rope/make_rope_runs.py, threshold 12 tokens) on every executor:
 * the loss of padded batches follows the batch's actual length, not Whetstone's padded bucket; greedy generation
 * switches frequencies mid-way as transformers does (llama: each new token gets its step's frequencies, the cached keys
 * stay; Phi-3: the whole sequence is computed again at the crossing), alone and batched.
 */
import assert from "node:assert/strict";
import { loadModel } from "./model.ts";
import { executors } from "./executors_testing.ts";
import { ropeFreqInput, ropeSeqLen } from "./rope_feed.ts";
import { completeFeeds, Graph, ropeFreqWords, ropeInvFreq, type RopeScaling } from "../graph/mod.ts";
import { longropeReprefill } from "./generate.ts";
import { decoderConfig } from "./config.ts";
import { Batcher } from "./batcher.ts";

interface Runs {
  threshold: number;
  max_new_tokens: number;
  losses: { rows: number[][]; loss: number; loss_at_bucket: number }[];
  generate: { prompts: number[][]; new_tokens: number[][]; new_tokens_no_cache: number[][] }[];
}
const root = new URL("../../fixtures/rope/", import.meta.url).pathname;
const MODELS = ["phi3_longrope12", "llama_longrope12", "llama_dynamic12"];
const close = (got: number, want: number) => Math.abs(got - want) <= 1e-5 * Math.abs(want) + 1e-6;

for (const name of MODELS) {
  const runs: Runs = JSON.parse(await Deno.readTextFile(`${root}${name}/runs.json`));
  for (const [exName, make] of executors()) {
    Deno.test(`rope runs ${name} on ${exName}: padded-batch losses and generation across the threshold`, async () => {
      const model = await loadModel(`${root}${name}`, { executor: await make() });
      let told = 0;
      for (const { rows, loss, loss_at_bucket } of runs.losses) {
        const got = await model.loss(rows, { labels: rows });
        const lens = rows.map((r) => r.length);
        assert.ok(close(got, loss), `[${lens}]: loss ${got}, transformers ${loss} (at the bucket: ${loss_at_bucket})`);
        if (!close(loss_at_bucket, loss)) told++;
      }
      assert.ok(told >= 2, "the padded bucket's frequencies would change at least two of these losses");
      // Phi-3: transformers' cache reset means every step on the whole sequence (see the generator's docstring).
      const phi3 = model.config.family === "phi3";
      for (const run of runs.generate) {
        const want = phi3 ? run.new_tokens_no_cache : run.new_tokens;
        const opts = { maxNewTokens: runs.max_new_tokens };
        const got = run.prompts.length === 1
          ? [await model.generate(run.prompts[0], opts)]
          : await model.generateBatch(run.prompts, opts);
        assert.deepEqual(got, want, `prompts of ${run.prompts.map((p) => p.length)} tokens`);
      }
      // The continuous batcher: every row as generate gives it alone, each row switching at its own length.
      const prompts = runs.generate.flatMap((r) => r.prompts);
      const alone = [];
      for (const p of prompts) alone.push(await model.generate(p, { maxNewTokens: runs.max_new_tokens }));
      const batcher = new Batcher(model, { maxBatch: 8 });
      assert.deepEqual(await batcher.generateAll(prompts, () => ({ maxNewTokens: runs.max_new_tokens })), alone);
      if (!phi3) {
        // Keeping the cached keys matters here: recomputing them at each step gives other tokens.
        assert.ok(runs.generate.some((r) => JSON.stringify(r.new_tokens) !== JSON.stringify(r.new_tokens_no_cache)));
      }
    });
  }
}

Deno.test("rope runs: the length is the largest real position + 1; Phi-3 longrope re-prefills at its threshold", () => {
  assert.equal(ropeSeqLen([0, 1, 2, 3, 0, 1, 2, 3], [1, 1, 0, 0, 1, 1, 1, 0]), 3);
  assert.equal(ropeSeqLen([0, 1, 2, 0, 1, 0], [1, 1, 1, 2, 2, 0]), 3); // packed rows: segments 1, 2
  assert.equal(ropeSeqLen([7, 12]), 13); // a decode step: each row's position
  assert.equal(ropeSeqLen([0, 1], [0, 0]), 0);
  const cfg = (n: string) => JSON.parse(Deno.readTextFileSync(`${root}${n}/config.json`));
  assert.equal(longropeReprefill(decoderConfig(cfg("phi3_longrope12"))), 12);
  assert.equal(longropeReprefill(decoderConfig(cfg("llama_longrope12"))), -1);
  assert.equal(longropeReprefill(decoderConfig(cfg("llama_dynamic12"))), -1);
});

Deno.test("rope runs: the frequency words are a derived input, per batch or per row, computed at each run", () => {
  const g = new Graph();
  const pos = g.input("positions", [2, 3], "i32"), seg = g.input("segments", [2, 3], "i32");
  const lr: RopeScaling = {
    type: "longrope",
    shortFactor: [1, 2],
    longFactor: [3, 4],
    originalMaxPositionEmbeddings: 2,
    attentionFactor: 1,
  };
  const shared = ropeFreqInput(pos, seg, 4, 100, lr);
  assert.equal(ropeFreqInput(pos, seg, 4, 100, lr), shared, "one input per (positions, theta, scaling)");
  const perRow = ropeFreqInput(pos, seg, 4, 100, lr, true);
  assert.deepEqual(perRow.shape, [2, 2, 2]);
  const words = (n: number) => ropeFreqWords(ropeInvFreq(4, 100, lr, n));
  // row 0 has 2 real tokens (short factors), row 1 has 3 (long): the batch takes the long ones.
  const feeds = completeFeeds(g, { positions: [0, 1, 2, 0, 1, 2], segments: [1, 1, 0, 1, 1, 1] });
  assert.deepEqual(Array.from(feeds[shared.value.name!]), words(3));
  assert.deepEqual(Array.from(feeds[perRow.value.name!]), [...words(2), ...words(3)]);
  assert.notDeepEqual(words(2), words(3));
  const given = completeFeeds(g, { positions: [0, 0, 0, 0, 0, 0], [shared.value.name!]: [7, 7, 7, 7] });
  assert.deepEqual(given[shared.value.name!], [7, 7, 7, 7], "a feed given by name is kept");
  assert.throws(() => completeFeeds(g, {}), /feed "positions" is missing; "positions.rope0"/);
});
