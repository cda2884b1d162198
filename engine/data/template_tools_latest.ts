/**
 * The tool formats of LLaMA-Factory's newer `data/tool_utils.py` (hiyouga/LLaMA-Factory commit 8b1ed2fa): `qwen3_5`
 * (Qwen3.5 / 3.6: `<function=name>` blocks of `<parameter=key>` values) and `gemma4` (Gemma 4's `declaration:` tool
 * text and `<|tool_call>call:name{k:v}<tool_call|>` calls) — tool text, call text and, in
 * {@link LATEST_TOOL_EXTRACTORS}, their `tool_extractor`s. (That commit's `lfm2` is template_tools_more.ts's `lfm`.)
 * Importing this module adds the formatters to {@link TOOL_UTILS}; template.ts and tool_extract.ts import it.
 * @module
 */
import {
  type FunctionCall,
  pyDumps,
  type PyJson,
  pyLoads,
  PyNum,
  pyStr,
  TOOL_UTILS,
  type ToolUtils,
} from "./template_tools.ts";

/** One extracted call (as tool_extract.ts's `ExtractedCall`). */
interface Call {
  name: string;
  arguments: string;
}

const get = (m: PyJson, key: string): PyJson | undefined => (m instanceof Map ? m.get(key) : undefined);
/** `tool.get("function", tool) if tool.get("type") == "function" else tool` */
const unwrap = (tool: PyJson): PyJson => (get(tool, "type") === "function" ? (get(tool, "function") ?? tool) : tool);
/** Python truthiness of an optional JSON value. */
const truthy = (v: PyJson | undefined): v is PyJson =>
  v !== undefined && v !== null && v !== false && v !== "" &&
  !(Array.isArray(v) && v.length === 0) && !(v instanceof Map && v.size === 0) &&
  !(v instanceof PyNum && Number(v.raw) === 0);
/** Python's `sorted` on strings: by code point. */
const byCodePoint = (a: string, b: string): number => {
  const x = [...a].map((c) => c.codePointAt(0)!), y = [...b].map((c) => c.codePointAt(0)!);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
};
const tryLoads = (s: string): PyJson | undefined => {
  try {
    return pyLoads(s);
  } catch {
    return undefined;
  }
};

const QWEN35_TOOL_PROMPT = (toolText: string) =>
  `\n\n# Tools\n\nYou have access to the following functions:\n\n<tools>${toolText}` +
  "\n</tools>\n\nIf you choose to call a function ONLY reply in the following format with NO suffix:\n\n" +
  "<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n</parameter>\n" +
  "<parameter=example_parameter_2>\nThis is the value for the second parameter\nthat can span\nmultiple lines\n" +
  "</parameter>\n</function>\n</tool_call>\n\n<IMPORTANT>\nReminder:\n" +
  "- Function calls MUST follow the specified format: " +
  "an inner <function=...></function> block must be nested within <tool_call></tool_call> XML tags\n" +
  "- Required parameters MUST be specified\n" +
  "- You may provide optional reasoning for your function call in natural language " +
  "BEFORE the function call, but NOT after\n" +
  "- If there is no function call available, answer the question like normal with your current knowledge " +
  "and do not tell the user about function calls\n</IMPORTANT>";

/** Gemma 4's string quote. */
const Q = '<|"|>';

/** `Gemma4ToolUtils.tool_formatter`'s `_format_parameters`. */
function gemma4Parameters(properties: PyJson): string {
  if (!(properties instanceof Map)) throw new Error("tool schema: expected parameters.properties to be an object");
  const parts: string[] = [];
  for (const [name, schema] of properties) {
    const items: string[] = [];
    const desc = get(schema, "description"), type = get(schema, "type");
    if (truthy(desc)) items.push(`description:${Q}${pyStr(desc)}${Q}`);
    if (truthy(type)) items.push(`type:${Q}${pyStr(type).toUpperCase()}${Q}`);
    parts.push(`${name}:{${items.join(",")}}`);
  }
  return parts.join(",");
}

/** `Gemma4ToolUtils.function_formatter`'s `_format_argument` (keys are never quoted there: escape_keys=False). */
function gemma4Argument(v: PyJson): string {
  if (typeof v === "string") return `${Q}${v}${Q}`;
  if (typeof v === "boolean") return v ? "true" : "false";
  if (v === null) return "null";
  if (v instanceof Map) {
    return "{" + [...v.keys()].sort(byCodePoint).map((k) => `${k}:${gemma4Argument(v.get(k)!)}`).join(",") + "}";
  }
  if (Array.isArray(v)) return "[" + v.map(gemma4Argument).join(",") + "]";
  return pyStr(v);
}

