/**
 * LLaMA-Factory's tool formats (`data/tool_utils.py`) and the piece of Python's `json` they rely on.
 *
 * LF reads tool schemas and function calls with `json.loads` and writes them back with `json.dumps(...,
 * ensure_ascii=False)`, so the text a model is trained on depends on Python's rules: dict key order is kept (JS
 * objects would move integer-like keys first), `1.0` stays `1.0` (JS would print `1`), separators are `", "` and
 * `": "` (or `","` with `indent`). {@link pyLoads} therefore parses into an order- and literal-preserving tree and
 * {@link pyDumps} prints it as Python does.
 * @module
 */

/** A JSON number kept as its source literal; `isInt` when Python would parse it as `int`. */
export class PyNum {
  constructor(readonly raw: string) {}
  get isInt(): boolean {
    return !/[.eE]/.test(this.raw) && !/^-?(NaN|Infinity)$/.test(this.raw);
  }
}

/** A parsed JSON value as Python sees it: objects are insertion-ordered maps (duplicate keys: last value wins). */
export type PyJson = null | boolean | string | PyNum | PyJson[] | Map<string, PyJson>;

/** `json.loads`: strict JSON plus Python's `NaN`, `Infinity`, `-Infinity`. Throws SyntaxError like JSONDecodeError. */
export function pyLoads(text: string): PyJson {
  let i = 0;
  const fail = (what: string): never => {
    throw new SyntaxError(`${what}: line 1 column ${i + 1} (char ${i})`);
  };
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i])) i++;
  };
  const value = (): PyJson => {
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const obj = new Map<string, PyJson>();
      ws();
      if (text[i] === "}") {
        i++;
        return obj;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail("Expecting property name enclosed in double quotes");
        const key = string();
        ws();
        if (text[i] !== ":") fail("Expecting ':' delimiter");
        i++;
        obj.set(key, value());
        ws();
        if (text[i] === ",") i++;
        else if (text[i] === "}") {
          i++;
          return obj;
        } else fail("Expecting ',' delimiter");
      }
    }
    if (c === "[") {
      i++;
      const arr: PyJson[] = [];
      ws();
      if (text[i] === "]") {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(value());
        ws();
        if (text[i] === ",") i++;
        else if (text[i] === "]") {
          i++;
          return arr;
        } else fail("Expecting ',' delimiter");
      }
    }
    if (c === '"') return string();
    for (const [word, v] of [["null", null], ["true", true], ["false", false]] as const) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return v;
      }
    }
    for (const word of ["NaN", "Infinity", "-Infinity"]) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return new PyNum(word);
      }
    }
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?/.exec(text.slice(i, i + 400));
    if (!m) return fail("Expecting value");
    i += m[0].length;
    return new PyNum(m[0]);
  };
  const string = (): string => {
    i++; // opening quote
    let out = "";
    for (;;) {
      if (i >= text.length) fail("Unterminated string starting at");
      const c = text[i];
      if (c === '"') {
        i++;
        return out;
      }
      if (c === "\\") {
        const e = text[i + 1];
        const simple: Record<string, string> = {
          '"': '"',
          "\\": "\\",
          "/": "/",
          b: "\b",
          f: "\f",
          n: "\n",
          r: "\r",
          t: "\t",
        };
        if (e in simple) {
          out += simple[e];
          i += 2;
        } else if (e === "u" && /^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) {
          out += String.fromCharCode(parseInt(text.slice(i + 2, i + 6), 16));
          i += 6;
        } else fail("Invalid \\escape");
        continue;
      }
      if (c.charCodeAt(0) < 0x20) fail("Invalid control character at");
      out += c;
      i++;
    }
  };
  const v = value();
  ws();
  if (i !== text.length) fail("Extra data");
  return v;
}

