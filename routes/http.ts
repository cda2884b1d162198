/**
 * HTTP plumbing shared by the routers: errors with a status (and the request field they concern), reading a JSON
 * body under the size limit, and hand-written validators whose messages name the field, what was expected and what
 * came.
 * @module
 */
import type { Context } from "../deps.ts";
import { ConfigError, DataError, SessionBusyError, SessionFinishedError } from "../engine/mod.ts";

/** An error answered with `status` and `{error, field?}`. */
export class HttpError extends Error {
  constructor(readonly status: 400 | 401 | 403 | 404 | 409 | 413 | 500, message: string, readonly field?: string) {
    super(message);
    this.name = "HttpError";
  }
}

/** A 400 naming the field. */
export const badRequest = (field: string, message: string): HttpError =>
  new HttpError(400, `${field}: ${message}`, field);

/** The status and JSON body of any error a handler throws. */
export function errorBody(
  e: unknown,
): { status: number; body: { error: string; field?: string; problems?: string[] } } {
  if (e instanceof HttpError) return { status: e.status, body: { error: e.message, field: e.field } };
  if (e instanceof ConfigError) {
    const p = e.problems[0] ?? "";
    const field = /^unknown key "([\w.]+)"/.exec(p)?.[1] ?? /^([\w.]+):/.exec(p)?.[1];
    return { status: 400, body: { error: e.message, field, problems: e.problems } };
  }
  if (e instanceof DataError) return { status: 400, body: { error: e.message } };
  if (e instanceof SessionBusyError || e instanceof SessionFinishedError) {
    return { status: 409, body: { error: e.message } };
  }
  return { status: 500, body: { error: (e as Error)?.message ?? String(e) } };
}

/**
 * Reads the request body as JSON (an object), refusing more than `limit` bytes with a 413. With `optional`, an
 * empty body reads as `{}`.
 */
export async function readJson(c: Context, limit: number, optional = false): Promise<Record<string, unknown>> {
  const body = c.req.raw.body;
  if (!body) {
    if (optional) return {};
    throw new HttpError(400, "expected a JSON object in the request body, got no body");
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > limit) throw new HttpError(413, `request body over the limit of ${limit} bytes`);
    chunks.push(chunk);
  }
  const bytes = new Uint8Array(size);
  let at = 0;
  for (const ch of chunks) bytes.set(ch, (at += ch.length) - ch.length);
  if (optional && bytes.every((b) => b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09)) return {};
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new HttpError(400, `the request body is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new HttpError(
      400,
      `expected a JSON object in the request body, got ${Array.isArray(value) ? "a list" : typeof value}`,
    );
  }
  return value as Record<string, unknown>;
}

const show = (v: unknown) => (v === undefined ? "nothing" : JSON.stringify(v) ?? String(v));

/** Field readers over a request body: each returns undefined when the field is absent (or null). */
export class Fields {
  constructor(readonly body: Record<string, unknown>, readonly prefix = "") {}

  #name(key: string) {
    return this.prefix + key;
  }

  #get(key: string): unknown {
    const v = this.body[key];
    return v === null ? undefined : v;
  }

  /** A required field. */
  need<T>(key: string, read: (key: string) => T | undefined): T {
    const v = read.call(this, key);
    if (v === undefined) throw badRequest(this.#name(key), "required");
    return v;
  }

  str(key: string): string | undefined {
    const v = this.#get(key);
    if (v === undefined) return undefined;
    if (typeof v !== "string") throw badRequest(this.#name(key), `expected a string, got ${show(v)}`);
    return v;
  }

  bool(key: string): boolean | undefined {
    const v = this.#get(key);
    if (v === undefined) return undefined;
    if (typeof v !== "boolean") throw badRequest(this.#name(key), `expected true or false, got ${show(v)}`);
    return v;
  }

  /** A finite number in [min, max] (exclusive bounds with `gt`). */
  num(key: string, o: { min?: number; max?: number; gt?: number } = {}): number | undefined {
    const v = this.#get(key);
    if (v === undefined) return undefined;
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw badRequest(this.#name(key), `expected a number, got ${show(v)}`);
    }
    if (o.gt !== undefined && !(v > o.gt)) throw badRequest(this.#name(key), `expected a number > ${o.gt}, got ${v}`);
    if (o.min !== undefined && v < o.min) throw badRequest(this.#name(key), `expected a number >= ${o.min}, got ${v}`);
    if (o.max !== undefined && v > o.max) throw badRequest(this.#name(key), `expected a number <= ${o.max}, got ${v}`);
    return v;
  }

  /** An integer in [min, max]. */
  int(key: string, o: { min?: number; max?: number } = {}): number | undefined {
    const v = this.#get(key);
    if (v === undefined) return undefined;
    if (typeof v !== "number" || !Number.isInteger(v)) {
      throw badRequest(this.#name(key), `expected an integer, got ${show(v)}`);
    }
    return this.num(key, o);
  }

  /** A string, or a list of strings (`max` at most). */
  strings(key: string, max = Infinity): string[] | undefined {
    const v = this.#get(key);
    if (v === undefined) return undefined;
    const list = typeof v === "string" ? [v] : v;
    if (!Array.isArray(list) || !list.every((s) => typeof s === "string")) {
      throw badRequest(this.#name(key), `expected a string or a list of strings, got ${show(v)}`);
    }
    if (list.length > max) throw badRequest(this.#name(key), `expected at most ${max} strings, got ${list.length}`);
    return list;
  }

  /** A list (items unchecked). */
  list(key: string): unknown[] | undefined {
    const v = this.#get(key);
    if (v === undefined) return undefined;
    if (!Array.isArray(v)) throw badRequest(this.#name(key), `expected a list, got ${show(v)}`);
    return v;
  }

  /** One of `choices`. */
  oneOf<T extends string>(key: string, choices: readonly T[]): T | undefined {
    const v = this.str(key);
    if (v === undefined) return undefined;
    if (!choices.includes(v as T)) {
      throw badRequest(this.#name(key), `expected one of ${choices.join(", ")}, got ${JSON.stringify(v)}`);
    }
    return v as T;
  }

  /** Refuses keys outside `known` (a typo would otherwise be ignored silently). */
  only(known: readonly string[]): this {
    for (const k of Object.keys(this.body)) {
      if (!known.includes(k)) throw badRequest(this.#name(k), `unknown field; expected one of ${known.join(", ")}`);
    }
    return this;
  }
}
