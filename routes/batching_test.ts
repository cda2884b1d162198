/**
 * Many clients at once on `/v1/chat/completions` and `/sessions/:id/generate` over real HTTP: 4 and 16 concurrent
 * requests (plain, streamed with usage, `n: 2`) all answer 200 with the texts each gets alone, in batches of more
 * than one row; a full batch and queue answers 503 with Retry-After; a client that goes away frees its row.
 */
import assert from "node:assert/strict";
import { loadOpenAi } from "../deps.ts";
import type { ChatEngine } from "../engine/mod.ts";
import { readEvents, ROOT, startServer, type TestServer, tinyArgs } from "./testing.ts";

const SERVED = { model: `${ROOT}/fixtures/tiny/model`, template: "qwen", name: "tiny" };
const PROMPTS = [
  "Hi",
  "What is Whetstone?",
  "Tell me a long story about a whetstone and a knife.",
  "Name three colors.",
];
const LONG = "1 2 3 4 5 6 7 8 9 10 11 12"; // the tiny model answers it greedily without ever stopping

const ask = (content: string, extra: Record<string, unknown> = {}) => ({
  model: "tiny",
  messages: [{ role: "user", content }],
  temperature: 0,
  max_tokens: 24 + content.length % 7,
  ...extra,
});

function post(t: TestServer, body: unknown, signal?: AbortSignal): Promise<Response> {
  return fetch(`${t.url}/v1/chat/completions`, { method: "POST", body: JSON.stringify(body), signal });
}

async function served(t: TestServer): Promise<ChatEngine> {
  return await t.server.context.chat()!;
}

/** Text of a streamed answer; checks OpenAI's include_usage shape (usage null on every chunk, then a usage chunk). */
async function streamed(res: Response): Promise<{ text: string; usage: Record<string, number> }> {
  assert.equal(res.status, 200);
  const events = await readEvents(res);
  assert.equal(events.at(-1)!.data, "[DONE]");
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e.data));
  const last = chunks.pop();
  assert.deepEqual(last.choices, []);
  for (const c of chunks) assert.equal(c.usage, null);
  assert.equal(last.usage.total_tokens, last.usage.prompt_tokens + last.usage.completion_tokens);
  return { text: chunks.map((c) => c.choices[0].delta.content ?? "").join(""), usage: last.usage };
}

Deno.test("batching: 4 and 16 concurrent clients get their sequential answers, in batches", async () => {
  const t = await startServer({ chatModel: SERVED, batch: { maxBatch: 8, maxQueue: 64 } });
  try {
    // Alone, one after another.
    const alone: string[] = [];
    for (const p of PROMPTS) {
      const r = await t.call("POST", "/v1/chat/completions", ask(p));
      assert.equal(r.status, 200, r.text);
      alone.push(r.json.choices[0].message.content);
    }
    const engine = await served(t);
    assert.equal(engine.batchStats.maxRows, 1, "sequential requests never share a step");

    // 4 at once: the same texts, generated together.
    const four = await Promise.all(PROMPTS.map((p) => post(t, ask(p)).then((r) => r.json())));
    assert.deepEqual(four.map((j) => j.choices[0].message.content), alone);
    assert.ok(engine.batchStats.maxRows >= 2, `no batch formed: ${JSON.stringify(engine.batchStats)}`);

    // 16 at once (plain, streamed with usage, n: 2; a quarter through the official openai client, plain and
    // streamed): 8 generate, the rest wait and join as rows free up.
    const { default: OpenAI } = await loadOpenAi();
    const client = new OpenAI({ baseURL: `${t.url}/v1`, apiKey: "none", maxRetries: 0 });
    const replies = await Promise.all(Array.from({ length: 16 }, async (_, i) => {
      const p = PROMPTS[i % 4];
      if (i % 4 === 3) {
        const req = { ...ask(p), messages: [{ role: "user" as const, content: p }] };
        if (i === 3) return [(await client.chat.completions.create(req)).choices[0].message.content];
        const stream = await client.chat.completions.create({
          ...req,
          stream: true,
          stream_options: { include_usage: true },
        });
        let text = "", usage;
        for await (const chunk of stream) {
          text += chunk.choices[0]?.delta.content ?? "";
          usage ??= chunk.usage ?? undefined;
        }
        assert.ok(usage && usage.completion_tokens > 0, "the client reads the usage chunk");
        return [text];
      }
      if (i % 4 === 1) {
        const s = await streamed(await post(t, ask(p, { stream: true, stream_options: { include_usage: true } })));
        return [s.text];
      }
      const res = await post(t, ask(p, i === 6 ? { n: 2, seed: 1 } : {}));
      assert.equal(res.status, 200);
      const json = await res.json();
      return json.choices.map((c: { message: { content: string } }) => c.message.content);
    }));
    replies.forEach((texts, i) => {
      if (i === 6) assert.equal(texts.length, 2, "n: 2 answers twice");
      else assert.deepEqual(texts, [alone[i % 4]], `request ${i}`);
    });
    const stats = engine.batchStats;
    assert.ok(stats.maxRows > 2 && stats.maxRows <= 8, `rows at once: ${JSON.stringify(stats)}`);
    assert.deepEqual([stats.running, stats.waiting], [0, 0]);

    // A model loaded with POST /chat/models (the same model and template) batches its own requests alike.
    const card = await t.call("POST", "/chat/models", { model_name_or_path: SERVED.model, template: "qwen" });
    assert.equal(card.status, 201, card.text);
    const loaded = await Promise.all(
      PROMPTS.map((p) => post(t, { ...ask(p), model: card.json.id }).then((r) => r.json())),
    );
    assert.deepEqual(loaded.map((j) => j.choices[0].message.content), alone);
    assert.ok(t.server.context.chatModels.engine(card.json.id)!.batchStats.maxRows >= 2);
  } finally {
    await t.close();
  }
});

