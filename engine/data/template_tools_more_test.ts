/**
 * The tool formats of template_tools_more.ts (glm4_moe, seed_oss, minimax1, minimax2, ling, lfm) and
 * template_tools_latest.ts (qwen3_5, gemma4): tool text and
 * call text against fixtures/data_goldens (make_goldens.py writes them as LF's `tool_utils.py` does), and the
 * extractors on LF-style answers and round trips.
 */
import assert from "node:assert/strict";
import { goldens } from "./data_goldens.ts";
import { formatFunction, formatTools } from "./template_tools.ts";
import "./template_tools_more.ts";
import { extractTool } from "./tool_extract.ts";
import { pyLiteralCalls } from "./tool_pyliteral.ts";

const TOOLS = goldens.conversations.tools.tools;
const CALL = goldens.conversations.tools.prompt[1].content;
const PARALLEL = goldens.conversations.tools_parallel.prompt[1].content;

Deno.test("tool formats glm4_moe, seed_oss, minimax1, minimax2, ling, lfm, qwen3_5, gemma4 match LF's text", () => {
  const formats = Object.keys(goldens.tool_formats);
  assert.deepEqual(formats.sort(), [
    "gemma4",
    "glm4_moe",
    "lfm",
    "ling",
    "minimax1",
    "minimax2",
    "qwen3_5",
    "seed_oss",
  ]);
  for (const [f, want] of Object.entries(goldens.tool_formats)) {
    assert.equal(formatTools(f, TOOLS, new Date(2025, 0, 1)), want.tools, `${f} tools`);
    assert.equal(formatFunction(f, CALL), want.function, `${f} function`);
    assert.equal(formatFunction(f, PARALLEL), want.parallel, `${f} parallel`);
  }
});

const ARGS = '{"foo": "bar", "size": 10}';
const ONE = [{ name: "test_tool", arguments: ARGS }];
const TWO = [...ONE, { name: "another_tool", arguments: '{"foo": "job", "size": 2, "ok": true}' }];
const fn = (calls: typeof ONE) =>
  JSON.stringify(calls.map((c) => ({ name: c.name, arguments: JSON.parse(c.arguments) })));

Deno.test("tool extractors invert the function formatters (minimax1, seed_oss, ling, lfm, qwen3_5)", () => {
  // (minimax2 is not among them: LF writes its calls as bare <invoke> blocks but reads them only inside
  // <minimax:tool_call>...</minimax:tool_call>)
  for (const f of ["minimax1", "seed_oss", "ling", "lfm", "lfm2", "qwen3_5"]) {
    for (const calls of [ONE, TWO]) assert.deepEqual(extractTool(f, formatFunction(f, fn(calls))), calls, f);
    // LF's seed_oss extractor answers an empty list when it finds no call
    assert.deepEqual(extractTool(f, "plain answer"), f === "seed_oss" ? [] : "plain answer", f);
  }
  // LF's glm4_moe keeps qwen's extractor, which does not read glm4_moe's own <arg_key> text
  const glm = formatFunction("glm4_moe", fn(ONE));
  assert.equal(
    glm,
    "\n<tool_call>test_tool\n<arg_key>foo</arg_key>\n<arg_value>bar</arg_value>" +
      "\n<arg_key>size</arg_key>\n<arg_value>10</arg_value>",
  );
  assert.equal(extractTool("glm4_moe", glm), glm);
  assert.deepEqual(
    extractTool("glm4_moe", `<tool_call>\n{"name": "test_tool", "arguments": ${ARGS}}\n</tool_call>`),
    ONE,
  );
});

Deno.test("gemma4: calls are written with sorted keys and read back as JSON (LF's Gemma4ToolUtils)", () => {
  const text = formatFunction("gemma4", fn(TWO));
  assert.equal(
    text,
    '<|tool_call>call:test_tool{foo:<|"|>bar<|"|>,size:10}<tool_call|>' +
      '<|tool_call>call:another_tool{foo:<|"|>job<|"|>,ok:true,size:2}<tool_call|>',
  );
  assert.deepEqual(extractTool("gemma4", text), [
    ONE[0],
    { name: "another_tool", arguments: '{"foo": "job", "ok": true, "size": 2}' },
  ]);
  // nested objects and lists; a string value holding a quote marker's text stays a string
  const nested = formatFunction("gemma4", '{"name": "f", "arguments": {"b": {"y": [1, "two", null]}, "a": false}}');
  assert.equal(nested, '<|tool_call>call:f{a:false,b:{y:[1,<|"|>two<|"|>,null]}}<tool_call|>');
  assert.deepEqual(extractTool("gemma4", nested), [{
    name: "f",
    arguments: '{"a": false, "b": {"y": [1, "two", null]}}',
  }]);
  assert.equal(extractTool("gemma4", "plain answer"), "plain answer");
});

