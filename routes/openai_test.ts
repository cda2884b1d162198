/**
 * The OpenAI-compatible routes over real HTTP, on a served model (the built-in tiny model with the qwen template)
 * and on a session's model: LF's request rules, parameter mapping, streaming, usage, ids and finish reasons.
 */
import assert from "node:assert/strict";
import { Batcher, ChatEngine, type ChatResult } from "../engine/mod.ts";
import { readEvents, ROOT, startServer, tinyArgs } from "./testing.ts";

const SERVED = { model: `${ROOT}/fixtures/tiny/model`, template: "qwen", name: "tiny" };
const USER = [{ role: "user", content: "What is Whetstone?" }];

Deno.test("openai: /v1/models and a completion with LF's id, usage and finish reason", async () => {
  const t = await startServer({ chatModel: SERVED });
  try {
    const models = await t.call("GET", "/v1/models");
    assert.deepEqual(models.json.data.map((m: { id: string; object: string }) => [m.id, m.object]), [[
      "tiny",
      "model",
    ]]);
    assert.equal(models.json.object, "list");
    const body = { model: "tiny", messages: USER, max_tokens: 6, temperature: 0 };
    const r = await t.call("POST", "/v1/chat/completions", body);
    assert.equal(r.status, 200, r.text);
    assert.match(r.json.id, /^chatcmpl-[0-9a-f]{32}$/);
    assert.equal(r.json.object, "chat.completion");
    assert.equal(r.json.model, "tiny");
    const [choice] = r.json.choices;
    assert.equal(choice.message.role, "assistant");
    assert.ok(["stop", "length"].includes(choice.finish_reason));
    const u = r.json.usage;
    assert.ok(u.prompt_tokens > 5 && u.completion_tokens >= 1 && u.completion_tokens <= 6);
    assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
    if (u.completion_tokens === 6) assert.equal(choice.finish_reason, "length");
    // A system message is the template's system text: the prompt changes, the answer is greedy again.
    const sys = await t.call("POST", "/v1/chat/completions", {
      ...body,
      messages: [{ role: "system", content: "Answer in one word." }, ...USER],
    });
    assert.notEqual(sys.json.usage.prompt_tokens, u.prompt_tokens);
    const again = await t.call("POST", "/v1/chat/completions", body);
    assert.equal(again.json.choices[0].message.content, choice.message.content, "temperature 0 is greedy");

    // n answers (sampling forced), counted together.
    const n = await t.call("POST", "/v1/chat/completions", { ...body, n: 3, seed: 5 });
    assert.deepEqual(n.json.choices.map((c: { index: number }) => c.index), [0, 1, 2]);
    assert.equal(n.json.usage.prompt_tokens, u.prompt_tokens);
    assert.ok(n.json.usage.completion_tokens >= 3);

    // A stop string ends the answer before it (the greedy text's second character here).
    const text: string = choice.message.content;
    if (text.length >= 2) {
      const stop = await t.call("POST", "/v1/chat/completions", { ...body, stop: text.slice(1, 2) });
      assert.equal(stop.json.choices[0].message.content, text.slice(0, text.indexOf(text.slice(1, 2))));
      assert.equal(stop.json.choices[0].finish_reason, "stop");
    }
  } finally {
    await t.close();
  }
});

