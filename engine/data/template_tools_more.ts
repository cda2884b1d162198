/**
 * More of LLaMA-Factory's tool formats (`data/tool_utils.py`, hiyouga/LLaMA-Factory commit 0b816129): `glm4_moe`,
 * `seed_oss`, `minimax1`, `minimax2`, `ling` and `lfm` — the tool text (`tool_formatter`), the assistant text of
 * calls (`function_formatter`) and, in {@link MORE_TOOL_EXTRACTORS}, the inverse (`tool_extractor`).
 * Importing this module adds the formatters to {@link TOOL_UTILS}; template.ts and tool_extract.ts import it.
 *
 * Two fixes of LF's later tool_utils.py (commit 8b1ed2fa) are followed: `MiniMaxM2ToolUtils.function_formatter` returns
 * its text (at 0b816129 it had no `return`), and the minimax extractors answer the content when they find no call.
 * @module
 */
import {
  type FunctionCall,
  pyDumps,
  type PyJson,
  pyLoads,
  pyStr,
  TOOL_UTILS,
  type ToolUtils,
} from "./template_tools.ts";
import { pyLiteralCalls } from "./tool_pyliteral.ts";

/** One extracted call (as tool_extract.ts's `ExtractedCall`). */
interface Call {
  name: string;
  arguments: string;
}

const get = (m: PyJson, key: string): PyJson | undefined => (m instanceof Map ? m.get(key) : undefined);
/** `tool.get("function", "") if tool.get("type") == "function" else tool` */
const unwrap = (tool: PyJson): PyJson => (get(tool, "type") === "function" ? (get(tool, "function") ?? "") : tool);
/** `tool if tool.get("type") == "function" else {"type": "function", "function": tool}` */
const wrap = (tool: PyJson): PyJson =>
  get(tool, "type") === "function" ? tool : new Map<string, PyJson>([["type", "function"], ["function", tool]]);

/** `json.loads(arguments).items()`: the argument map of a call (LF fails with AttributeError on a non-object). */
function argItems(f: FunctionCall): [string, PyJson][] {
  const args = pyLoads(f.arguments);
  if (!(args instanceof Map)) throw new Error(`function arguments must be a JSON object, got ${f.arguments}`);
  return [...args];
}
/** `value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)` */
const valueText = (v: PyJson): string => (typeof v === "string" ? v : pyDumps(v));

const GLM4_MOE_TOOL_PROMPT = (toolText: string) =>
  "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n" +
  `You are provided with function signatures within <tools></tools> XML tags:\n<tools>${toolText}` +
  "\n</tools>\n\nFor each function call, output the function name and arguments within the following XML format:" +
  "\n<tool_call>{function-name}\n<arg_key>{arg-key-1}</arg_key>\n<arg_value>{arg-value-1}</arg_value>" +
  "\n<arg_key>{arg-key-2}</arg_key>\n<arg_value>{arg-value-2}</arg_value>\n...\n</tool_call>\n";

const MINIMAX_M1_TOOL_PROMPT = (toolText: string) =>
  `You are provided with these tools:\n<tools>\n${toolText}</tools>\n\n` +
  "If you need to call tools, please respond with <tool_calls></tool_calls> XML tags, and provide tool-name and " +
  "json-object of arguments, following the format below:\n<tool_calls>\n" +
  '{"name": <tool-name-1>, "arguments": <args-json-object-1>}\n...\n</tool_calls>';

const MINIMAX_M2_TOOL_PROMPT = (toolText: string) =>
  "\n\n# Tools\n\nYou may call one or more tools to assist with the user query.\n" +
  `Here are the tools available in JSONSchema format:\n\n<tools>\n${toolText}</tools>\n\n` +
  "When making tool calls, use XML format to invoke tools and pass parameters:\n" +
  '\n<minimax:tool_call>\n<invoke name="tool-name-1">\n<parameter name="param-key-1">param-value-1</parameter>\n' +
  '<parameter name="param-key-2">param-value-2</parameter>\n...\n</invoke>\n</minimax:tool_call>';