/** The added tool formats, by LF's `tool_format` name. */
export const LATEST_TOOL_UTILS: Record<string, ToolUtils> = {
  // Qwen35ToolUtils
  qwen3_5: {
    toolFormatter: (tools) => QWEN35_TOOL_PROMPT(tools.map((t) => "\n" + pyDumps(unwrap(t))).join("")),
    functionFormatter: (fns: FunctionCall[]) =>
      fns.map((f) => {
        const args = pyLoads(f.arguments);
        if (!(args instanceof Map)) throw new Error(`function arguments must be a JSON object, got ${f.arguments}`);
        let prompt = `<tool_call>\n<function=${pyStr(f.name)}>`;
        for (const [key, value] of args) {
          prompt += `\n<parameter=${key}>\n${typeof value === "string" ? value : pyDumps(value)}\n</parameter>`;
        }
        return prompt + "\n</function>\n</tool_call>";
      }).join("\n"),
  },
  // Gemma4ToolUtils
  gemma4: {
    toolFormatter(tools) {
      return tools.map((tool) => {
        const fn = unwrap(tool);
        const name = get(fn, "name");
        if (name === undefined) throw new Error('tool schema: expected a "name" key (KeyError in LLaMA-Factory)');
        let decl = `declaration:${pyStr(name)}{description:${Q}${pyStr(get(fn, "description") ?? "")}${Q}`;
        const params = get(fn, "parameters");
        if (truthy(params)) {
          const parts: string[] = [];
          const props = get(params, "properties"), required = get(params, "required"), type = get(params, "type");
          if (truthy(props)) parts.push(`properties:{${gemma4Parameters(props)}}`);
          if (truthy(required)) {
            if (!Array.isArray(required)) throw new Error("tool schema: parameters.required must be a list");
            parts.push(`required:[${required.map((r) => `${Q}${pyStr(r)}${Q}`).join(",")}]`);
          }
          if (truthy(type)) parts.push(`type:${Q}${pyStr(type).toUpperCase()}${Q}`);
          decl += `,parameters:{${parts.join(",")}}`;
        }
        const response = get(fn, "response");
        if (truthy(response)) {
          const parts: string[] = [];
          const desc = get(response, "description");
          if (truthy(desc)) parts.push(`description:${Q}${pyStr(desc)}${Q}`);
          const rtype = pyStr(get(response, "type") ?? "").toUpperCase();
          if (rtype === "OBJECT") parts.push(`type:${Q}${rtype}${Q}`);
          decl += `,response:{${parts.join(",")}}`;
        }
        return decl + "}";
      }).join("\n");
    },
    functionFormatter: (fns) =>
      fns.map((f) => {
        const args = tryLoads(f.arguments) ?? f.arguments;
        let body: string;
        if (args instanceof Map) {
          body = [...args.keys()].sort(byCodePoint).map((k) => `${k}:${gemma4Argument(args.get(k)!)}`).join(",");
        } else if (typeof args === "string") body = args;
        else body = gemma4Argument(args);
        return `<|tool_call>call:${pyStr(f.name)}{${body}}<tool_call|>`;
      }).join(""),
  },
};
Object.assign(TOOL_UTILS, LATEST_TOOL_UTILS);

/** `Gemma4ToolUtils.tool_extractor`'s `_parse_arguments`: `k:v` text back to JSON (or the text when it fails). */
function gemma4ParseArguments(argText: string): PyJson {
  const text = argText.trim();
  if (!text) return new Map();
  let normalized = `{${text}}`.replace(/<\|"\|>([\s\S]*?)<\|"\|>/g, (_, s: string) => pyDumps(s));
  normalized = normalized.replace(/(^|[{\s,])([A-Za-z_][A-Za-z0-9_]*)(\s*:)/g, '$1"$2"$3');
  return tryLoads(normalized) ?? tryLoads(text) ?? text;
}

/** The added formats' `tool_extractor`s. */
export const LATEST_TOOL_EXTRACTORS: Record<string, (content: string) => string | Call[]> = {
  /** `<tool_call><function=f><parameter=k>v</parameter>...</function></tool_call>`; values parse as JSON when they can. */
  qwen3_5(content) {
    const re = /<tool_call>\s*<function=\s*([^\s<>]+)\s*(.*?)\s*<\/function>\s*<\/tool_call>/gs;
    const out = [...content.matchAll(re)].map((f) => {
      const args = new Map<string, PyJson>();
      for (const p of f[2].trim().matchAll(/<parameter=(.*?)>(.*?)<\/parameter>/gs)) {
        const value = p[2].trim();
        const parsed = tryLoads(value);
        args.set(p[1], parsed === undefined ? value : parsed);
      }
      return { name: f[1].trim(), arguments: pyDumps(args) };
    });
    return out.length ? out : content;
  },
  /** `<|tool_call>call:f{k:v,...}<tool_call|>`, any number of them. */
  gemma4(content) {
    const matches = [...content.matchAll(/<\|tool_call>call:([^{\s]+)\{(.*?)\}<tool_call\|>/gs)];
    if (!matches.length) return content;
    return matches.map((m) => {
      const parsed = gemma4ParseArguments(m[2]);
      return { name: m[1].trim(), arguments: typeof parsed === "string" ? parsed : pyDumps(parsed) };
    });
  },
};