Deno.test("openai: streaming sends a role chunk, text deltas, a finish chunk, then [DONE]", async () => {
  const t = await startServer({ chatModel: SERVED });
  try {
    const body = { model: "tiny", messages: USER, max_tokens: 6, temperature: 0 };
    const whole = (await t.call("POST", "/v1/chat/completions", body)).json;
    const res = await fetch(`${t.url}/v1/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ ...body, stream: true }),
    });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type")!, /^text\/event-stream/);
    const events = await readEvents(res);
    assert.equal(events.at(-1)!.data, "[DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e.data));
    assert.ok(chunks.every((c) => c.object === "chat.completion.chunk" && c.id === chunks[0].id));
    assert.match(chunks[0].id, /^chatcmpl-[0-9a-f]{32}$/);
    assert.deepEqual(chunks[0].choices[0].delta, { role: "assistant", content: "" });
    const last = chunks.at(-1).choices[0];
    assert.deepEqual(last.delta, {});
    assert.equal(last.finish_reason, whole.choices[0].finish_reason);
    const text = chunks.slice(1, -1).map((c) => c.choices[0].delta.content).join("");
    assert.equal(text, whole.choices[0].message.content, "the deltas add up to the answer");
  } finally {
    await t.close();
  }
});

Deno.test("openai: LF's request rules are 400s naming the field; an unknown model is a 404", async () => {
  const t = await startServer({ chatModel: SERVED });
  try {
    const cases: [unknown, string, RegExp][] = [
      [{ model: "tiny", messages: [] }, "messages", /Invalid length/],
      [
        { model: "tiny", messages: [...USER, { role: "assistant", content: "a" }] },
        "messages",
        /Only supports u\/a\/u\/a\/u/,
      ],
      [{ model: "tiny", messages: [{ role: "assistant", content: "a" }] }, "messages[0].role", /Invalid role/],
      [{ model: "tiny", messages: [{ role: "robot", content: "a" }] }, "messages[0].role", /expected one of/],
      [{ messages: USER }, "model", /required/],
      [{ model: "tiny", messages: USER, presence_penalty: 0 }, "presence_penalty", /> 0/],
      [{ model: "tiny", messages: USER, max_tokens: 0 }, "max_tokens", />= 1/],
      [{ model: "tiny", messages: USER, stream: true, n: 2 }, "stream", /Cannot stream multiple responses/],
      [{ model: "tiny", messages: USER, stop: [1] }, "stop", /list of strings/],
      [
        { model: "tiny", messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] },
        "messages[0].content[0]",
        /only \{"type": "text"/,
      ],
    ];
    for (const [body, param, message] of cases) {
      const r = await t.call("POST", "/v1/chat/completions", body);
      assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
      assert.equal(r.json.error.type, "invalid_request_error");
      assert.equal(r.json.error.param, param, r.text);
      assert.match(r.json.error.message, message);
    }
  } finally {
    await t.close();
  }
  const bare = await startServer();
  try {
    const r = await bare.call("POST", "/v1/chat/completions", { model: "gpt-4", messages: USER });
    assert.equal(r.status, 404);
    assert.match(r.json.error.message, /no model "gpt-4"/);
    assert.deepEqual((await bare.call("GET", "/v1/models")).json, { object: "list", data: [] });
  } finally {
    await bare.close();
  }
});

Deno.test("openai: a session's id is a model: the model being trained answers; busy sessions get a 409", async () => {
  const t = await startServer();
  try {
    const { id } = (await t.call("POST", "/sessions", tinyArgs(`${t.tmp}/run`))).json;
    const models = await t.call("GET", "/v1/models");
    assert.deepEqual(models.json.data.map((m: { id: string }) => m.id), [id]);
    const body = { model: id, messages: USER, max_tokens: 5, temperature: 0 };
    const before = (await t.call("POST", "/v1/chat/completions", body)).json.choices[0].message.content;
    const viaSession = await t.call("POST", `/sessions/${id}/generate`, {
      messages: USER,
      max_new_tokens: 5,
      do_sample: false,
    });
    assert.equal(viaSession.json.text, before, "both routes render the session's template alike");
    const step = t.call("POST", `/sessions/${id}/step`, { steps: 4 });
    for (let i = 0; i < 400; i++) {
      if ((await t.call("GET", `/sessions/${id}`)).json.status === "running") break;
      await new Promise((r) => setTimeout(r, 5));
    }
    for (const stream of [false, true]) {
      const busy = await t.call("POST", "/v1/chat/completions", { ...body, stream });
      assert.equal(busy.status, 409, busy.text);
      assert.match(busy.json.error.message, /busy \(step is running\)/);
    }
    assert.equal((await step).status, 200);
    const after = await t.call("POST", "/v1/chat/completions", body);
    assert.equal(after.status, 200);
  } finally {
    await t.close();
  }
});

Deno.test("openai: with tools, an answer that parses as calls is returned as tool_calls; streaming is a 400", async () => {
  const t = await startServer({ chatModel: SERVED });
  // The tiny model cannot be made to emit a call, so the engine's generation is stubbed with qwen-format call text.
  const real = ChatEngine.prototype.completeMany;
  let answer = "";
  ChatEngine.prototype.completeMany = function (prompt: number[], n: number): Promise<ChatResult[]> {
    const r: ChatResult = {
      text: answer,
      ids: [1, 2],
      promptTokens: prompt.length,
      completionTokens: 2,
      finishReason: "stop",
    };
    return Promise.resolve(Array.from({ length: n }, () => r));
  };
  try {
    const tools = [{
      type: "function",
      function: { name: "get_weather", description: "Weather", parameters: { type: "object", properties: {} } },
    }];
    const body = { model: "tiny", messages: USER, tools, max_tokens: 4 };
    answer = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}\n</tool_call>\n' +
      '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>';
    const r = await t.call("POST", "/v1/chat/completions", body);
    assert.equal(r.status, 200, r.text);
    const [choice] = r.json.choices;
    assert.equal(choice.finish_reason, "tool_calls");
    assert.equal(choice.message.content, null);
    const calls = choice.message.tool_calls;
    assert.deepEqual(calls.map((c: { type: string; function: unknown }) => [c.type, c.function]), [
      ["function", { name: "get_weather", arguments: '{"city": "Paris", "days": 2}' }],
      ["function", { name: "get_weather", arguments: '{"city": "Oslo"}' }],
    ]);
    for (const c of calls) assert.match(c.id, /^call_[0-9a-f]{32}$/);
    assert.notEqual(calls[0].id, calls[1].id);

    // Plain text stays content; without tools, call-shaped text is not parsed.
    answer = "It is sunny.";
    const plain = (await t.call("POST", "/v1/chat/completions", body)).json.choices[0];
    assert.deepEqual([plain.message, plain.finish_reason], [{ role: "assistant", content: "It is sunny." }, "stop"]);
    answer = '<tool_call>{"name": "f", "arguments": {}}</tool_call>';
    const noTools = (await t.call("POST", "/v1/chat/completions", { ...body, tools: undefined })).json.choices[0];
    assert.deepEqual([noTools.message.content, noTools.finish_reason], [answer, "stop"]);

    const stream = await t.call("POST", "/v1/chat/completions", { ...body, stream: true });
    assert.equal(stream.status, 400);
    assert.equal(stream.json.error.param, "stream");
    assert.match(stream.json.error.message, /Cannot stream function calls/);
  } finally {
    ChatEngine.prototype.completeMany = real;
    await t.close();
  }
});

Deno.test("openai: aborting a streamed reply stops the generation at the next token and frees the session", async () => {
  const t = await startServer();
  const batcher = Batcher.prototype as { stream: unknown };
  const real = batcher.stream;
  try {
    const { id } = (await t.call("POST", "/sessions", tinyArgs(`${t.tmp}/run`))).json;
    const session = await t.server.context.sessions.live(id);
    // A model that never stops by itself (no stop id, no length limit): only the abort can end the reply.
    assert.ok(session.chat);
    let pulled = 0;
    batcher.stream = async function* () {
      for (;;) {
        pulled++;
        await new Promise((r) => setTimeout(r, 2));
        yield 100 + pulled % 50;
      }
    };
    const ac = new AbortController();
    const res = await fetch(`${t.url}/v1/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ model: id, messages: USER, stream: true, max_tokens: 100_000 }),
      signal: ac.signal,
    });
    assert.equal(res.status, 200);
    // Read until some text came (the connection kept open), then go away.
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!/"content":"[^"]/.test(text)) {
      const { value, done } = await reader.read();
      assert.ok(!done, `the stream ended: ${text}`);
      text += value;
    }
    assert.equal((await t.call("GET", `/sessions/${id}`)).json.busy, "generate");
    ac.abort();
    let state;
    for (let i = 0; i < 500; i++) {
      state = (await t.call("GET", `/sessions/${id}`)).json;
      if (state.busy === null) break;
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(state.busy, null, "the aborted reply still runs");
    const at = pulled;
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(pulled, at, "no token is generated after the reply ended");
    batcher.stream = real;
    const next = await t.call("POST", "/v1/chat/completions", { model: id, messages: USER, max_tokens: 3 });
    assert.equal(next.status, 200, next.text);
  } finally {
    batcher.stream = real;
    await t.close();
  }
});
