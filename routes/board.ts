/**
 * The Whetstone Board (LlamaBoard in the browser): `GET /` answers the page, `GET /board/*` its modules, styles
 * and translations (the `board/` folder), `GET /board/vendor/*` the browser builds of its npm packages (preact,
 * htm, uPlot, yaml; installed into node_modules by `npm ci`) and `GET /board/keys.json` the training keys with
 * LLaMA-Factory's defaults (from the key table, so that the page's YAML holds exactly the keys whose value differs
 * from what `deno task train` would take when absent).
 *
 * It is middleware rather than routes of the API table: the page is not part of the API (not in /openapi.json),
 * and it answers without the API key — the page asks for the key and sends it on its API calls.
 * @module
 */
import { extname, normalize } from "node:path";
import type { Context } from "../deps.ts";
import { KEYS, type KeySpec } from "../engine/mod.ts";

const BOARD = new URL("../board/", import.meta.url);
const NODE_MODULES = new URL("../node_modules/", import.meta.url);

/** The vendored browser files: the name served under /board/vendor/ → the file in node_modules. */
export const VENDOR_FILES: Readonly<Record<string, string>> = {
  "preact.js": "preact/dist/preact.mjs",
  "preact-hooks.js": "preact/hooks/dist/hooks.mjs",
  "htm.js": "htm/dist/htm.mjs",
  "htm-preact.js": "htm/preact/index.mjs",
  "uplot.js": "uplot/dist/uPlot.esm.js",
  "uplot.css": "uplot/dist/uPlot.min.css",
};

/** Vendored folders (packages whose browser build is many modules): the prefix → the folder in node_modules. */
const VENDOR_DIRS: Readonly<Record<string, string>> = { "yaml/": "yaml/browser/dist/" };

/** Content types by extension (nothing else under board/ is served: no tests, no TypeScript). */
export const CONTENT_TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".svg": "image/svg+xml",
};

/** Whether `path` is one the board answers (these need no API key). */
export function isBoardPath(path: string): boolean {
  return path === "/" || path === "/index.html" || path.startsWith("/board/");
}

/** A relative path with no way out of its folder, or undefined. */
function confined(rel: string): string | undefined {
  if (rel === "" || rel.includes("\0") || rel.includes("\\")) return undefined;
  const n = normalize(rel);
  if (n.startsWith("..") || n.startsWith("/") || n.split("/").some((p) => p.startsWith("."))) return undefined;
  return n;
}

/** The file a board path maps to, or undefined. */
export function boardFile(path: string): URL | undefined {
  if (path === "/" || path === "/index.html") return new URL("index.html", BOARD);
  const rel = confined(decodeURIComponent(path.slice("/board/".length)));
  if (!rel || !CONTENT_TYPES[extname(rel)]) return undefined;
  if (rel.startsWith("vendor/")) {
    const name = rel.slice("vendor/".length);
    if (VENDOR_FILES[name]) return new URL(VENDOR_FILES[name], NODE_MODULES);
    for (const [prefix, dir] of Object.entries(VENDOR_DIRS)) {
      if (name.startsWith(prefix)) return new URL(dir + name.slice(prefix.length), NODE_MODULES);
    }
    return undefined;
  }
  if (rel.startsWith("testing/")) return undefined;
  return new URL(rel, BOARD);
}

/** The training keys the page's form knows: LF's default, the kind of value, the choices of an enum key. */
export function boardKeys(): Record<string, { def: unknown; kind: string; choices?: readonly string[] }> {
  const out: Record<string, { def: unknown; kind: string; choices?: readonly string[] }> = {};
  for (const [name, spec] of Object.entries(KEYS as Record<string, KeySpec>)) {
    if (spec.use !== "train") continue;
    const kind = spec.kind;
    out[name] = Array.isArray(kind) // enum choices, less the values Whetstone lacks yet
      ? { def: spec.def ?? null, kind: "enum", choices: kind.filter((v) => !spec.lacking?.includes(v)) }
      : { def: spec.def ?? null, kind: String(kind) };
  }
  return out;
}

let keysJson: string | undefined;

/** Middleware answering the board's GETs; every other request goes on. */
export async function boardAssets(c: Context, next: () => Promise<void>): Promise<Response | void> {
  const path = c.req.path;
  if ((c.req.method !== "GET" && c.req.method !== "HEAD") || !isBoardPath(path)) return await next();
  const headers = { "cache-control": "no-cache", "x-content-type-options": "nosniff" };
  if (path === "/board/keys.json") {
    keysJson ??= JSON.stringify(boardKeys());
    return c.body(keysJson, 200, { ...headers, "content-type": CONTENT_TYPES[".json"] });
  }
  const file = boardFile(path);
  if (!file) return c.json({ error: `no board file ${path}` }, 404);
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(file);
  } catch {
    return c.json({ error: `no board file ${path}` }, 404);
  }
  // By the name served (vendored files may be .mjs on disk).
  const type = CONTENT_TYPES[path === "/" ? ".html" : extname(path)] ?? "application/octet-stream";
  return c.body(bytes as Uint8Array<ArrayBuffer>, 200, { ...headers, "content-type": type });
}
