/**
 * A fast, type-check-free scanner of the imports of the project's TypeScript files, for the layering test.
 *
 * It finds every module edge that couples two files: static `import ... from "x"` (type-only included),
 * side-effect `import "x"`, `export ... from "x"`, dynamic `import("x")` and type-position `import("x").T`.
 * Comments are skipped; string and template literals are skipped except the specifier of an import form, so
 * code that merely mentions `import "x"` inside a string (a generated file, an error message) is not an edge.
 * @module
 */

/** One import edge found in a file. */
export interface ImportEdge {
  /** The specifier as written, e.g. `"../exec/executor.ts"` or `"npm:onnxruntime-node"`. */
  specifier: string;
  /** 1-based line of the specifier. */
  line: number;
  /** `static` (import/export from, side-effect import) or `dynamic` (`import("x")`, also in type position). */
  kind: "static" | "dynamic";
  /** True for `import type` / `export type` statements (they still couple the files, see layers.ts). */
  typeOnly: boolean;
}

/** A token of the tiny lexer: a word, a punctuation char, or a string literal's value. */
interface Token {
  kind: "word" | "punct" | "string";
  text: string;
  line: number;
}

/**
 * Splits TypeScript source into words, punctuation and plain string literals, dropping comments,
 * template literals (their `${...}` parts are lexed as code) and regex literals well enough for import scanning.
 */
function lex(source: string): Token[] {
  const tokens: Token[] = [];
  let line = 1;
  let i = 0;
  // Template nesting: each entry is the brace depth at which a `${` opened; a `}` at that depth resumes the template.
  const templateStack: number[] = [];
  let braceDepth = 0;
  const n = source.length;
  const skipTemplate = (): void => {
    // i is just after a backquote or a `}` closing a substitution: scan to the closing backquote or the next `${`.
    while (i < n) {
      const c = source[i];
      if (c === "\\") {
        i += 2;
        continue;
      }
      if (c === "\n") line++;
      if (c === "`") {
        i++;
        return;
      }
      if (c === "$" && source[i + 1] === "{") {
        i += 2;
        templateStack.push(braceDepth);
        braceDepth++;
        return;
      }
      i++;
    }
  };
  while (i < n) {
    const c = source[i];
    if (c === "\n") {
      line++;
      i++;
    } else if (c === " " || c === "\t" || c === "\r") {
      i++;
    } else if (c === "/" && source[i + 1] === "/") {
      while (i < n && source[i] !== "\n") i++;
    } else if (c === "/" && source[i + 1] === "*") {
      const end = source.indexOf("*/", i + 2);
      const stop = end < 0 ? n : end + 2;
      for (let k = i; k < stop; k++) if (source[k] === "\n") line++;
      i = stop;
    } else if (c === '"' || c === "'") {
      const start = line;
      let value = "";
      i++;
      while (i < n && source[i] !== c && source[i] !== "\n") {
        if (source[i] === "\\") {
          value += source[i + 1] ?? "";
          i += 2;
        } else value += source[i++];
      }
      i++;
      tokens.push({ kind: "string", text: value, line: start });
    } else if (c === "`") {
      i++;
      skipTemplate();
      tokens.push({ kind: "punct", text: "`", line });
    } else if (c === "{") {
      braceDepth++;
      i++;
      tokens.push({ kind: "punct", text: c, line });
    } else if (c === "}") {
      braceDepth--;
      i++;
      if (templateStack.length > 0 && templateStack[templateStack.length - 1] === braceDepth) {
        templateStack.pop();
        skipTemplate();
      } else tokens.push({ kind: "punct", text: c, line });
    } else if (c === "/" && regexAllowed(tokens[tokens.length - 1])) {
      // A regex literal: skip it (character classes may hold a slash).
      i++;
      let inClass = false;
      while (i < n && source[i] !== "\n") {
        const r = source[i];
        if (r === "\\") i++;
        else if (r === "[") inClass = true;
        else if (r === "]") inClass = false;
        else if (r === "/" && !inClass) break;
        i++;
      }
      i++;
      while (i < n && /[a-z]/i.test(source[i])) i++;
      tokens.push({ kind: "punct", text: "regex", line });
    } else if (/[A-Za-z_$]/.test(c)) {
      let j = i + 1;
      while (j < n && /[\w$]/.test(source[j])) j++;
      tokens.push({ kind: "word", text: source.slice(i, j), line });
      i = j;
    } else {
      tokens.push({ kind: "punct", text: c, line });
      i++;
    }
  }
  return tokens;
}

/** After these tokens a `/` starts a regex literal rather than a division. */
function regexAllowed(prev: Token | undefined): boolean {
  if (!prev) return true;
  if (prev.kind === "string") return false;
  if (prev.kind === "word") {
    return ["return", "typeof", "case", "do", "else", "in", "of", "new", "throw"].includes(prev.text);
  }
  return !(prev.text === ")" || prev.text === "]" || prev.text === "}" || prev.text === "regex");
}

/** Finds every import edge of one TypeScript source text. */
export function scanImports(source: string): ImportEdge[] {
  const tokens = lex(source);
  const edges: ImportEdge[] = [];
  for (let t = 0; t < tokens.length; t++) {
    const tok = tokens[t];
    if (tok.kind !== "word" || (tok.text !== "import" && tok.text !== "export")) continue;
    const prev = tokens[t - 1];
    if (prev && prev.kind === "punct" && prev.text === ".") continue; // `x.import(...)` is no import
    const next = tokens[t + 1];
    if (!next) break;
    if (tok.text === "import" && next.kind === "punct" && next.text === "(") {
      const arg = tokens[t + 2];
      if (arg?.kind === "string") {
        edges.push({ specifier: arg.text, line: arg.line, kind: "dynamic", typeOnly: false });
      }
      continue;
    }
    if (tok.text === "import" && next.kind === "string") {
      edges.push({ specifier: next.text, line: next.line, kind: "static", typeOnly: false });
      continue;
    }
    // A statement `import|export [type] ... from "x"`: scan to `from <string>` or to the statement's end.
    const typeOnly = next.kind === "word" && next.text === "type";
    let depth = 0;
    for (let k = t + 1; k < tokens.length; k++) {
      const s = tokens[k];
      if (s.kind === "punct" && s.text === "{") depth++;
      else if (s.kind === "punct" && s.text === "}") depth--;
      else if (depth === 0 && s.kind === "punct" && (s.text === ";" || s.text === "=" || s.text === "(")) break;
      else if (depth === 0 && s.kind === "word" && s.text === "from" && tokens[k + 1]?.kind === "string") {
        const spec = tokens[k + 1];
        edges.push({ specifier: spec.text, line: spec.line, kind: "static", typeOnly });
        break;
      } else if (depth === 0 && s.kind === "word" && k > t + 1 && isDeclarationStart(s.text, tokens[k - 1])) {
        break;
      }
      if (depth < 0) break;
    }
  }
  return edges;
}

/** Words that start a declaration: `export function f` etc. end an export statement with no `from`. */
function isDeclarationStart(word: string, prev: Token): boolean {
  if (prev.kind === "word" && (prev.text === "export" || prev.text === "default" || prev.text === "async")) {
    return ["function", "class", "const", "let", "var", "interface", "enum", "abstract", "declare", "namespace"]
      .includes(word);
  }
  return false;
}
