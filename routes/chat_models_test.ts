import assert from "node:assert/strict";
import { ChatEngine } from "../engine/mod.ts";
import { makeTinyAdapter } from "./lf_testing.ts";
import { readEvents, ROOT, startServer } from "./testing.ts";

const MODEL = "fixtures/tiny/model";
const ASK = { messages: [{ role: "user", content: "Name three colors." }], max_tokens: 12, temperature: 0 };

Deno.test("chat models: load a model + adapter, chat with it (streamed too), list it, unload it", async () => {
  const t = await startServer();
  const adapter = `${t.tmp}/adapter`;
  await makeTinyAdapter(adapter);
  try {
    const load = (body: Record<string, unknown>) => t.call("POST", "/chat/models", body);
    const base = { model_name_or_path: MODEL, template: "qwen", executor: "reference" };

    assert.equal((await load({ ...base, model_name_or_path: "/etc" })).json.field, "model_name_or_path");
    assert.equal((await load({ ...base, adapter_name_or_path: "/etc/x" })).json.field, "adapter_name_or_path");
    const notPeft = await load({ ...base, adapter_name_or_path: "fixtures/demo" });
    assert.equal(notPeft.status, 400);
    assert.equal(notPeft.json.field, "adapter_name_or_path");
    assert.equal((await load({ ...base, template: "no_such_template" })).json.field, "template");
    assert.equal((await load({ ...base, temperature: 1 })).json.field, "temperature");

    const tuned = await load({ ...base, adapter_name_or_path: adapter });
    assert.equal(tuned.status, 201, tuned.text);
    assert.match(tuned.json.id, /^chat-/);
    assert.equal(tuned.json.adapter_name_or_path, adapter);
    assert.equal(tuned.json.template, "qwen");
    const plain = await load(base);
    assert.equal(plain.status, 201);
    assert.equal(plain.json.adapter_name_or_path, null);

    const ids = (await t.call("GET", "/v1/models")).json.data.map((m: { id: string }) => m.id);
    assert.ok(ids.includes(tuned.json.id) && ids.includes(plain.json.id));
    assert.deepEqual((await t.call("GET", "/chat/models")).json.models.map((m: { id: string }) => m.id), [
      tuned.json.id,
      plain.json.id,
    ]);

    const answer = async (model: string) => {
      const r = await t.call("POST", "/v1/chat/completions", { model, ...ASK });
      assert.equal(r.status, 200, r.text);
      return r.json.choices[0].message.content as string;
    };
    const withAdapter = await answer(tuned.json.id);
    const engine = await ChatEngine.load(`${ROOT}/${MODEL}`, { adapter, template: "qwen", executor: "reference" });
    try {
      const want = await engine.complete(engine.encode([{ role: "user", content: ASK.messages[0].content }]), {
        maxNewTokens: 12,
        temperature: 0,
      });
      assert.equal(withAdapter, want.text);
    } finally {
      engine.model.executor.dispose();
    }
    assert.notEqual(withAdapter, await answer(plain.json.id), "the adapter changes the answer");

    const res = await fetch(`${t.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: tuned.json.id, ...ASK, stream: true }),
    });
    const ev = await readEvents(res, (e) => e.data === "[DONE]");
    assert.equal(ev.at(-1)!.data, "[DONE]");
    const streamed = ev.slice(0, -1).map((e) => JSON.parse(e.data).choices[0].delta.content ?? "").join("");
    assert.equal(streamed, withAdapter);

    const del = await t.call("DELETE", `/chat/models/${tuned.json.id}`);
    assert.deepEqual(del.json, { deleted: tuned.json.id });
    assert.equal((await t.call("DELETE", `/chat/models/${tuned.json.id}`)).status, 404);
    const gone = await t.call("POST", "/v1/chat/completions", { model: tuned.json.id, ...ASK });
    assert.equal(gone.status, 404);
    assert.equal(gone.json.error.param, "model");
    assert.ok(!(await t.call("GET", "/v1/models")).json.data.some((m: { id: string }) => m.id === tuned.json.id));
  } finally {
    await t.close();
  }
});
