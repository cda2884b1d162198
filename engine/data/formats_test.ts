import assert from "node:assert/strict";
import type { AlignedExample } from "./aligned.ts";
import { parseDatasetAttr } from "./dataset_info.ts";
import { DataError, type Row } from "./files.ts";
import { type Converted, convertRow, datasetProblem, pyJsonDumps, type Stage, stageProblem } from "./formats.ts";

const OPENAI_TAGS = { role_tag: "role", content_tag: "content", user_tag: "user", assistant_tag: "assistant" };

function conv(entry: Record<string, unknown>, data: Row, stage: Stage = "sft", file = "x.json"): Converted {
  return convertRow(parseDatasetAttr("ds", { file_name: file, ...entry }), { file, row: 17, data }, stage);
}

function ex(c: Converted): AlignedExample {
  assert.equal(c.dropped, undefined, `unexpectedly dropped: ${c.dropped}`);
  return c.example!;
}

function throwsData(f: () => unknown, ...parts: string[]): void {
  assert.throws(f, (e: Error) => {
    assert.ok(e instanceof DataError, `expected a DataError, got ${e}`);
    for (const p of parts) assert.ok(e.message.includes(p), `${JSON.stringify(e.message)} lacks ${JSON.stringify(p)}`);
    return true;
  });
}

Deno.test("alpaca: instruction and input joined by a newline, empty parts skipped, history, system", () => {
  const e = ex(
    conv({
      columns: { prompt: "instruction", query: "input", response: "output", history: "history", system: "system" },
    }, {
      instruction: "Sum",
      input: "1 2",
      output: "3",
      history: [["hi", "hello"]],
      system: "be brief",
    }),
  );
  assert.deepEqual(e.prompt, [
    { role: "user", content: "hi" },
    { role: "assistant", content: "hello" },
    { role: "user", content: "Sum\n1 2" },
  ]);
  assert.deepEqual(e.response, [{ role: "assistant", content: "3" }]);
  assert.equal(e.system, "be brief");
  assert.deepEqual(e.source, { dataset: "ds", file: "x.json", row: 17 });
  assert.equal(ex(conv({}, { instruction: "a", input: "", output: "b" })).prompt[0].content, "a");
  assert.equal(ex(conv({}, { instruction: "", input: "b", output: "c" })).prompt[0].content, "b");
  assert.equal(ex(conv({}, { instruction: "a", output: "b" })).prompt[0].content, "a"); // no input key at all
});

Deno.test("alpaca: missing keys and wrong types are errors naming file, row and field", () => {
  throwsData(
    () => conv({}, { input: "x", output: "y" }),
    'x.json row 17 (dataset "ds"): missing column "instruction"',
    '"input", "output"',
  );
  throwsData(() => conv({}, { instruction: "x" }), 'missing column "output" (columns.response)');
  conv({}, { instruction: "x" }, "pt"); // pt does not need the output
  throwsData(
    () => conv({}, { instruction: 5, output: "y" }),
    'column "instruction" (columns.prompt) should be a string, got number',
  );
  throwsData(
    () => conv({}, { instruction: "a", output: ["y"] }),
    'column "output" (columns.response) should be a string, got array',
  );
  throwsData(
    () => conv({ columns: { prompt: "q", response: "a", history: "h" } }, { q: "x", a: "y", h: [["a"]] }),
    "h[0] should be a [prompt, response] pair of strings",
  );
  throwsData(
    () => conv({ columns: { prompt: "q", tools: "t" } }, { q: "x", t: 3 }, "pt"),
    "should be a JSON string of tools",
  );
});

Deno.test("alpaca: a null output makes an unsupervised row, which sft drops and pt keeps", () => {
  const e = ex(conv({}, { instruction: "a", input: null, output: null }));
  assert.deepEqual(e.response, []);
  assert.match(stageProblem(e, "sft")!, /no response/);
  assert.equal(stageProblem(e, "pt"), undefined);
  assert.equal(stageProblem(e, "ppo"), undefined);
});

Deno.test("alpaca: preference and kto rows", () => {
  const pair = ex(conv({ ranking: true, columns: { prompt: "instruction", chosen: "c", rejected: "r" } }, {
    instruction: "q",
    c: "good",
    r: "bad",
  }, "dpo"));
  assert.deepEqual(pair.response.map((m) => m.content), ["good", "bad"]);
  assert.equal(stageProblem(pair, "dpo"), undefined);
  const kto = ex(conv({ columns: { prompt: "instruction", response: "output", kto_tag: "label" } }, {
    instruction: "q",
    output: "a",
    label: false,
  }, "kto"));
  assert.deepEqual(kto.response, [{ role: "assistant", content: "a" }]);
  assert.equal(kto.ktoTag, false);
  // CSV has no booleans: "true"/"false" cells count, in .csv files only
  const csv = conv(
    { columns: { prompt: "i", response: "o", kto_tag: "k" } },
    { i: "q", o: "a", k: "TRUE" },
    "kto",
    "x.csv",
  );
  assert.equal(ex(csv).ktoTag, true);
  throwsData(
    () => conv({ columns: { prompt: "i", response: "o", kto_tag: "k" } }, { i: "q", o: "a", k: "true" }, "kto"),
    'column "k" (columns.kto_tag) should be true or false, got "true"',
  );
});

