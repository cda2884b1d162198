/**
 * Templates against LLaMA-Factory: the cases its own tests pin (tests/data/test_template.py, test_formatter.py) and
 * the goldens of fixtures/data_goldens/make_goldens.py (encode_multiturn / encode_oneturn of 13 templates on the
 * real Qwen3, Llama 3 and Gemma 3 tokenizers).
 */
import assert from "node:assert/strict";
import { goldens, goldenTemplate, goldenTokenizer, TEMPLATE_TOKENIZER, toAligned } from "./data_goldens.ts";
import { applySlots, getTemplate, parseTemplate, TEMPLATES } from "./template.ts";
import { formatFunction, formatTools, pyDumps, pyFloatRepr, pyLoads } from "./template_tools.ts";

const M = [
  { role: "user", content: "How are you" },
  { role: "assistant", content: "I am fine!" },
  { role: "user", content: "你好" },
  { role: "assistant", content: "很高兴认识你！" },
];

Deno.test("llama3 encode_oneturn and encode_multiturn (LF test_template.py)", async () => {
  const tpl = await goldenTemplate("llama3");
  const dec = (ids: number[]) => tpl.tokenizer.decode(ids);
  const [prompt, answer] = tpl.encodeOneturn(M);
  assert.equal(
    dec(prompt),
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHow are you<|eot_id|>" +
      "<|start_header_id|>assistant<|end_header_id|>\n\nI am fine!<|eot_id|>" +
      "<|start_header_id|>user<|end_header_id|>\n\n你好<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
  );
  assert.equal(dec(answer), "很高兴认识你！<|eot_id|>");
  const pairs = tpl.encodeMultiturn(M).map(([p, r]) => [dec(p), dec(r)]);
  assert.deepEqual(pairs, [
    [
      "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHow are you<|eot_id|>" +
      "<|start_header_id|>assistant<|end_header_id|>\n\n",
      "I am fine!<|eot_id|>",
    ],
    [
      "<|start_header_id|>user<|end_header_id|>\n\n你好<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
      "很高兴认识你！<|eot_id|>",
    ],
  ]);
  // stop token ids {128008 (eom on Llama 3.1; a new token 128256 on this Llama 3.0 tokenizer), 128009}
  assert.deepEqual(tpl.stopTokenIds(), [128009, 128256]);
  assert.equal(tpl.padId, 128009);
});

Deno.test("qwen3 reasoning template with and without thinking (LF test_reasoning_encode_oneturn)", async () => {
  const prompt = "<|im_start|>user\nHow are you<|im_end|>\n<|im_start|>assistant\nI am fine!<|im_end|>\n" +
    "<|im_start|>user\n你好<|im_end|>\n<|im_start|>assistant\n";
  const empty = "<think>\n\n</think>\n\n";
  const cot = [
    ...M.slice(0, 1),
    { role: "assistant", content: "<think>\nModel thought here\n</think>\n\nI am fine!" },
    M[2],
    { role: "assistant", content: "<think>\n模型思考内容\n</think>\n\n很高兴认识你！" },
  ];
  const cases: [boolean | null, typeof M, string, string][] = [
    [true, M, prompt, empty + "很高兴认识你！<|im_end|>\n"],
    [false, M, prompt + empty, "很高兴认识你！<|im_end|>\n"],
    [null, M, prompt + empty, "很高兴认识你！<|im_end|>\n"],
    [true, cot, prompt, "<think>\n模型思考内容\n</think>\n\n很高兴认识你！<|im_end|>\n"],
    [null, cot, prompt, "<think>\n模型思考内容\n</think>\n\n很高兴认识你！<|im_end|>\n"],
    [false, cot, prompt + empty, "很高兴认识你！<|im_end|>\n"],
  ];
  for (const [enableThinking, messages, p, a] of cases) {
    const tpl = await goldenTemplate("qwen3", { enable_thinking: enableThinking });
    const [pi, ai] = tpl.encodeOneturn(messages);
    assert.deepEqual([tpl.tokenizer.decode(pi), tpl.tokenizer.decode(ai)], [p, a], `enable_thinking=${enableThinking}`);
  }
});