Deno.test("batching: a full queue is a 503 with Retry-After; clients that go away free their rows", async () => {
  const t = await startServer({ chatModel: SERVED, batch: { maxBatch: 1, maxQueue: 1 } });
  try {
    await t.call("POST", "/v1/chat/completions", ask("Hi", { max_tokens: 1 })); // loads the model
    const engine = await served(t);
    // One streamed answer holds the only row; one request waits; the next one is refused.
    const holder = new AbortController();
    const first = await post(t, ask(LONG, { stream: true, max_tokens: 2000 }), holder.signal);
    const reader = first.body!.getReader();
    await reader.read();
    // Its graphs may still be building (off the event loop): it holds the row once it runs.
    while (engine.batchStats.running < 1) await new Promise((r) => setTimeout(r, 5));
    const waiting = post(t, ask("Hi"));
    while (engine.batchStats.waiting < 1) await new Promise((r) => setTimeout(r, 5));
    const full = await t.call("POST", "/v1/chat/completions", ask("Hi"));
    assert.equal(full.status, 503, full.text);
    assert.equal(full.headers.get("retry-after"), "1");
    assert.match(full.json.error.message, /busy: 1 request\(s\) are generating and 1 wait/);
    assert.equal((await post(t, ask("Hi", { stream: true }))).status, 503, "a stream is refused before it starts");
    // The streaming client goes away: its row is freed and the waiting request answers.
    holder.abort();
    const answered = await waiting;
    assert.equal(answered.status, 200);
    assert.ok(engine.batchStats.steps < 1000, "the aborted stream stopped generating");

    // A plain (non-streamed) request whose client goes away frees its row too.
    const before = engine.batchStats.steps;
    const gone = new AbortController();
    const plain = post(t, ask(LONG, { max_tokens: 2000 }), gone.signal).catch((e) => e);
    while (engine.batchStats.running < 1) await new Promise((r) => setTimeout(r, 5));
    gone.abort();
    await plain;
    for (let i = 0; i < 500 && engine.batchStats.running; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(engine.batchStats.running, 0, "the row was freed");
    assert.ok(engine.batchStats.steps - before < 1000, "generation stopped well before max_tokens");
  } finally {
    await t.close();
  }
});

Deno.test("batching: a session's generations run together; a step meanwhile is a 409", async () => {
  const t = await startServer({ batch: { maxBatch: 4, maxQueue: 4 } });
  try {
    const { id } = (await t.call("POST", "/sessions", tinyArgs(`${t.tmp}/run`))).json;
    const session = await t.server.context.sessions.live(id);
    // The long prompt runs to max_new_tokens: the generations are still running when the step comes.
    const body = (content: string) => ({
      messages: [{ role: "user", content }],
      temperature: 0,
      max_new_tokens: content === LONG ? 300 : 40,
    });
    const prompts = [...PROMPTS.slice(0, 3), LONG];
    const alone = [];
    for (const p of prompts) alone.push((await t.call("POST", `/sessions/${id}/generate`, body(p))).json.text);
    const together = prompts.map((p) => t.call("POST", `/sessions/${id}/generate`, body(p)));
    while (session.busy !== "generate") await new Promise((r) => setTimeout(r, 1));
    const step = await t.call("POST", `/sessions/${id}/step`, { steps: 1 });
    assert.equal(step.status, 409, "a step waits for no generation: it is refused while they run");
    const got = await Promise.all(together);
    assert.deepEqual(got.map((r) => r.status), [200, 200, 200, 200]);
    assert.deepEqual(got.map((r) => r.json.text), alone);
    assert.ok(session.chat.batchStats.maxRows >= 2, JSON.stringify(session.chat.batchStats));
    assert.equal((await t.call("POST", `/sessions/${id}/step`, { steps: 1 })).status, 200, "free again after them");
    // The OpenAI route on the session batches too.
    const openai = await Promise.all(
      PROMPTS.map((p) => t.call("POST", "/v1/chat/completions", { ...ask(p), model: id, max_tokens: 20 })),
    );
    assert.deepEqual(openai.map((r) => r.status), [200, 200, 200, 200]);
  } finally {
    await t.close();
  }
});