const SHAREGPT = { formatting: "sharegpt", columns: { messages: "conversations", system: "system", tools: "tools" } };

Deno.test("sharegpt: a leading system message, tools, function calls and observations", () => {
  const e = ex(conv(SHAREGPT, {
    conversations: [
      { from: "system", value: "sys" },
      { from: "human", value: "weather?" },
      { from: "function_call", value: '{"name": "w"}' },
      { from: "observation", value: "sunny" },
      { from: "gpt", value: "It is sunny." },
    ],
    system: "ignored: the system message wins",
    tools: [{ name: "w", parameters: {} }],
  }));
  assert.equal(e.system, "sys");
  assert.deepEqual(e.prompt.map((m) => m.role), ["user", "function", "observation"]);
  assert.deepEqual(e.response, [{ role: "assistant", content: "It is sunny." }]);
  assert.equal(e.tools, '[{"name": "w", "parameters": {}}]');
  assert.equal(
    ex(conv(SHAREGPT, { conversations: [{ from: "human", value: "a" }, { from: "gpt", value: "b" }], system: "s" }))
      .system,
    "s",
  );
});

Deno.test("sharegpt: bad role order or message count drops the row with a reason", () => {
  const drop = (msgs: [string, string][], entry: Record<string, unknown> = SHAREGPT) =>
    conv(entry, { conversations: msgs.map(([from, value]) => ({ from, value })) }).dropped;
  assert.match(
    drop([["gpt", "a"], ["human", "b"]])!,
    /^invalid role tag: message 1 .* has "gpt", expected user or observation/,
  );
  assert.match(drop([["human", "a"], ["human", "b"]])!, /^invalid role tag: message 2/);
  assert.match(drop([["human", "a"], ["gpt", "b"], ["human", "c"]])!, /^invalid message count: 3 messages/);
  assert.match(drop([["human", "a"], ["bot", "b"]])!, /"bot"/);
  assert.match(drop([["system", "s"], ["system", "s"], ["gpt", "b"]])!, /invalid role tag: message 1/);
});

Deno.test("sharegpt: message type errors name the message and field", () => {
  throwsData(
    () => conv(SHAREGPT, { conversations: "hi" }),
    'column "conversations" should be a list of messages, got string',
  );
  throwsData(
    () => conv(SHAREGPT, { conversations: [{ from: "human" }] }),
    "conversations[0].value should be a string, got nothing",
  );
  throwsData(
    () => conv(SHAREGPT, { conversations: [{ value: "x" }] }),
    "conversations[0].from should be a string role",
  );
  throwsData(
    () =>
      conv({ formatting: "sharegpt", columns: { messages: "messages" }, tags: OPENAI_TAGS }, {
        messages: [{ role: "user", content: [{ type: "text", value: "hi" }] }],
      }),
    "messages[0].content should be a string, got array",
  );
  throwsData(() => conv(SHAREGPT, { other: [] }), 'missing column "conversations" (columns.messages)');
});

Deno.test("sharegpt: preference rows end on a user turn; chosen/rejected are messages", () => {
  const entry = {
    formatting: "sharegpt",
    ranking: true,
    columns: { messages: "conversations", chosen: "chosen", rejected: "rejected" },
  };
  const e = ex(conv(entry, {
    conversations: [{ from: "system", value: "s" }, { from: "human", value: "q" }],
    chosen: { from: "gpt", value: "good" },
    rejected: { from: "gpt", value: "bad" },
  }, "rm"));
  assert.equal(e.system, "s");
  assert.deepEqual(e.prompt, [{ role: "user", content: "q" }]);
  assert.deepEqual(e.response, [{ role: "assistant", content: "good" }, { role: "assistant", content: "bad" }]);
  const bad = conv(entry, {
    conversations: [{ from: "human", value: "q" }],
    chosen: { from: "human", value: "good" },
    rejected: { from: "gpt", value: "bad" },
  }, "rm");
  assert.match(bad.dropped!, /invalid role tag in chosen\/rejected/);
  assert.match(
    conv(entry, {
      conversations: [{ from: "human", value: "q" }, { from: "gpt", value: "a" }],
      chosen: null,
      rejected: null,
    }, "rm").dropped!,
    /invalid message count/,
  );
  throwsData(
    () => conv(entry, { conversations: [{ from: "human", value: "q" }], chosen: "good", rejected: "bad" }, "rm"),
    'column "chosen" should be a message object',
  );
  throwsData(
    () => conv(entry, { conversations: [{ from: "human", value: "q" }], chosen: { from: "gpt", value: "x" } }, "rm"),
    'missing column "rejected"',
  );
});

