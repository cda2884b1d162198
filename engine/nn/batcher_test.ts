/**
 * The continuous batcher against generation alone: requests of different lengths, budgets and sampling options
 * that join a running batch (growing its rows and its cache length) get, token for token, what `generate` gives
 * each alone, on every executor; a full queue refuses, and a consumer that leaves frees its row.
 */
import assert from "node:assert/strict";
import { loadModel } from "./model.ts";
import { Batcher, BatcherFullError } from "./batcher.ts";
import type { GenerateOptions } from "./generate.ts";
import { ReferenceExecutor } from "../exec/reference.ts";
import { executors } from "./executors_testing.ts";

const root = new URL("../../fixtures/models/", import.meta.url).pathname;

async function collect(it: AsyncIterable<number>, onToken?: (t: number, k: number) => void): Promise<number[]> {
  const out: number[] = [];
  for await (const t of it) {
    out.push(t);
    onToken?.(t, out.length - 1);
  }
  return out;
}

for (const family of ["llama", "gemma2"]) {
  for (const [exName, make] of executors()) {
    Deno.test(`batcher ${family} on ${exName}: rows joining a running batch equal each prompt alone`, async () => {
      const model = await loadModel(`${root}${family}`, { executor: await make() });
      try {
        const V = model.config.vocab;
        const prompts = [[1, 5, 9, 13, 2, 7, 11], [3, 17, 4], Array.from({ length: 40 }, (_, i) => (i * 7 + 3) % V), [
          9,
        ]];
        const opts: GenerateOptions[] = [
          { maxNewTokens: 12, stop: [2] },
          { maxNewTokens: 5 },
          { maxNewTokens: 30, repetitionPenalty: 1.3 }, // 70 cache slots: the batch's cache grows to 128
          { maxNewTokens: 9, doSample: true, temperature: 0.8, topK: 20, topP: 0.9, seed: 7 },
        ];
        const want = [];
        for (let i = 0; i < prompts.length; i++) want.push(await model.generate(prompts[i], opts[i]));
        const batcher = new Batcher(model, { maxBatch: 4, maxQueue: 0 });
        // Two start together; the other two join once the first has 3 tokens (mid-batch).
        let joined: Promise<number[]>[] = [];
        const first = collect(batcher.stream(prompts[0], opts[0]), (_, k) => {
          if (k === 2) joined = [2, 3].map((i) => collect(batcher.stream(prompts[i], opts[i])));
        });
        const second = collect(batcher.stream(prompts[1], opts[1]));
        const got = [await first, await second, ...await Promise.all(joined)];
        assert.deepEqual(got, want);
        assert.equal(batcher.stats.maxRows, 4, "rows 3 and 4 joined while rows 1 and 2 ran");
        assert.equal(batcher.stats.admitted, 4);
        assert.deepEqual([batcher.stats.running, batcher.stats.waiting], [0, 0]);
        // A second round on the same batcher (fresh batch) gives the same again.
        assert.deepEqual(await batcher.generateAll(prompts, (b) => opts[b]), want);
      } finally {
        model.executor.dispose();
      }
    });
  }
}

Deno.test("batcher: a full queue refuses; a consumer that leaves or aborts frees its row", async () => {
  const model = await loadModel(`${root}llama`, { executor: new ReferenceExecutor() });
  const batcher = new Batcher(model, { maxBatch: 1, maxQueue: 1 });
  const long = { maxNewTokens: 40 };
  const a = batcher.stream([1, 5, 9], long)[Symbol.asyncIterator]();
  await a.next(); // row 1 runs
  const b = collect(batcher.stream([3, 17, 4], { maxNewTokens: 3 })); // waits
  await Promise.resolve();
  await assert.rejects(collect(batcher.stream([4], long)), BatcherFullError);
  await a.return(undefined); // leaves: b is admitted at the next step
  assert.deepEqual(await b, await model.generate([3, 17, 4], { maxNewTokens: 3 }));
  const ctl = new AbortController();
  const c = collect(batcher.stream([1, 5, 9], long, ctl.signal), (_, k) => k === 1 && ctl.abort());
  assert.equal((await c).length, 2, "the row ends at the step after the abort");
  assert.equal(batcher.stats.running, 0);
  assert.throws(() => batcher.setLimits({ maxBatch: 0 }), /maxBatch must be an integer >= 1/);
  // A request's bad options are its own error, before it is queued; the batch goes on.
  await assert.rejects(
    collect(batcher.stream([1], { maxNewTokens: 2, doSample: true, temperature: 0 })),
    /temperature must be > 0 when sampling/,
  );
  assert.deepEqual(await collect(batcher.stream([3, 17, 4], { maxNewTokens: 3 })), await b);
});