const SEED_TOOL_PROMPT = (toolText: string) =>
  "system\nYou are Doubao, a helpful AI assistant. You may call one or more functions to assist with the user query." +
  "Tool List:\nYou are authorized to use the following tools (described in JSON Schema format). Before performing " +
  `any task, you must decide how to call them based on the descriptions and parameters of these tools.${toolText}\n` +
  "工具调用请遵循如下格式:\n<seed:tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>value_1" +
  "</parameter>\n<parameter=example_parameter_2>This is the value for the second parameter\nthat can span\nmultiple " +
  "lines</parameter>\n</function>\n</seed:tool_call>\n";

const LING_TOOL_PROMPT = (toolText: string) =>
  "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n" +
  `You are provided with function signatures within <tools></tools> XML tags:\n<tools>${toolText}` +
  "\n</tools>\n\nFor each function call, return a json object with function name and arguments within " +
  '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>';

const LFM_TOOL_PROMPT = (toolText: string) => `List of tools: <|tool_list_start|>${toolText}<|tool_list_end|>`;

/** The qwen-style tool list: `"\n" + json.dumps(wrapped_tool)` per tool. */
const wrappedLines = (tools: PyJson[]) => tools.map((t) => "\n" + pyDumps(wrap(t))).join("");

/** The added tool formats, by LF's `tool_format` name. */
export const MORE_TOOL_UTILS: Record<string, ToolUtils> = {
  // GLM4MOEToolUtils (a QwenToolUtils: the qwen extractor)
  glm4_moe: {
    toolFormatter: (tools) => GLM4_MOE_TOOL_PROMPT(wrappedLines(tools)),
    functionFormatter: (fns) =>
      fns.map((f) => {
        let prompt = "\n<tool_call>" + pyStr(f.name);
        for (const [key, value] of argItems(f)) {
          prompt += "\n<arg_key>" + key + "</arg_key>";
          prompt += "\n<arg_value>" + valueText(value) + "</arg_value>";
        }
        return prompt;
      }).join("\n"),
  },
  // SeedToolUtils
  seed_oss: {
    toolFormatter: (tools) => SEED_TOOL_PROMPT("\n" + pyDumps(tools)),
    functionFormatter: (fns) =>
      fns.map((f) => {
        let prompt = "\n<seed:tool_call>\n<function=" + pyStr(f.name);
        for (const [key, value] of argItems(f)) {
          prompt += "\n<parameter=" + key + ">" + valueText(value) + "</parameter>";
        }
        return prompt + "\n</function>\n</seed:tool_call>";
      }).join("\n"),
  },
  // MiniMaxM1ToolUtils
  minimax1: {
    toolFormatter: (tools) => MINIMAX_M1_TOOL_PROMPT(tools.map((t) => pyDumps(unwrap(t)) + "\n").join("")),
    functionFormatter: (fns) =>
      "<tool_calls>\n" +
      fns.map((f) => pyDumps(new Map([["name", f.name], ["arguments", pyLoads(f.arguments)]]))).join("\n") +
      "\n</tool_calls>",
  },
  // MiniMaxM2ToolUtils
  minimax2: {
    toolFormatter: (tools) =>
      MINIMAX_M2_TOOL_PROMPT(tools.map((t) => "<tool>" + pyDumps(unwrap(t)) + "</tool>\n").join("")),
    functionFormatter: (fns) =>
      fns.map((f) => {
        let prompt = `<invoke name="${pyStr(f.name)}">`;
        for (const [key, value] of argItems(f)) {
          prompt += `\n<parameter name="${key}">` + valueText(value) + "</parameter>";
        }
        return prompt + "\n</invoke>";
      }).join("\n"),
  },
  // LingToolUtils (a QwenToolUtils: qwen's function formatter and extractor)
  ling: {
    toolFormatter: (tools) => LING_TOOL_PROMPT(wrappedLines(tools)) + "\n" + "detailed thinking off",
    functionFormatter: (fns) => TOOL_UTILS.qwen.functionFormatter(fns),
  },
  // LFMToolUtils
  lfm: {
    // `tool.get("function", tool) if tool.get("type") == "function" else tool`
    toolFormatter: (tools) =>
      LFM_TOOL_PROMPT(pyDumps(tools.map((t) => (get(t, "type") === "function" ? (get(t, "function") ?? t) : t)))),
    functionFormatter(fns) {
      const calls = fns.map((f) => {
        const parts = argItems(f).map(([key, value]) =>
          typeof value === "string" ? `${key}="${value}"` : `${key}=${pyDumps(value)}`
        );
        return `${pyStr(f.name)}(${parts.join(", ")})`;
      });
      return `<|tool_call_start|>[${calls.join(", ")}]<|tool_call_end|>`;
    },
  },
};
// LF's tool_utils.py calls the LFM format `lfm` at commit 0b816129 and `lfm2` at 8b1ed2fa (the same text)
MORE_TOOL_UTILS.lfm2 = MORE_TOOL_UTILS.lfm;
Object.assign(TOOL_UTILS, MORE_TOOL_UTILS);

