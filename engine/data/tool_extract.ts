/**
 * The inverse of the tool formats of `template_tools.ts`: LLaMA-Factory's `tool_extractor`s (`data/tool_utils.py`),
 * which `Template.extract_tool` applies to a model's answer. Each returns the parsed calls, or the text unchanged
 * when it does not parse as calls in that format.
 *
 * One deliberate difference: where LF's extractor would raise (a JSON value that is not an object, e.g. llama3 on
 * the answer `"5"`, which makes LF's API answer 500), these return the text as plain content.
 * @module
 */
import { pyDumps, type PyJson, pyLoads } from "./template_tools.ts";
import { MORE_TOOL_EXTRACTORS } from "./template_tools_more.ts";
import { LATEST_TOOL_EXTRACTORS } from "./template_tools_latest.ts";

/** One extracted call: the function name and its arguments as a JSON string (`json.dumps(..., ensure_ascii=False)`). */
export interface ExtractedCall {
  name: string;
  arguments: string;
}

const tryLoads = (s: string): PyJson | undefined => {
  try {
    return pyLoads(s);
  } catch {
    return undefined;
  }
};

/** Python's `str.strip(chars)`. */
function stripChars(s: string, chars: string): string {
  let a = 0, b = s.length;
  while (a < b && chars.includes(s[a])) a++;
  while (b > a && chars.includes(s[b - 1])) b--;
  return s.slice(a, b);
}

/** `[{name, <argsKey>}]` from a JSON object or list of objects, or undefined when any lacks a key. */
function callsOf(parsed: PyJson, argsKey: string): ExtractedCall[] | undefined {
  const list = Array.isArray(parsed) ? parsed : [parsed];
  const out: ExtractedCall[] = [];
  for (const tool of list) {
    if (!(tool instanceof Map)) return undefined;
    const name = tool.get("name"), args = tool.get(argsKey);
    if (typeof name !== "string" || args === undefined) return undefined;
    out.push({ name, arguments: pyDumps(args) });
  }
  return out;
}

/** The extractors, by LF's `tool_format` name. */
export const TOOL_EXTRACTORS: Record<string, (content: string) => string | ExtractedCall[]> = {
  /** `Action: name\nAction Input: {json}`, repeated for parallel calls. */
  default(content) {
    const re = /Action:\s*([a-zA-Z0-9_]+)\s*Action Input:\s*(.+?)(?=\s*Action:|\s*$)/gs;
    const matches = [...content.matchAll(re)];
    if (matches.length === 0) return content;
    const out: ExtractedCall[] = [];
    for (const m of matches) {
      const input = stripChars(stripChars(m[2].trim(), '"'), "`");
      const args = tryLoads(input);
      if (args === undefined) return content;
      out.push({ name: m[1].trim(), arguments: pyDumps(args) });
    }
    return out;
  },
  /** `name\n{json}` (one call). */
  glm4(content) {
    const nl = content.indexOf("\n");
    if (nl < 0) return content;
    const args = tryLoads(content.slice(nl + 1).trim());
    if (args === undefined) return content;
    return [{ name: content.slice(0, nl), arguments: pyDumps(args) }];
  },
  /** `{"name": ..., "parameters": {...}}` or a list of them. */
  llama3(content) {
    const parsed = tryLoads(content.trim());
    return (parsed !== undefined && callsOf(parsed, "parameters")) || content;
  },
  /** `[{"name": ..., "arguments": {...}}]` (the `[TOOL_CALLS]` token is special, so it is not in the answer). */
  mistral(content) {
    const parsed = tryLoads(content.trim());
    return (parsed !== undefined && callsOf(parsed, "arguments")) || content;
  },
  /** `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`, repeated for parallel calls. */
  qwen(content) {
    const re = /<tool_call>(.+?)<\/tool_call>(?=\s*<tool_call>|\s*$)/gs;
    const matches = [...content.matchAll(re)];
    if (matches.length === 0) return content;
    const out: ExtractedCall[] = [];
    for (const m of matches) {
      const parsed = tryLoads(m[1].trim());
      const calls = parsed === undefined || Array.isArray(parsed) ? undefined : callsOf(parsed, "arguments");
      if (!calls) return content;
      out.push(...calls);
    }
    return out;
  },
  ...MORE_TOOL_EXTRACTORS,
  ...LATEST_TOOL_EXTRACTORS,
};
// GLM4MOEToolUtils and LingToolUtils subclass QwenToolUtils and keep its extractor
TOOL_EXTRACTORS.glm4_moe = TOOL_EXTRACTORS.qwen;
TOOL_EXTRACTORS.ling = TOOL_EXTRACTORS.qwen;

/**
 * `Template.extract_tool`: the calls in `content` per the tool format, or `content` itself when it holds none.
 * Throws on a format Whetstone does not implement.
 */
export function extractTool(format: string, content: string): string | ExtractedCall[] {
  const f = TOOL_EXTRACTORS[format];
  if (!f) {
    throw new Error(
      `tool format "${format}" has no extractor; expected one of ${Object.keys(TOOL_EXTRACTORS).join(", ")}`,
    );
  }
  return f(content);
}
