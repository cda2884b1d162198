/**
 * The piece of Python that LLaMA-Factory's `lfm` tool extractor runs on a model's answer (`LFMToolUtils.tool_extractor`,
 * `data/tool_utils.py`): `ast.parse(text, mode="eval")` of `[f(k=v, ...), ...]` or `f(k=v)`, each keyword value read
 * with `ast.literal_eval`, where a bare `true` / `false` / `null` (only as the whole value) means the JSON constant.
 *
 * Covered: str literals in single or double quotes (with Python's escapes), decimal int and float literals with a
 * sign, True/False/None, lists, tuples (as lists, as `json.dumps` writes them) and dicts with str or int keys.
 * Anything else — what LF would reject (a name, a call) and the rarer literals it would accept (bytes, sets, complex,
 * hex ints, f-strings, implicit string concatenation) — makes {@link pyLiteralCalls} answer `undefined`, so the
 * answer stays text.
 * @module
 */
import { pyFloatRepr, type PyJson, PyNum } from "./template_tools.ts";

/** A call `name(k=v, ...)`: its name and keyword arguments, in order (positional arguments are dropped, as in LF). */
export interface PyCall {
  name: string;
  kwargs: Map<string, PyJson>;
}

class Bad extends Error {}

/** Parses `[call, ...]` or `call`; `undefined` when the text is not that (LF returns the answer unchanged). */
export function pyLiteralCalls(text: string): PyCall[] | undefined {
  let i = 0;
  const fail = (): never => {
    throw new Bad();
  };
  const ws = () => {
    while (i < text.length && " \t\n\r\\".includes(text[i])) {
      if (text[i] === "\\") {
        if (text[i + 1] !== "\n") fail(); // a line continuation only
        i++;
      }
      i++;
    }
  };
  const ident = (): string | undefined => {
    const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i, i + 200));
    if (!m) return undefined;
    i += m[0].length;
    return m[0];
  };
  const string = (): string => {
    const q = text[i];
    if (text.startsWith(q.repeat(3), i)) fail(); // triple-quoted: not covered
    i++;
    let out = "";
    for (;;) {
      if (i >= text.length || text[i] === "\n") fail();
      const c = text[i];
      if (c === q) {
        i++;
        return out;
      }
      if (c !== "\\") {
        out += c;
        i++;
        continue;
      }
      const e = text[i + 1];
      const simple: Record<string, string> = {
        "\\": "\\",
        "'": "'",
        '"': '"',
        n: "\n",
        t: "\t",
        r: "\r",
        b: "\b",
        f: "\f",
        v: "\v",
        a: "\x07",
        "\n": "",
      };
      if (e in simple) {
        out += simple[e];
        i += 2;
        continue;
      }
      const hex = { x: 2, u: 4, U: 8 }[e as "x" | "u" | "U"];
      if (hex) {
        const h = text.slice(i + 2, i + 2 + hex);
        if (!new RegExp(`^[0-9a-fA-F]{${hex}}$`).test(h)) fail();
        out += String.fromCodePoint(parseInt(h, 16));
        i += 2 + hex;
        continue;
      }
      const oct = /^[0-7]{1,3}/.exec(text.slice(i + 1, i + 4));
      if (oct) {
        out += String.fromCodePoint(parseInt(oct[0], 8));
        i += 1 + oct[0].length;
        continue;
      }
      out += "\\"; // an unknown escape keeps its backslash
      i++;
    }
  };
  const number = (sign: string): PyNum => {
    const m = /^(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?(?![A-Za-z0-9_.])/.exec(text.slice(i, i + 400));
    if (!m) return fail();
    i += m[0].length;
    if (!/[.eE]/.test(m[0])) {
      if (/^0\d/.test(m[0])) fail(); // leading zeros are a SyntaxError
      return new PyNum(sign === "-" && !/^0+$/.test(m[0]) ? "-" + m[0] : m[0]);
    }
    return new PyNum(pyFloatRepr(Number(sign + m[0])));
  };
  const seq = (close: string, item: () => void) => {
    for (;;) {
      ws();
      if (text[i] === close) {
        i++;
        return;
      }
      item();
      ws();
      if (text[i] === ",") i++;
      else if (text[i] !== close) fail();
    }
  };
  // ast.literal_eval of one node
  const literal = (): PyJson => {
    ws();
    const c = text[i];
    if (c === "'" || c === '"') return string();
    if (c === "-" || c === "+") {
      i++;
      ws();
      return number(c);
    }
    if (/[0-9.]/.test(c ?? "")) return number("");
    if (c === "[" || c === "(") {
      i++;
      const arr: PyJson[] = [];
      seq(c === "[" ? "]" : ")", () => arr.push(literal()));
      return arr;
    }
    if (c === "{") {
      i++;
      const obj = new Map<string, PyJson>();
      seq("}", () => {
        const k = literal();
        if (!(typeof k === "string" || (k instanceof PyNum && k.isInt))) fail();
        ws();
        if (text[i] !== ":") fail();
        i++;
        obj.set(typeof k === "string" ? k : (k as PyNum).raw, literal());
      });
      return obj;
    }
    const word = ident();
    if (word === "True") return true;
    if (word === "False") return false;
    if (word === "None") return null;
    return fail();
  };
  // LFMToolUtils._ast_to_value: true/false/null as a whole value, else literal_eval
  const value = (): PyJson => {
    ws();
    const save = i;
    const word = ident();
    if (word === "true" || word === "false" || word === "null") {
      ws();
      if (text[i] === "," || text[i] === ")") return word === "true" ? true : word === "false" ? false : null;
    }
    i = save;
    return literal();
  };
  const call = (): PyCall => {
    ws();
    const name = ident();
    if (name === undefined) return fail();
    ws();
    if (text[i] !== "(") return fail();
    i++;
    const kwargs = new Map<string, PyJson>();
    seq(")", () => {
      ws();
      const save = i;
      const key = ident();
      ws();
      if (key !== undefined && text[i] === "=" && text[i + 1] !== "=") {
        // a repeated keyword parses (ast.parse does not check it); the last value wins, as in LF's dict
        i++;
        kwargs.set(key, value());
        return;
      }
      i = save; // a positional argument: LF ignores it; here it must be a literal or a bare name
      if (ident() === undefined) literal();
    });
    return { name, kwargs };
  };
  try {
    ws();
    let calls: PyCall[];
    if (text[i] === "[") {
      i++;
      calls = [];
      seq("]", () => calls.push(call()));
    } else calls = [call()];
    ws();
    if (i !== text.length) return undefined;
    return calls;
  } catch (e) {
    if (e instanceof Bad) return undefined;
    throw e;
  }
}