/** Python's `repr(float)` of a double: shortest round-trip digits, fixed notation for exponents -4..15. */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return "NaN";
  if (!Number.isFinite(x)) return x > 0 ? "Infinity" : "-Infinity";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const [mant, expText] = Math.abs(x).toExponential().split("e");
  const digits = mant.replace(".", "");
  const exp = Number(expText);
  const sign = x < 0 ? "-" : "";
  if (exp >= -4 && exp < 16) {
    if (exp < 0) return `${sign}0.${"0".repeat(-exp - 1)}${digits}`;
    const whole = digits.length > exp + 1 ? digits.slice(0, exp + 1) : digits.padEnd(exp + 1, "0");
    const frac = digits.length > exp + 1 ? digits.slice(exp + 1) : "0";
    return `${sign}${whole}.${frac}`;
  }
  const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
  return `${sign}${m}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
}

function numText(n: PyNum): string {
  if (/^-?(NaN|Infinity)$/.test(n.raw)) return n.raw === "-NaN" ? "NaN" : n.raw;
  if (n.isInt) return n.raw === "-0" ? "0" : n.raw;
  return pyFloatRepr(Number(n.raw));
}

/** Converts a plain JS value (from `JSON.parse` or code) to {@link PyJson}; numbers become int or float literals. */
export function toPy(v: unknown): PyJson {
  if (v === null || v === undefined) return null;
  if (typeof v === "boolean" || typeof v === "string") return v;
  if (v instanceof PyNum || v instanceof Map) return v as PyJson;
  if (typeof v === "number") return new PyNum(Number.isInteger(v) ? String(v) : pyFloatRepr(v));
  if (Array.isArray(v)) return v.map(toPy);
  if (typeof v === "object") return new Map(Object.entries(v).map(([k, x]) => [k, toPy(x)]));
  throw new TypeError(`Object of type ${typeof v} is not JSON serializable`);
}

/** `json.dumps(v, ensure_ascii=False[, indent])`. */
export function pyDumps(v: PyJson, indent?: number): string {
  const item = indent === undefined ? ", " : ",";
  const go = (x: PyJson, depth: number): string => {
    if (x === null) return "null";
    if (x === true) return "true";
    if (x === false) return "false";
    if (typeof x === "string") return JSON.stringify(x);
    if (x instanceof PyNum) return numText(x);
    const parts = Array.isArray(x)
      ? x.map((e) => go(e, depth + 1))
      : [...x].map(([k, e]) => `${JSON.stringify(k)}: ${go(e, depth + 1)}`);
    const [open, close] = Array.isArray(x) ? ["[", "]"] : ["{", "}"];
    if (parts.length === 0) return open + close;
    if (indent === undefined) return open + parts.join(item) + close;
    const pad = "\n" + " ".repeat(indent * (depth + 1));
    return open + pad + parts.join(item + pad) + "\n" + " ".repeat(indent * depth) + close;
  };
  return go(v, 0);
}

/** Python's `repr` of a value (used where LF formats a JSON value into text with `str.format`). */
export function pyRepr(v: PyJson): string {
  if (typeof v === "string") {
    const q = v.includes("'") && !v.includes('"') ? '"' : "'";
    const esc = v.replace(/[\\\n\r\t]/g, (c) => ({ "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t" })[c]!);
    return q + (q === "'" ? esc.replaceAll("'", "\\'") : esc) + q;
  }
  return pyStr(v);
}

/** Python's `str` of a value. */
export function pyStr(v: PyJson): string {
  if (v === null) return "None";
  if (v === true) return "True";
  if (v === false) return "False";
  if (typeof v === "string") return v;
  if (v instanceof PyNum) {
    if (v.raw === "NaN") return "nan";
    if (/Infinity/.test(v.raw)) return v.raw.startsWith("-") ? "-inf" : "inf";
    return numText(v);
  }
  if (Array.isArray(v)) return "[" + v.map(pyRepr).join(", ") + "]";
  return "{" + [...v].map(([k, x]) => `${pyRepr(k)}: ${pyRepr(x)}`).join(", ") + "}";
}

/** A parsed function call: the name as it came, and the arguments re-serialized with {@link pyDumps}. */
export interface FunctionCall {
  name: PyJson;
  arguments: string;
}

/** One tool format of `tool_utils.py`. */
export interface ToolUtils {
  /** The system text describing the tools. */
  toolFormatter(tools: PyJson[], now: Date): string;
  /** The assistant text of one or more calls. */
  functionFormatter(functions: FunctionCall[]): string;
}

const get = (m: PyJson, key: string): PyJson | undefined => (m instanceof Map ? m.get(key) : undefined);
const wrapFunction = (tool: PyJson): PyJson =>
  get(tool, "type") === "function" ? tool : new Map<string, PyJson>([["type", "function"], ["function", tool]]);
const loads = (s: string): PyJson => pyLoads(s);

const DEFAULT_TOOL_PROMPT = (toolText: string, toolNames: string) =>
  `You have access to the following tools:\n${toolText}Use the following format if using a tool:\n\`\`\`\n` +
  `Action: tool name (one of [${toolNames}])\nAction Input: the input to the tool, in a JSON format representing the ` +
  `kwargs (e.g. \`\`\`{"input": "hello world", "num_beams": 5}\`\`\`)\n\`\`\`\n`;