const tryLoads = (s: string): PyJson | undefined => {
  try {
    return pyLoads(s);
  } catch {
    return undefined;
  }
};

/** Parameters in `<key>value</key>` form: a value parses as JSON when it can (stripped), else stays raw. */
function xmlArgs(pairs: Iterable<RegExpMatchArray>): string {
  const args = new Map<string, PyJson>();
  for (const m of pairs) {
    const parsed = tryLoads(m[2].trim());
    args.set(m[1], parsed === undefined ? m[2] : parsed);
  }
  return pyDumps(args);
}

/** The added formats' `tool_extractor`s (glm4_moe and ling extract as qwen, which tool_extract.ts maps). */
export const MORE_TOOL_EXTRACTORS: Record<string, (content: string) => string | Call[]> = {
  /** `<tool_calls>` then one JSON object a line; lines that do not parse are skipped (LF: only JSONDecodeError). */
  minimax1(content) {
    const m = /<tool_calls>\s*(.+?)\s*<\/tool_calls>/s.exec(content);
    if (!m) return content;
    const out: Call[] = [];
    for (let line of m[1].split("\n")) {
      line = line.trim();
      if (!line) continue;
      const call = tryLoads(line);
      if (call === undefined) continue;
      const name = get(call, "name"), args = get(call, "arguments");
      // LF raises KeyError/TypeError here (HTTP 500); the answer is returned as text instead
      if (typeof name !== "string" || args === undefined) return content;
      out.push({ name, arguments: pyDumps(args) });
    }
    return out.length ? out : content;
  },
  /** `<minimax:tool_call>` holding `<invoke name="f">` blocks of `<parameter name="k">v</parameter>`. */
  minimax2(content) {
    const m = /<minimax:tool_call>\s*(.+?)\s*<\/minimax:tool_call>/s.exec(content);
    if (!m) return content;
    const out = [...m[1].matchAll(/<invoke name="(.*?)">(.*?)<\/invoke>/gs)].map((inv) => ({
      name: inv[1].trim(),
      arguments: xmlArgs(inv[2].matchAll(/<parameter name="(.*?)">(.*?)<\/parameter>/gs)),
    }));
    return out.length ? out : content;
  },
  /** `<seed:tool_call><function=f><parameter=k>v</parameter>...</function></seed:tool_call>`, any number of them. */
  seed_oss(content) {
    const re = /<seed:tool_call>\s*<function=\s*([^\s<]+)\s*(.*?)\s*<\/function>\s*<\/seed:tool_call>/gs;
    return [...content.matchAll(re)].map((f) => ({
      name: f[1].trim(),
      arguments: xmlArgs(f[2].trim().matchAll(/<parameter=(.*?)>(.*?)<\/parameter>/gs)),
    }));
  },
  /** `<|tool_call_start|>[f(k=v, ...), ...]<|tool_call_end|>` in Python call syntax (LF parses it with `ast`). */
  lfm(content) {
    const start = content.indexOf("<|tool_call_start|>");
    if (start === -1) return content;
    const end = content.indexOf("<|tool_call_end|>", start);
    if (end === -1) return content;
    const calls = pyLiteralCalls(content.slice(start + "<|tool_call_start|>".length, end).trim());
    if (calls === undefined || calls.length === 0) return content;
    return calls.map((c) => ({ name: c.name, arguments: pyDumps(c.kwargs) }));
  },
};
MORE_TOOL_EXTRACTORS.lfm2 = MORE_TOOL_EXTRACTORS.lfm;