Deno.test("minimax extractors: values parse as JSON when they can, else stay raw; bad lines are skipped", () => {
  const m2 = '<minimax:tool_call>\n<invoke name="test_tool">\n<parameter name="foo">bar</parameter>\n' +
    '<parameter name="size">10</parameter>\n</invoke>\n<invoke name="x">\n<parameter name="q"> [1, 2.0] </parameter>' +
    "\n</invoke>\n</minimax:tool_call>";
  assert.deepEqual(extractTool("minimax2", m2), [...ONE, { name: "x", arguments: '{"q": [1, 2.0]}' }]);
  assert.equal(extractTool("minimax2", "no calls"), "no calls");
  // LF 8b1ed2fa: a wrapper without a well-formed call answers the content (tests/data/test_tool_utils.py)
  for (
    const c of [
      "<minimax:tool_call>\nno invoke block here\n</minimax:tool_call>",
      "<minimax:tool_call>\n\n</minimax:tool_call>",
    ]
  ) {
    assert.equal(extractTool("minimax2", c), c);
  }
  for (const c of ["<tool_calls>\nthis is not json\n</tool_calls>", "<tool_calls>\n\n</tool_calls>"]) {
    assert.equal(extractTool("minimax1", c), c);
  }
  assert.equal(
    formatFunction("minimax2", fn(TWO)),
    '<invoke name="test_tool">\n<parameter name="foo">bar</parameter>\n<parameter name="size">10</parameter>\n</invoke>' +
      '\n<invoke name="another_tool">\n<parameter name="foo">job</parameter>\n<parameter name="size">2</parameter>' +
      '\n<parameter name="ok">true</parameter>\n</invoke>',
  );
  assert.deepEqual(
    extractTool("minimax1", `<tool_calls>\nnot json\n{"name": "test_tool", "arguments": ${ARGS}}\n</tool_calls>`),
    ONE,
  );
  // LF writes `<function=name` without `>`; its extractor then reads a `>` written after the name into the name
  const seed = "<seed:tool_call>\n<function=f\n<parameter=a>two\nlines</parameter>\n<parameter=b>1e3</parameter>" +
    "\n</function>\n</seed:tool_call>";
  assert.deepEqual(extractTool("seed_oss", seed), [{ name: "f", arguments: '{"a": "two\\nlines", "b": 1000.0}' }]);
  assert.equal((extractTool("seed_oss", seed.replace("=f", "=f>")) as { name: string }[])[0].name, "f>");
});

Deno.test("lfm: Python call syntax as LF's ast reading (values checked against CPython's ast + json)", () => {
  const cases: [string, string | { name: string; arguments: string }[]][] = [
    [
      `[f(a="x", b=true, c=[1, 2.0, -3, 1e3], d={'k': None, 2: (1, 2)}, e='it\\'s é\\n')]`,
      [{
        name: "f",
        arguments: '{"a": "x", "b": true, "c": [1, 2.0, -3, 1000.0], "d": {"k": null, "2": [1, 2]}, "e": "it\'s é\\n"}',
      }],
    ],
    [`g(q="中文", n=-0.0)`, [{ name: "g", arguments: '{"q": "中文", "n": -0.0}' }]],
    ["f(1, a=2)", [{ name: "f", arguments: '{"a": 2}' }]],
    ["f(a=1, a=2)", [{ name: "f", arguments: '{"a": 2}' }]],
    ["f(a=g(1))", "CONTENT"],
    ["f(a=[true])", "CONTENT"],
    ["[]", "CONTENT"],
    ["f(a=", "CONTENT"],
    ["x.f(a=1)", "CONTENT"],
  ];
  for (const [text, want] of cases) {
    const answer = `<|tool_call_start|>${text}<|tool_call_end|>`;
    assert.deepEqual(extractTool("lfm", answer), want === "CONTENT" ? answer : want, text);
  }
  assert.equal(pyLiteralCalls("f(a='''x''')"), undefined);
});
