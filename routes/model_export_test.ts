import assert from "node:assert/strict";
import { makeTinyAdapter, standin } from "./lf_testing.ts";
import { readEvents, startServer } from "./testing.ts";

const MODEL = "fixtures/tiny/model";
const ASK = { messages: [{ role: "user", content: "Name three colors." }], max_tokens: 10, temperature: 0 };

Deno.test("models/export: a llamafactory run's adapter merged into an HF folder that chats as model + adapter", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "whetstone-api-" });
  const adapter = `${tmp}/adapter`;
  await makeTinyAdapter(adapter);
  const t = await startServer({
    ...standin({ STANDIN_ADAPTER: adapter, STANDIN_STEPS: "2", STANDIN_SLEEP: "0.05" }),
    tmp,
  });
  const out = `${t.tmp}/lf-run`;
  try {
    // The adapter comes out of a (stand-in) llamafactory run's output folder.
    const run = await t.call("POST", "/sessions", {
      runner: "llamafactory",
      config: "examples/demo_lora_sft.yaml",
      output_dir: out,
    });
    assert.equal(run.status, 201, run.text);
    await readEvents(await fetch(`${t.url}/sessions/${run.json.id}/events`), (e) => e.event === "done");
    const exp = (body: Record<string, unknown>) =>
      t.call("POST", "/models/export", { model_name_or_path: MODEL, adapter_name_or_path: out, ...body });

    for (
      const [dir, why] of [
        [t.tmp, "a root"],
        [`${out}/merged`, "inside the adapter folder"],
        ["fixtures/demo", "not a model folder"],
        ["/etc/x", "outside the roots"],
      ]
    ) {
      const bad = await exp({ export_dir: dir });
      assert.equal(bad.status, 400, `${why}: ${bad.text}`);
      assert.equal(bad.json.field, "export_dir", why);
    }
    assert.equal((await exp({ export_dir: `${t.tmp}/x`, export_size: 0 })).json.field, "export_size");
    assert.equal((await exp({ export_dir: `${t.tmp}/x`, template: "qwen9" })).json.field, "template");
    const noAdapter = await t.call("POST", "/models/export", {
      model_name_or_path: MODEL,
      export_dir: `${t.tmp}/y`,
      adapter_only: true,
    });
    assert.equal(noAdapter.json.field, "adapter_only");

    const merged = `${t.tmp}/merged`;
    const r = await exp({ export_dir: merged, template: "qwen", infer_dtype: "float32" });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.export_dir, merged);
    assert.equal(r.json.dtype, "f32");
    const names = r.json.files.map((f: { path: string }) => f.path);
    for (const f of ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "Modelfile"]) {
      assert.ok(names.includes(f), `${f} in ${names}`);
    }
    // The template the model was tuned with travels in tokenizer_config.json (qwen's Jinja, not the tokenizer's own).
    const chat = JSON.parse(await Deno.readTextFile(`${merged}/tokenizer_config.json`)).chat_template;
    assert.match(chat, /^\{% set system_message = 'You are Qwen, created by Alibaba Cloud/);
    assert.match(await Deno.readTextFile(`${merged}/Modelfile`), /PARAMETER stop "<\|im_end\|>"/);
    for (const f of r.json.files) assert.equal(f.bytes, (await Deno.stat(`${merged}/${f.path}`)).size);
    const baseBytes = await Deno.readFile(`${MODEL}/model.safetensors`);
    const mergedBytes = await Deno.readFile(`${merged}/model.safetensors`);
    assert.notDeepEqual(mergedBytes, baseBytes, "the adapter was merged");

    // The merged folder answers as the model with the adapter does.
    const load = async (body: Record<string, unknown>) => {
      const m = await t.call("POST", "/chat/models", { template: "qwen", executor: "reference", ...body });
      assert.equal(m.status, 201, m.text);
      const a = await t.call("POST", "/v1/chat/completions", { model: m.json.id, ...ASK });
      return a.json.choices[0].message.content;
    };
    assert.equal(
      await load({ model_name_or_path: merged }),
      await load({ model_name_or_path: MODEL, adapter_name_or_path: out }),
    );

    const again = await exp({ export_dir: merged, infer_dtype: "bfloat16", export_onnx: true });
    assert.equal(again.status, 200, again.text);
    assert.equal(again.json.dtype, "bf16");
    assert.ok(again.json.files.some((f: { path: string }) => f.path.startsWith("onnx/")), "ONNX files listed");

    const only = await exp({ export_dir: `${t.tmp}/adapter-only`, adapter_only: true });
    assert.equal(only.status, 200, only.text);
    assert.equal(only.json.dtype, null);
    assert.deepEqual(
      only.json.files.map((f: { path: string }) => f.path).filter((p: string) => p.startsWith("adapter")),
      [
        "adapter_config.json",
        "adapter_model.safetensors",
      ],
    );
    assert.ok(only.json.files.some((f: { path: string }) => f.path === "tokenizer.json"));
    assert.equal((await exp({ export_dir: merged, adapter_only: true })).json.field, "export_dir");
  } finally {
    await t.close();
  }
});
