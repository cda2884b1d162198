/**
 * KV-cached generation against transformers' greedy `generate` (fixtures/models/<family>/generate.json, made by
 * fixtures/make_models.py) token for token, on the reference executor and on WebGPU; the cached decode's
 * next-token logits against a full forward; and the host-side sampling processors.
 */
import assert from "node:assert/strict";
import { loadModel } from "./model.ts";
import { chooseToken, seededRandom } from "./generate.ts";
import { decodeMask } from "./kv_decoder.ts";
import { hasGpu } from "../gpu/device.ts";
import { WebGpuExecutor } from "../exec/webgpu.ts";
import { ReferenceExecutor } from "../exec/reference.ts";
import type { Executor } from "../exec/executor.ts";

const root = new URL("../../fixtures/models/", import.meta.url).pathname;
const FAMILIES = ["llama", "llama_bf16", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "phi3"];
const gpu = await hasGpu();

function executors(): [string, () => Promise<Executor>][] {
  const list: [string, () => Promise<Executor>][] = [["reference", () => Promise.resolve(new ReferenceExecutor())]];
  if (gpu) list.push(["webgpu", () => WebGpuExecutor.create()]);
  return list;
}

interface GenGolden {
  eos: number[];
  max_new_tokens: number;
  runs: { prompt: number[]; new_tokens: number[] }[];
}

for (const family of FAMILIES) {
  for (const [exName, make] of executors()) {
    Deno.test(`generate ${family} on ${exName}: greedy tokens match transformers, cached logits match forward`, async () => {
      const gold: GenGolden = JSON.parse(await Deno.readTextFile(`${root}${family}/generate.json`));
      const model = await loadModel(`${root}${family}`, { executor: await make() });
      for (const run of gold.runs) {
        const steps: Float32Array[] = [];
        const streamed: number[] = [];
        const got = await model.generate(run.prompt, {
          maxNewTokens: gold.max_new_tokens,
          stop: gold.eos,
          onToken: (t) => streamed.push(t),
          onLogits: (l) => steps.push(l.slice()),
        });
        assert.deepEqual(got, run.new_tokens, `prompt [${run.prompt}]`);
        assert.deepEqual(streamed, got);
        // Each step's logits (prefill, then cached decode) against a full forward over the same tokens.
        const all = [...run.prompt, ...got];
        const { logits } = await model.forward([all]);
        const V = model.config.vocab;
        steps.forEach((l, k) => {
          const row = (run.prompt.length - 1 + k) * V;
          let worst = 0;
          for (let v = 0; v < V; v++) worst = Math.max(worst, Math.abs(l[v] - logits[row + v]));
          assert.ok(worst <= 1e-4, `step ${k}: max logit difference ${worst}`);
        });
      }
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
  // A decode mask: window 2 at position 3 sees keys 2 and 3.
  assert.deepEqual(Array.from(decodeMask(5, 3, 2), (x) => x === 0), [false, false, true, true, false]);
});