Deno.test("tokenizer fixes: eos / pad / bos / new stop tokens match transformers after LF's fix_special_tokens", async () => {
  for (const f of goldens.fixes) {
    const tpl = await goldenTemplate(f.template);
    const t = tpl.tokenizer;
    assert.deepEqual([t.eos?.content, t.eos?.id], f.eos, `${f.template} eos`);
    assert.deepEqual([t.pad?.content, t.pad?.id], f.pad, `${f.template} pad`);
    assert.deepEqual([t.bos?.content ?? null, t.bos?.id ?? null], f.bos, `${f.template} bos`);
    assert.equal(t.vocabSize, f.vocab_size, `${f.template} len(tokenizer)`);
    assert.deepEqual(tpl.stopTokenIds(), f.stop_ids, `${f.template} stop ids`);
  }
});

Deno.test("parse_template derives the same slots as LF from each tokenizer's Jinja template", async () => {
  for (const [name, want] of Object.entries(goldens.parse_template)) {
    const spec = parseTemplate(await goldenTokenizer(name));
    assert.deepEqual(
      {
        prefix: spec.prefix.join(""),
        user: spec.user[0],
        assistant: spec.assistant[0],
        system: spec.system[0],
        default_system: spec.defaultSystem,
        reasoning: spec.kind === "reasoning",
      },
      want,
      name,
    );
  }
  const q = getTemplate(await goldenTokenizer("qwen3"));
  assert.equal(q.spec.kind, "reasoning");
});

Deno.test("encode_multiturn / encode_oneturn match the goldens for every template and conversation", async () => {
  let n = 0;
  for (const g of goldens.encode) {
    const tpl = await goldenTemplate(g.template, g.options);
    const conv = toAligned(goldens.conversations[g.conversation], 0);
    const messages = [...conv.prompt, ...conv.response];
    const what = `${g.template} ${JSON.stringify(g.options)} ${g.conversation}`;
    assert.deepEqual(tpl.encodeMultiturn(messages, conv.system, conv.tools), g.multiturn, `${what} multiturn`);
    const oneturn = g.oneturn ??
      [g.multiturn.slice(0, -1).flat(2).concat(g.multiturn.at(-1)![0]), g.multiturn.at(-1)![1]];
    assert.deepEqual(tpl.encodeOneturn(messages, conv.system, conv.tools), oneturn, `${what} oneturn`);
    if (g.multiturn_discarding) {
      assert.deepEqual(tpl.encodeMultiturn(messages, conv.system, conv.tools, true), g.multiturn_discarding, what);
    }
    if (g.oneturn_text) assert.deepEqual(oneturn.map((ids) => tpl.tokenizer.decode(ids)), g.oneturn_text, what);
    n++;
  }
  assert.ok(n > 100, `expected the goldens to hold over 100 encodings, got ${n}`);
});

Deno.test("every registered template renders a conversation with tools, functions and observations", async () => {
  const q = await goldenTokenizer("qwen3");
  const conv = goldens.conversations.tools;
  const g = await goldenTokenizer("gemma3");
  for (const name of TEMPLATES.keys()) {
    // chatglm3 and yuan name tokens ({token}) that only gemma3's vocabulary answers (with <unk>, as transformers)
    const tpl = getTemplate(TEMPLATE_TOKENIZER[name] === "gemma3" ? g : q, { template: name });
    const pairs = tpl.encodeMultiturn([...conv.prompt, ...conv.response], conv.system, conv.tools);
    assert.equal(pairs.length, 2, name);
    assert.ok(pairs.every(([p, r]) => p.length > 0 && r.length > 0), name);
  }
  assert.throws(() => getTemplate(q, { template: "nope" }), /Template nope does not exist/);
  assert.throws(
    () => getTemplate(q, { template: "breeze", trainOnPrompt: true }),
    /does not support `train_on_prompt`/,
  );
  assert.ok(TEMPLATE_TOKENIZER.llama3);
});

Deno.test("StringFormatter: first {{content}} only, then {{idx}}; no $-pattern expansion", () => {
  assert.deepEqual(applySlots(["a{{content}}b{{content}}", { special: "eos_token" }], { content: "$&x" }), [
    "a$&xb{{content}}",
    { special: "eos_token" },
  ]);
  assert.deepEqual(applySlots(["[{{idx}}]{{content}}"], { content: "{{idx}}", idx: "3" }), ["[3]{{idx}}"]);
});

const TEST_TOOL = JSON.stringify([{
  name: "test_tool",
  description: "tool_desc",
  parameters: {
    type: "object",
    properties: {
      foo: { type: "string", description: "foo_desc" },
      bar: { type: "number", description: "bar_desc" },
    },
    required: ["foo"],
  },
}]);
const FUNCTION = '{"name": "tool_name", "arguments": {"foo": "bar", "size": 10}}';

