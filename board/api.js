/**
 * The API client: `fetch` on the same origin with `Authorization: Bearer <key>` when a key is kept. The key is
 * asked once (a dialog) when the server answers 401, kept in localStorage, and asked again on the next 401.
 * Errors are thrown as {@link ApiError} with the server's message and the field at fault.
 * @module
 */
import { askKey } from "./key_dialog.js";

const KEY = "whetstone.apiKey";

/** An error answer of the API. */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} message
   * @param {string | undefined} field
   */
  constructor(status, message, field) {
    super(field && !message.includes(field) ? `${field}: ${message}` : message);
    this.status = status;
    this.field = field;
  }
}

/**
 * A fetch with the key; asks for the key on a 401 and tries again.
 * @param {string} path
 * @param {RequestInit} [init]
 * @returns {Promise<Response>}
 */
export async function call(path, init = {}) {
  for (let attempt = 0;; attempt++) {
    const headers = new Headers(init.headers);
    const key = localStorage.getItem(KEY);
    if (key) headers.set("authorization", `Bearer ${key}`);
    const res = await fetch(path, { ...init, headers });
    if (res.status !== 401 || attempt >= 3) return res;
    // A request sent before the key was entered (or changed) tries the kept key before asking again.
    if (localStorage.getItem(KEY) && localStorage.getItem(KEY) !== key) continue;
    const fresh = await askKey(Boolean(key));
    if (fresh === null) return res;
    localStorage.setItem(KEY, fresh);
  }
}

/**
 * The error a failed response carries.
 * @param {Response} res
 * @returns {Promise<ApiError>}
 */
export async function errorOf(res) {
  const text = await res.text();
  try {
    const body = JSON.parse(text);
    const err = body.error;
    if (typeof err === "string") return new ApiError(res.status, err, body.field);
    if (err && typeof err.message === "string") return new ApiError(res.status, err.message, err.param ?? undefined);
  } catch { /* not JSON */ }
  return new ApiError(res.status, `${res.status} ${res.statusText}: ${text.slice(0, 300)}`, undefined);
}

/**
 * A JSON call: the answer's body, or an {@link ApiError}.
 * @param {string} method
 * @param {string} path
 * @param {unknown} [body]
 * @param {AbortSignal} [signal]
 * @returns {Promise<any>}
 */
export async function json(method, path, body, signal) {
  /** @type {RequestInit} */
  const init = { method, signal };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { "content-type": "application/json" };
  }
  const res = await call(path, init);
  if (!res.ok) throw await errorOf(res);
  return res.status === 204 ? null : await res.json();
}

/** GET, as {@link json}. @param {string} path */
export const get = (path) => json("GET", path);
/** POST, as {@link json}. @param {string} path @param {unknown} [body] @param {AbortSignal} [signal] */
export const post = (path, body = {}, signal) => json("POST", path, body, signal);
/** DELETE, as {@link json}. @param {string} path */
export const del = (path) => json("DELETE", path);
