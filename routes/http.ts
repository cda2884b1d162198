/**
 * HTTP plumbing shared by the routers: errors with a status (and the request field they concern) and reading a
 * JSON body under the size limit (validated then with the route's schema: routes/validate.ts).
 * @module
 */
import type { Context } from "../deps.ts";
import { BatcherFullError, ConfigError, DataError, SessionBusyError, SessionFinishedError } from "../engine/mod.ts";

/** Seconds a 503 (the chat batch and its queue full) asks the client to wait before trying again. */
export const RETRY_AFTER_S = 1;

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
  if (e instanceof BatcherFullError) return { status: 503, body: { error: e.message } };
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
