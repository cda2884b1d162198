import assert from "node:assert/strict";
import {
  closeNames,
  DEFAULT_TAGS,
  getDatasetAttrs,
  parseDatasetAttr,
  parseDatasetNames,
  readDatasetInfo,
} from "./dataset_info.ts";
import { DataError } from "./files.ts";

const SHARED = new URL("../../../shared/llamafactory-data/", import.meta.url).pathname;
const HAVE_SHARED = await Deno.stat(SHARED).then(() => true, () => false);
if (!HAVE_SHARED) console.warn(`skipping the demo-data tests: ${SHARED} not found (../shared is absent)`);

Deno.test("dataset names: comma lists and arrays", () => {
  assert.deepEqual(parseDatasetNames("a, b,,c "), ["a", "b", "c"]);
  assert.deepEqual(parseDatasetNames(["a", "b,c"]), ["a", "b", "c"]);
  assert.deepEqual(parseDatasetNames(undefined), []);
});

Deno.test("an entry without columns/tags gets LF's defaults; with them, only what they name", () => {
  const a = parseDatasetAttr("x", { file_name: "x.json" });
  assert.equal(a.loadFrom, "file");
  assert.equal(a.formatting, "alpaca");
  assert.equal(a.ranking, false);
  assert.equal(a.split, "train");
  assert.deepEqual(a.columns, { prompt: "instruction", query: "input", response: "output", messages: "conversations" });
  assert.deepEqual(a.tags, DEFAULT_TAGS);
  const c4 = parseDatasetAttr("c4", { file_name: "c4.jsonl", columns: { prompt: "text" } });
  assert.deepEqual(c4.columns, { prompt: "text" });
  const kto = parseDatasetAttr("k", {
    file_name: "k.json",
    formatting: "sharegpt",
    columns: { messages: "messages", kto_tag: "label" },
    tags: { role_tag: "role", content_tag: "content", user_tag: "user", assistant_tag: "assistant" },
  });
  assert.equal(kto.tags.system_tag, undefined);
  assert.equal(kto.columns.kto_tag, "label");
});

Deno.test("sources follow LF's precedence: hf, ms, om hub, script, cloud, file", () => {
  const from = (e: Record<string, unknown>) => parseDatasetAttr("x", e).loadFrom;
  assert.equal(from({ file_name: "f", hf_hub_url: "a/b", ms_hub_url: "c/d" }), "hf_hub");
  assert.equal(from({ file_name: "f", ms_hub_url: "c/d", om_hub_url: "e/f" }), "ms_hub");
  assert.equal(from({ file_name: "f", om_hub_url: "e/f" }), "om_hub");
  assert.equal(from({ file_name: "f", script_url: "s" }), "script");
  assert.equal(from({ file_name: "f", cloud_file_name: "s3://x" }), "cloud_file");
  const a = parseDatasetAttr("x", { hf_hub_url: "a/b", subset: "en", split: "test", folder: "data", num_samples: 5 });
  assert.deepEqual([a.datasetName, a.subset, a.split, a.folder, a.numSamples], ["a/b", "en", "test", "data", 5]);
});

Deno.test("bad entries: clear errors, unknown keys warned", () => {
  assert.throws(() => parseDatasetAttr("x", { columns: {} }), /names no source/);
  assert.throws(
    () => parseDatasetAttr("x", { file_name: "f", formatting: "chatml" }),
    /formatting should be one of alpaca, sharegpt, openai/,
  );
  assert.throws(() => parseDatasetAttr("x", { file_name: "f", ranking: "yes" }), /ranking should be true or false/);
  assert.throws(() => parseDatasetAttr("x", { file_name: "f", num_samples: -1 }), /num_samples/);
  assert.throws(() => parseDatasetAttr("x", { file_name: 3 }), /"file_name" should be a string/);
  const warnings: string[] = [];
  parseDatasetAttr("x", { file_name: "f", colums: {}, columns: { promt: "a" } }, warnings);
  assert.equal(warnings.length, 2);
  assert.match(warnings[0], /unknown key "colums"/);
  assert.match(warnings[1], /unknown columns key "promt"/);
});

Deno.test("an undefined name lists close names; a path gets a hint", () => {
  const info = { alpaca_en_demo: { file_name: "a" }, alpaca_zh_demo: { file_name: "b" }, identity: { file_name: "c" } };
  assert.deepEqual(closeNames("alpaca_en", Object.keys(info)), ["alpaca_en_demo"]);
  assert.deepEqual(closeNames("alpaca_demo", Object.keys(info)), ["alpaca_en_demo", "alpaca_zh_demo"]);
  assert.throws(
    () => getDatasetAttrs(["identiy"], info),
    (e: Error) =>
      e instanceof DataError &&
      /undefined dataset "identiy" in dataset_info.json; close names: identity/.test(e.message),
  );
  assert.throws(
    () => getDatasetAttrs(["data/my.json"], info),
    /not paths: to use a file, add an entry such as \{"my": \{"file_name": "my.json"\}\}/,
  );
});

Deno.test("a missing or broken dataset_info.json is reported with its path", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(readDatasetInfo(dir), new RegExp(`cannot open ${dir}/dataset_info.json: no such file`));
    await Deno.writeTextFile(`${dir}/dataset_info.json`, "[]");
    await assert.rejects(readDatasetInfo(dir), /should be a JSON object of dataset entries/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "every entry of LF's dataset_info.json parses (needs ../shared)",
  ignore: !HAVE_SHARED,
  async fn() {
    const info = await readDatasetInfo(SHARED);
    const warnings: string[] = [];
    const attrs = getDatasetAttrs(Object.keys(info), info, "dataset_info.json", warnings);
    assert.equal(attrs.length, 104);
    assert.deepEqual(warnings, []);
    const kinds: Record<string, number> = {};
    for (const a of attrs) kinds[a.loadFrom] = (kinds[a.loadFrom] ?? 0) + 1;
    assert.equal(kinds.file, 14);
    assert.equal(kinds.file + kinds.hf_hub + (kinds.ms_hub ?? 0) + (kinds.om_hub ?? 0), 104);
    const byName = Object.fromEntries(attrs.map((a) => [a.name, a]));
    assert.equal(byName.dpo_en_demo.ranking, true);
    assert.deepEqual(byName.dpo_en_demo.columns, { messages: "conversations", chosen: "chosen", rejected: "rejected" });
    assert.equal(byName.dpo_en_demo.tags.user_tag, "human");
    assert.equal(byName.kto_en_demo.columns.kto_tag, "label");
    assert.equal(byName.kto_en_demo.tags.role_tag, "role");
    assert.deepEqual(byName.wiki_demo.columns, { prompt: "text" });
    assert.equal(byName.mllm_demo.columns.images, "images");
  },
});
