/**
 * `GET /models`, `GET /templates`, `GET /datasets` and `POST /datasets/preview` over real HTTP on the repository's
 * fixtures.
 */
import assert from "node:assert/strict";
import { startServer } from "./testing.ts";

Deno.test("models: model folders and adapters under the roots", async () => {
  const t = await startServer();
  try {
    await Deno.mkdir(`${t.tmp}/adapter`);
    await Deno.writeTextFile(`${t.tmp}/adapter/adapter_config.json`, JSON.stringify({ peft_type: "LORA", r: 4 }));
    const r = await t.call("GET", "/models");
    assert.equal(r.status, 200);
    const tiny = r.json.models.find((m: { path: string }) => m.path === "fixtures/tiny/model");
    assert.deepEqual(tiny, {
      path: "fixtures/tiny/model",
      model_type: "qwen2",
      architectures: ["Qwen2ForCausalLM"],
      has_tokenizer: true,
      template: "qwen",
    });
    assert.ok(r.json.adapters.some((a: { path: string; r: number }) => a.path === "adapter" && a.r === 4), r.text);
    assert.ok(!r.json.models.some((m: { path: string }) => m.path.startsWith("node_modules")));
  } finally {
    await t.close();
  }
});

Deno.test("templates: the registry's names; a model's guessed template names one of them", async () => {
  const t = await startServer();
  try {
    const r = await t.call("GET", "/templates");
    assert.equal(r.status, 200);
    const names: string[] = r.json.templates;
    for (const n of ["qwen", "llama3", "chatml", "empty", "default"]) assert.ok(names.includes(n), n);
    assert.deepEqual(names, [...names].sort());
    // A model folder with a Llama 3 chat template and one without any hint.
    for (const [dir, chat, type] of [["l3", "<|start_header_id|>{{ x }}", "llama"], ["plain", null, "llama"]]) {
      await Deno.mkdir(`${t.tmp}/${dir}`);
      await Deno.writeTextFile(`${t.tmp}/${dir}/config.json`, JSON.stringify({ model_type: type }));
      await Deno.writeTextFile(`${t.tmp}/${dir}/model.safetensors`, "");
      if (chat) {
        await Deno.writeTextFile(`${t.tmp}/${dir}/tokenizer_config.json`, JSON.stringify({ chat_template: chat }));
      }
    }
    const models = (await t.call("GET", "/models")).json.models;
    const template = (path: string) => models.find((m: { path: string }) => m.path === path)?.template;
    assert.deepEqual([template("l3"), template("plain")], ["llama3", null]);
    for (const m of models) assert.ok(m.template === null || names.includes(m.template), m.template);
  } finally {
    await t.close();
  }
});

Deno.test("datasets: the entries of dataset_info.json; a folder outside the roots is a 400", async () => {
  const t = await startServer();
  try {
    const r = await t.call("GET", "/datasets?dataset_dir=fixtures/demo");
    assert.equal(r.status, 200, r.text);
    const demo = r.json.datasets.find((d: { name: string }) => d.name === "whetstone_demo");
    assert.deepEqual([demo.load_from, demo.source, demo.formatting, demo.ranking], [
      "file",
      "whetstone_demo.json",
      "alpaca",
      false,
    ]);
    const out = await t.call("GET", "/datasets?dataset_dir=/etc");
    assert.deepEqual([out.status, out.json.field], [400, "dataset_dir"]);
    const none = await t.call("GET", `/datasets?dataset_dir=${t.tmp}`);
    assert.equal(none.status, 400);
    assert.match(none.json.error, /dataset_info\.json: no such file/);
  } finally {
    await t.close();
  }
});

Deno.test("datasets: preview shows normalized rows and tokenized spans with the trained ones marked", async () => {
  const t = await startServer();
  try {
    const body = {
      model_name_or_path: "fixtures/tiny/model",
      dataset: "whetstone_demo",
      dataset_dir: "fixtures/demo",
      template: "qwen",
      cutoff_len: 64,
      n: 2,
    };
    const r = await t.call("POST", "/datasets/preview", body);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.rows.length, 2);
    const [row] = r.json.rows;
    assert.deepEqual(row.messages.map((m: { role: string }) => m.role), ["user", "assistant"]);
    const view = row.views[0];
    assert.equal(view.name, "input");
    assert.ok(view.length <= 64);
    const trained = view.spans.filter((s: { trained: boolean }) => s.trained);
    assert.ok(trained.length && view.spans.some((s: { trained: boolean }) => !s.trained));
    assert.equal(trained.reduce((n: number, s: { ids: number[] }) => n + s.ids.length, 0), view.trainedTokens);
    assert.match(view.spans[0].text, /<\|im_start\|>system/);

    const bad = await t.call("POST", "/datasets/preview", { ...body, cutoff_len: -1 });
    assert.deepEqual([bad.status, bad.json.field], [400, "cutoff_len"]);
    const n = await t.call("POST", "/datasets/preview", { ...body, n: 0 });
    assert.deepEqual([n.status, n.json.field], [400, "n"]);
    const missing = await t.call("POST", "/datasets/preview", { ...body, dataset: undefined });
    assert.deepEqual([missing.status, missing.json.field], [400, "dataset"]);
    const model = await t.call("POST", "/datasets/preview", { ...body, model_name_or_path: "fixtures/none" });
    assert.equal(model.status, 400);
    assert.match(model.json.error, /cannot preview: .*fixtures\/none/);
    const unknown = await t.call("POST", "/datasets/preview", { ...body, dataset: "nope" });
    assert.equal(unknown.status, 400);
    assert.match(unknown.json.error, /nope/);
  } finally {
    await t.close();
  }
});