const QWEN_TOOL_PROMPT = (toolText: string) =>
  "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n" +
  `You are provided with function signatures within <tools></tools> XML tags:\n<tools>${toolText}` +
  "\n</tools>\n\nFor each function call, return a json object with function name and arguments within " +
  '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>';

const LLAMA3_TOOL_PROMPT = (date: string, toolText: string) =>
  `Cutting Knowledge Date: December 2023\nToday Date: ${date}\n\n` +
  "You have access to the following functions. To call a function, please respond with JSON for a function call. " +
  'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}. ' +
  `Do not use variables.\n\n${toolText}`;

const GLM4_TOOL_PROMPT = (toolText: string) =>
  "你是一个名为 ChatGLM 的人工智能助手。你是基于智谱 AI 公司训练的语言模型 GLM-4 模型开发的，" +
  `你的任务是针对用户的问题和要求提供适当的答复和支持。\n\n# 可用工具${toolText}`;

/** `datetime.now().strftime("%d %b %Y")`. */
export function strftimeDate(d: Date): string {
  const months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  return `${String(d.getDate()).padStart(2, "0")} ${months[d.getMonth()]} ${d.getFullYear()}`;
}

function need(v: PyJson | undefined, what: string): PyJson {
  if (v === undefined) throw new Error(`tool schema: expected a "${what}" key (KeyError in LLaMA-Factory)`);
  return v;
}

/** The tool formats, by LF's `tool_format` name. */
export const TOOL_UTILS: Record<string, ToolUtils> = {
  default: {
    toolFormatter(tools) {
      let toolText = "";
      const names: string[] = [];
      for (let tool of tools) {
        tool = get(tool, "type") === "function" ? (get(tool, "function") ?? "") : tool;
        const params = need(get(tool, "parameters"), "parameters");
        const props = need(get(params, "properties"), "properties");
        if (!(props instanceof Map)) throw new Error("tool schema: expected parameters.properties to be an object");
        const required = get(params, "required");
        let paramText = "";
        for (const [name, param] of props) {
          const req = Array.isArray(required) && required.includes(name) ? ", required" : "";
          const en = get(param, "enum");
          let enumText = "";
          if (truthy(en)) {
            if (!Array.isArray(en) || !en.every((e) => typeof e === "string")) {
              throw new Error(`tool schema: enum of "${name}" must be a list of strings (join fails in LLaMA-Factory)`);
            }
            enumText = `, should be one of [${en.join(", ")}]`;
          }
          const items = get(param, "items");
          const itemsText = truthy(items) ? `, where each item should be ${pyStr(get(items!, "type") ?? "")}` : "";
          paramText += `  - ${name} (${pyStr(get(param, "type") ?? "")}${req}): ${
            pyStr(get(param, "description") ?? "")
          }${enumText}${itemsText}\n`;
        }
        const name = pyStr(need(get(tool, "name"), "name"));
        toolText += `> Tool Name: ${name}\nTool Description: ${
          pyStr(get(tool, "description") ?? "")
        }\nTool Args:\n${paramText}\n`;
        names.push(name);
      }
      return DEFAULT_TOOL_PROMPT(toolText, names.join(", "));
    },
    functionFormatter: (fns) => fns.map((f) => `Action: ${pyStr(f.name)}\nAction Input: ${f.arguments}`).join("\n"),
  },
  qwen: {
    toolFormatter: (tools) => QWEN_TOOL_PROMPT(tools.map((t) => "\n" + pyDumps(wrapFunction(t))).join("")),
    functionFormatter: (fns) =>
      fns.map((f) => {
        const text = pyDumps(new Map([["name", f.name], ["arguments", loads(f.arguments)]]));
        return `<tool_call>\n${text}\n</tool_call>`;
      }).join("\n"),
  },
  llama3: {
    toolFormatter: (tools, now) =>
      LLAMA3_TOOL_PROMPT(strftimeDate(now), tools.map((t) => pyDumps(wrapFunction(t), 4) + "\n\n").join("")),
    functionFormatter(fns) {
      const objs: PyJson[] = fns.map((f) => new Map([["name", f.name], ["parameters", loads(f.arguments)]]));
      return pyDumps(objs.length === 1 ? objs[0] : objs);
    },
  },
  mistral: {
    toolFormatter: (tools) => "[AVAILABLE_TOOLS] " + pyDumps(tools.map(wrapFunction)) + "[/AVAILABLE_TOOLS]",
    functionFormatter: (fns) => pyDumps(fns.map((f) => new Map([["name", f.name], ["arguments", loads(f.arguments)]]))),
  },
  glm4: {
    toolFormatter(tools) {
      let toolText = "";
      for (let tool of tools) {
        tool = get(tool, "type") === "function" ? (get(tool, "function") ?? "") : tool;
        toolText += `\n\n## ${pyStr(need(get(tool, "name"), "name"))}\n\n${
          pyDumps(tool, 4)
        }\n在调用上述函数时，请使用 Json 格式表示调用的参数。`;
      }
      return GLM4_TOOL_PROMPT(toolText);
    },
    functionFormatter(fns) {
      if (fns.length > 1) throw new Error("GLM-4 does not support parallel functions.");
      return `${pyStr(fns[0].name)}\n${fns[0].arguments}`;
    },
  },
};