Deno.test("sharegpt kto with openai-style tags (kto_en_demo's entry)", () => {
  const entry = { formatting: "sharegpt", columns: { messages: "messages", kto_tag: "label" }, tags: OPENAI_TAGS };
  const e = ex(
    conv(
      entry,
      { messages: [{ role: "user", content: "q" }, { role: "assistant", content: "a" }], label: true },
      "kto",
    ),
  );
  assert.deepEqual(e.prompt, [{ role: "user", content: "q" }]);
  assert.deepEqual(e.response, [{ role: "assistant", content: "a" }]);
  assert.equal(e.ktoTag, true);
  // tags without system_tag: a system message is no known role (as in LF)
  const sys = conv(entry, {
    messages: [{ role: "system", content: "s" }, { role: "user", content: "q" }, { role: "assistant", content: "a" }],
    label: true,
  }, "kto");
  assert.match(sys.dropped!, /invalid role tag: message 1/);
  const untagged = ex(
    conv(
      entry,
      { messages: [{ role: "user", content: "q" }, { role: "assistant", content: "a" }], label: null },
      "kto",
    ),
  );
  assert.match(stageProblem(untagged, "kto")!, /no kto tag/);
});

Deno.test("openai: tool_calls become a function message, tool results merge, LF's system quirk", () => {
  const entry = {
    formatting: "openai",
    columns: { messages: "messages", tools: "tools" },
    tags: { ...OPENAI_TAGS, observation_tag: "tool", function_tag: "function", system_tag: "system" },
  };
  const e = ex(conv(entry, {
    messages: [
      { role: "system", content: "You help." },
      { role: "user", content: "weather in A and B?" },
      {
        role: "assistant",
        content: null,
        tool_calls: [{ function: { name: "w", arguments: '{"c": "A"}' } }, {
          function: { name: "w", arguments: '{"c": "B"}' },
        }],
      },
      { role: "tool", content: "sunny" },
      { role: "tool", content: "rainy" },
      { role: "assistant", content: "A sunny, B rainy." },
    ],
    tools: [{ type: "function", function: { name: "w" } }],
  }));
  assert.deepEqual(e.prompt, [
    { role: "user", content: "weather in A and B?" },
    {
      role: "function",
      content: '[{"name": "w", "arguments": "{\\"c\\": \\"A\\"}"}, {"name": "w", "arguments": "{\\"c\\": \\"B\\"}"}]',
    },
    { role: "observation", content: "sunny\n</tool_response>\n<tool_response>\nrainy" },
  ]);
  assert.equal(e.system, "You help.\n");
  assert.equal(e.tools, '[{"type": "function", "function": {"name": "w"}}]');
  const plain = { messages: [{ role: "user", content: "q" }, { role: "assistant", content: "a" }] };
  assert.equal(ex(conv(entry, plain)).system, "detailed thinking off");
  const sys = (s: string) => ex(conv(entry, { messages: [{ role: "system", content: s }, ...plain.messages] })).system;
  assert.equal(sys("Be nice."), "Be nice.\ndetailed thinking off");
  assert.equal(sys("detailed thinking on"), "detailed thinking on");
});

Deno.test("stage checks: what each stage needs of a row and of a dataset", () => {
  const base = { system: "", tools: "", source: { dataset: "d", file: "f", row: 1 } };
  const u = { role: "user" as const, content: "q" }, a = { role: "assistant" as const, content: "a" };
  assert.equal(stageProblem({ ...base, prompt: [u], response: [a] }, "sft"), undefined);
  assert.match(stageProblem({ ...base, prompt: [u, a], response: [a] }, "sft")!, /odd number/);
  assert.match(stageProblem({ ...base, prompt: [u], response: [a] }, "dpo")!, /chosen\/rejected/);
  assert.match(stageProblem({ ...base, prompt: [], response: [] }, "pt")!, /empty prompt/);
  assert.match(stageProblem({ ...base, prompt: [u], response: [a] }, "kto")!, /kto tag/);
  const attr = (e: Record<string, unknown>) => parseDatasetAttr("d", { file_name: "f", ...e });
  assert.match(
    datasetProblem(attr({ columns: { messages: "m", images: "images" } }), "sft")!,
    /images column "images": multimodal datasets are not supported/,
  );
  assert.match(
    datasetProblem(attr({ ranking: true, columns: { chosen: "c", rejected: "r", prompt: "p" } }), "sft")!,
    /only stages rm and dpo/,
  );
  assert.match(datasetProblem(attr({}), "dpo")!, /needs a preference dataset/);
  assert.match(datasetProblem(attr({}), "kto")!, /needs a kto_tag column/);
  assert.match(datasetProblem(attr({ columns: { prompt: "text" } }), "sft")!, /no response column/);
  assert.equal(datasetProblem(attr({ columns: { prompt: "text" } }), "pt"), undefined);
  assert.match(
    datasetProblem(attr({ formatting: "sharegpt", columns: { system: "s" } }), "sft")!,
    /needs columns.messages/,
  );
});

Deno.test("pyJsonDumps writes Python's json.dumps separators", () => {
  assert.equal(pyJsonDumps({ a: [1, "x", null, true], b: {} }), '{"a": [1, "x", null, true], "b": {}}');
  assert.equal(pyJsonDumps("é\n"), '"é\\n"');
});
