/**
 * The tool extractors against LLaMA-Factory's `tests/data/test_formatter.py` examples (single and parallel calls per
 * format) and round trips through the function formatters of `template_tools.ts`.
 */
import assert from "node:assert/strict";
import { extractTool } from "./tool_extract.ts";
import { pyLoads, TOOL_UTILS } from "./template_tools.ts";

const ARGS = '{"foo": "bar", "size": 10}';
const ARGS2 = '{"foo": "job", "size": 2}';
const ONE = [{ name: "test_tool", arguments: ARGS }];
const TWO = [...ONE, { name: "another_tool", arguments: ARGS2 }];

Deno.test("tool_extract: LF's examples for default, glm4, llama3, mistral and qwen", () => {
  const cases: [string, string, unknown][] = [
    ["default", `Action: test_tool\nAction Input: ${ARGS}`, ONE],
    ["default", `Action: test_tool\nAction Input: ${ARGS}\nAction: another_tool\nAction Input: ${ARGS2}`, TWO],
    ["default", 'Action: test_tool\nAction Input: ```{"foo": "bar", "size": 10}```\n', ONE],
    ["glm4", `test_tool\n${ARGS}\n`, ONE],
    ["llama3", `{"name": "test_tool", "parameters": ${ARGS}}\n`, ONE],
    [
      "llama3",
      `[{"name": "test_tool", "parameters": ${ARGS}}, {"name": "another_tool", "parameters": ${ARGS2}}]`,
      TWO,
    ],
    ["mistral", `{"name": "test_tool", "arguments": ${ARGS}}`, ONE],
    [
      "mistral",
      `[{"name": "test_tool", "arguments": ${ARGS}}, {"name": "another_tool", "arguments": ${ARGS2}}]`,
      TWO,
    ],
    ["qwen", `<tool_call>\n{"name": "test_tool", "arguments": ${ARGS}}\n</tool_call>`, ONE],
    [
      "qwen",
      `<tool_call>\n{"name": "test_tool", "arguments": ${ARGS}}\n</tool_call>\n` +
      `<tool_call>\n{"name": "another_tool", "arguments": ${ARGS2}}\n</tool_call>`,
      TWO,
    ],
  ];
  for (const [format, text, want] of cases) assert.deepEqual(extractTool(format, text), want, `${format}: ${text}`);
});

Deno.test("tool_extract: Python's json rules are kept (key order, floats, non-ASCII)", () => {
  assert.deepEqual(extractTool("qwen", '<tool_call>{"name": "f", "arguments": {"2": 1.0, "1": "é"}}</tool_call>'), [
    { name: "f", arguments: '{"2": 1.0, "1": "é"}' },
  ]);
  assert.deepEqual(extractTool("glm4", 'f\n{"b":1,"a":[1e3]}'), [{ name: "f", arguments: '{"b": 1, "a": [1000.0]}' }]);
});

Deno.test("tool_extract: text that is not a call comes back unchanged", () => {
  const cases: [string, string][] = [
    ["default", "Hello there."],
    ["default", "Action: f\nAction Input: not json"],
    ["glm4", "one line"],
    ["glm4", "f\nnot json"],
    ["llama3", "Hello."],
    ["llama3", '{"name": "f", "arguments": {}}'], // llama3 wants "parameters"
    ["llama3", "5"], // LF raises TypeError here (a 500 in its API)
    ["mistral", '{"name": "f"}'],
    ["qwen", "<tool_call>{bad}</tool_call>"],
    ["qwen", '<tool_call>{"name": "f", "arguments": {}}</tool_call> trailing text'],
  ];
  for (const [format, text] of cases) assert.equal(extractTool(format, text), text, `${format}: ${text}`);
  assert.throws(() => extractTool("nope", "x"), /no extractor; expected one of default/);
});

Deno.test("tool_extract: each function formatter's output extracts back to its calls", () => {
  const calls = TWO.map((c) => ({ name: c.name, arguments: c.arguments }));
  for (const format of ["default", "llama3", "mistral", "qwen", "glm4"]) {
    const sample = format === "glm4" ? calls.slice(0, 1) : calls; // GLM-4 has no parallel calls
    const text = TOOL_UTILS[format].functionFormatter(sample.map((c) => ({ ...c, name: pyLoads(`"${c.name}"`) })));
    assert.deepEqual(extractTool(format, text), sample, `${format}: ${text}`);
  }
});