Deno.test("tool formats (LF test_formatter.py)", () => {
  assert.equal(formatFunction("default", FUNCTION), 'Action: tool_name\nAction Input: {"foo": "bar", "size": 10}');
  assert.equal(
    formatFunction("qwen", FUNCTION),
    '<tool_call>\n{"name": "tool_name", "arguments": {"foo": "bar", "size": 10}}\n</tool_call>',
  );
  assert.equal(formatFunction("llama3", FUNCTION), '{"name": "tool_name", "parameters": {"foo": "bar", "size": 10}}');
  assert.equal(formatFunction("mistral", FUNCTION), '[{"name": "tool_name", "arguments": {"foo": "bar", "size": 10}}]');
  assert.equal(
    formatTools("default", TEST_TOOL, new Date()),
    "You have access to the following tools:\n> Tool Name: test_tool\nTool Description: tool_desc\nTool Args:\n" +
      "  - foo (string, required): foo_desc\n  - bar (number): bar_desc\n\n" +
      "Use the following format if using a tool:\n```\nAction: tool name (one of [test_tool])\n" +
      "Action Input: the input to the tool, in a JSON format representing the kwargs " +
      '(e.g. ```{"input": "hello world", "num_beams": 5}```)\n```\n',
  );
  assert.equal(formatTools("qwen", "[]", new Date()), "");
  // a thought before the call is kept in front; <tool_call> wrappers are unwrapped
  assert.equal(
    formatFunction("qwen", `<think>\nhmm\n</think>\n\n${FUNCTION}`, ["<think>\n", "\n</think>\n\n"]),
    '<think>\nhmm\n</think>\n\n<tool_call>\n{"name": "tool_name", "arguments": {"foo": "bar", "size": 10}}\n</tool_call>',
  );
  assert.equal(
    formatFunction("default", `I will call.<tool_call>${FUNCTION}</tool_call>`, undefined, [
      "<tool_call>",
      "</tool_call>",
    ]),
    'I will call.Action: tool_name\nAction Input: {"foo": "bar", "size": 10}',
  );
  assert.throws(() => formatFunction("default", "not json"), /Invalid JSON format in function message/);
});

Deno.test("Python json: key order, float repr, indent", () => {
  assert.equal(
    pyDumps(pyLoads('{"b": 1, "10": 2.50, "a": [1e20, 0.00001, -0.0, 1E3, 123456789012345678901234]}')),
    '{"b": 1, "10": 2.5, "a": [1e+20, 1e-05, -0.0, 1000.0, 123456789012345678901234]}',
  );
  assert.equal(
    pyDumps(pyLoads('{"a": {}, "b": [], "c": {"d": "é\\n\\u00e9"}}'), 4),
    '{\n    "a": {},\n    "b": [],\n    "c": {\n        "d": "é\\né"\n    }\n}',
  );
  for (
    const [x, s] of [[0.1, "0.1"], [1e16, "1e+16"], [1e15, "1000000000000000.0"], [0.0001, "0.0001"], [
      1.5e-7,
      "1.5e-07",
    ], [123.456, "123.456"]] as const
  ) {
    assert.equal(pyFloatRepr(x), s);
  }
  assert.throws(() => pyLoads("{'a': 1}"), SyntaxError);
});

Deno.test("qwen3 and llama3 match the tokenizers' own chat templates on single-turn rows (LF test_template.py)", async () => {
  for (const conv of [goldens.conversations.single, goldens.conversations.system]) {
    const messages = [
      ...(conv.system ? [{ role: "system", content: conv.system }] : []),
      ...conv.prompt,
      ...conv.response,
    ];
    const qwen = await goldenTemplate("qwen3");
    const [qp, qr] = qwen.encodeOneturn([...conv.prompt, ...conv.response], conv.system, conv.tools);
    assert.equal(qwen.tokenizer.decode([...qp, ...qr]), qwen.tokenizer.base.applyChatTemplate(messages));
    const llama = await goldenTemplate("llama3");
    const [lp, lr] = llama.encodeOneturn([...conv.prompt, ...conv.response], conv.system, conv.tools);
    // the npm Llama-3 chat template always appends the generation prompt
    assert.equal(
      llama.tokenizer.decode([...lp, ...lr]) + "<|start_header_id|>assistant<|end_header_id|>\n\n",
      llama.tokenizer.base.applyChatTemplate(messages),
    );
  }
});