/** Python truthiness of a JSON value. */
export function truthy(v: PyJson | undefined): boolean {
  if (v === undefined || v === null || v === false || v === "") return false;
  if (v instanceof PyNum) return Number(v.raw) !== 0;
  if (Array.isArray(v)) return v.length > 0;
  if (v instanceof Map) return v.size > 0;
  return true;
}

/** The tool utils of a format name; throws on a name LF does not know or Whetstone does not implement. */
export function toolUtils(format: string): ToolUtils {
  const u = TOOL_UTILS[format];
  if (!u) {
    throw new Error(`tool format "${format}" is not supported; expected one of ${Object.keys(TOOL_UTILS).join(", ")}`);
  }
  return u;
}

/** `ToolFormatter.apply`: the tool text of a `tools` JSON string ("" for an empty list). */
export function formatTools(format: string, tools: string, now: Date): string {
  let parsed: PyJson;
  try {
    parsed = pyLoads(tools);
  } catch {
    throw new Error(`Invalid JSON format in tool description: ${pyRepr([tools])}.`);
  }
  if (parsed instanceof Map && parsed.size === 0) return "";
  if (!Array.isArray(parsed)) {
    throw new Error(`tool description: expected a JSON list of tools, got ${tools.slice(0, 80)}`);
  }
  const list = parsed;
  return list.length !== 0 ? toolUtils(format).toolFormatter(list, now) : "";
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/**
 * `FunctionFormatter.apply`'s content step: parses a function-call message (JSON `{name, arguments}` or a list of
 * them, optionally inside `tool_call_words` or after a thought in `thought_words`) and returns the formatted text.
 */
export function formatFunction(
  format: string,
  content: string,
  thoughtWords?: readonly [string, string],
  toolCallWords?: readonly [string, string],
): string {
  const parse = (json: string): FunctionCall[] => {
    let calls: PyJson;
    try {
      calls = pyLoads(json);
    } catch {
      throw new Error(`Invalid JSON format in function message: ${pyRepr([content])}.`);
    }
    const list = Array.isArray(calls) ? calls : [calls];
    return list.map((tc) => {
      const name = get(tc, "name");
      const args = get(tc, "arguments");
      if (name === undefined || args === undefined) {
        throw new Error(`function message: expected {"name", "arguments"}, got ${pyDumps(tc)}`);
      }
      return { name, arguments: pyDumps(args) };
    });
  };
  const utils = toolUtils(format);
  const callMatch = toolCallWords
    ? new RegExp(`${escapeRe(toolCallWords[0])}([\\s\\S]*?)${escapeRe(toolCallWords[1])}`).exec(content)
    : null;
  if (callMatch === null) {
    const thought = thoughtWords
      ? new RegExp(`${escapeRe(thoughtWords[0])}([\\s\\S]*?)${escapeRe(thoughtWords[1])}`).exec(content)
      : null;
    const jsonPart = thought ? content.replaceAll(thought[0], "") : content;
    const text = utils.functionFormatter(parse(jsonPart));
    return thought ? thought[0] + text : text;
  }
  const thoughtContent = content.replaceAll(callMatch[0], "");
  return thoughtContent + utils.functionFormatter(parse(callMatch[1]));
}
