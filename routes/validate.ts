/**
 * Request validation with the routes' zod schemas (routes/api.ts): a body or query that does not fit is a 400
 * naming the field (`messages[0].role`, `steps`) with what was expected and what came, in the words of the
 * hand-written checks this replaces ("expected an integer, got 1.5", "required", "unknown field; expected one of
 * steps"). A schema's own message (`z.array(...).min(1, { error: "..." })`) wins over these.
 * @module
 */
import type { Context, z } from "../deps.ts";
import { badRequest, readJson } from "./http.ts";

/** A value as an error message shows it. */
export const show = (v: unknown): string => (v === undefined ? "nothing" : JSON.stringify(v) ?? String(v));

const NOUNS: Record<string, string> = {
  int: "an integer",
  number: "a number",
  string: "a string",
  boolean: "true or false",
  array: "a list",
  object: "an object",
};

/** The field an issue concerns: `messages[0].content`, `steps`; "" for the body itself. */
export function fieldOf(path: readonly PropertyKey[]): string {
  let out = "";
  for (const k of path) out += typeof k === "number" ? `[${k}]` : `${out ? "." : ""}${String(k)}`;
  return out;
}

// deno-lint-ignore no-explicit-any -- zod's raw issue is a union whose fields vary by code
type RawIssue = Record<string, any> & { code: string; input?: unknown };

/** The message of a raw zod issue, in the API's words (zod's own message for codes not listed). */
function message(iss: RawIssue): string | undefined {
  const got = show(iss.input);
  switch (iss.code) {
    case "invalid_type":
      if (iss.input === undefined) return "required";
      {
        // z.int() reports a non-number as expecting "number": say integer, as it does for 1.5.
        const int = iss.expected === "number" && /int/.test(String(iss.inst?._zod?.def?.format ?? ""));
        return `expected ${NOUNS[int ? "int" : iss.expected] ?? iss.expected}, got ${got}`;
      }
    case "too_small":
    case "too_big": {
      const op = iss.code === "too_small" ? (iss.inclusive ? ">=" : ">") : (iss.inclusive ? "<=" : "<");
      const bound = iss.code === "too_small" ? iss.minimum : iss.maximum;
      if (iss.origin === "array") {
        const n = Array.isArray(iss.input) ? iss.input.length : got;
        return `expected ${iss.code === "too_small" ? "at least" : "at most"} ${bound} items, got ${n}`;
      }
      return `expected ${iss.origin === "string" ? "a length" : "a number"} ${op} ${bound}, got ${got}`;
    }
    case "invalid_value":
      return `expected one of ${iss.values.join(", ")}, got ${got}`;
    case "unrecognized_keys": {
      const known = Object.keys(iss.inst?._zod?.def?.shape ?? {});
      return `unknown field; expected one of ${known.join(", ")}`;
    }
    default:
      return undefined;
  }
}

/** `value` parsed by `schema`; the first problem is thrown as a 400 naming its field (`where` when it is the whole). */
export function parseWith<S extends z.ZodType>(schema: S, value: unknown, where = "body"): z.output<S> {
  const r = schema.safeParse(value, { error: (iss) => message(iss as RawIssue), reportInput: true });
  if (r.success) return r.data;
  const iss = r.error.issues[0];
  const path = iss.code === "unrecognized_keys" ? [...iss.path, iss.keys[0]] : iss.path;
  throw badRequest(fieldOf(path) || where, iss.message);
}

/** The request's JSON body (under the size limit) parsed by `schema`; `optional`: an empty body reads as `{}`. */
export async function readBody<S extends z.ZodType>(
  c: Context,
  limit: number,
  schema: S,
  optional = false,
): Promise<z.output<S>> {
  return parseWith(schema, await readJson(c, limit, optional));
}

/** The request's query parameters parsed by `schema`. */
export function readQuery<S extends z.ZodType>(c: Context, schema: S): z.output<S> {
  return parseWith(schema, c.req.query(), "query");
}
