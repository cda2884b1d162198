import assert from "node:assert/strict";
import { parseTrainArgs } from "./args.ts";
import {
  dataArgsOf,
  generateOptionsOf,
  groupArgs,
  hubOptionsOf,
  loadDatasetsArgsOf,
  templateOptionsOf,
} from "./views.ts";

const M = "model_name_or_path: some/model\n";

Deno.test("generateOptionsOf: LF's GeneratingArguments defaults, max_length when max_new_tokens <= 0", () => {
  const a = parseTrainArgs(M);
  const o = generateOptionsOf(a); // engine/train/predict.ts checks it is a GenerateOptions at compile time
  assert.deepEqual(o, {
    maxNewTokens: 1024,
    doSample: true,
    temperature: 0.95,
    topP: 0.7,
    topK: 50,
    repetitionPenalty: 1,
  });
  const b = parseTrainArgs(`${M}max_new_tokens: 0\nmax_length: 100\ndo_sample: false\ntop_k: 3`);
  assert.deepEqual(generateOptionsOf(b, 30), { ...o, maxNewTokens: 70, doSample: false, topK: 3 });
  assert.equal(generateOptionsOf(b, 130).maxNewTokens, 0, "a prompt past max_length leaves nothing");
});

Deno.test("hubOptionsOf: model_revision, cache_dir and hf_hub_token reach the hub download", () => {
  assert.deepEqual(hubOptionsOf(parseTrainArgs(M)), { revision: "main" });
  const a = parseTrainArgs(`${M}model_revision: v2\ncache_dir: /tmp/hub\nhf_hub_token: hf_abc`);
  assert.deepEqual(hubOptionsOf(a), { revision: "v2", cacheDir: "/tmp/hub", token: "hf_abc" });
});

Deno.test("data and template views follow the flat fields, also after a caller rewrites one", () => {
  const a = parseTrainArgs(`${M}dataset: a,b\ncutoff_len: 64\ntemplate: qwen\nseed: 7\ntrain_on_prompt: true`);
  const load = loadDatasetsArgsOf(a);
  assert.deepEqual([load.dataset, load.seed, load.streaming], [["a", "b"], 7, false]);
  assert.equal(dataArgsOf(a).cutoffLen, 64);
  assert.deepEqual([templateOptionsOf(a).template, templateOptionsOf(a).trainOnPrompt], ["qwen", true]);
  a.dataset_dir = "/confined/data";
  assert.equal(loadDatasetsArgsOf(a).dataset_dir, "/confined/data");
});

Deno.test("groupArgs: one LF argument group's keys, typed", () => {
  const a = parseTrainArgs(`${M}top_p: 0.5\nlearning_rate: 1.0e-3`);
  const g = groupArgs(a, "generating");
  const topP: number = g.top_p;
  assert.equal(topP, 0.5);
  assert.deepEqual(Object.keys(g).sort(), [
    "do_sample",
    "max_length",
    "max_new_tokens",
    "repetition_penalty",
    "skip_special_tokens",
    "temperature",
    "top_k",
    "top_p",
  ]);
  assert.equal(groupArgs(a, "training").learning_rate, 1e-3);
  assert.ok(!("learning_rate" in g));
});
