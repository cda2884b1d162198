/**
 * What the notebooks share: {@linkcode connect} reaches a Whetstone server (`WHETSTONE_URL`) or starts the Hono app
 * in-process on a free loopback port, and then every call is plain HTTP with `fetch` — the same requests as the
 * README's curl session. {@linkcode table}, {@linkcode tokens}, {@linkcode lossPlot} and {@linkcode sideBySide} make
 * displayable objects (Jupyter's `Symbol.for("Jupyter.display")` protocol, so a cell's last value renders as HTML or
 * SVG), and {@linkcode Live} is one output area that is redrawn in place (a display id, updated). Outside a Jupyter
 * kernel the displays print their plain-text form.
 *
 * The client is typed from the server's route table (routes/api.ts): `ws.post(\`/sessions/${id}/step\`, { steps: 4 })`
 * resolves to the step route's answer type (`steps: StepRecord[]`, `state`, ...) and takes its body type; a path
 * that is no route does not type-check.
 *
 * @example
 * ```ts
 * import { connect, table } from "./whetstone.ts";
 * const ws = await connect();
 * const { datasets } = await ws.get("/datasets?dataset_dir=fixtures/demo");
 * table(datasets, { columns: ["name", "formatting", "source"] });
 * ```
 * @module
 */
import { fileURLToPath } from "node:url";
import { lossSvg } from "../engine/mod.ts";
import type { AnswerOf, BodyOf, Method, PathOf } from "../routes/api_types.ts";

export type { AnswerOf, BodyOf, PathOf };

/** A step record as `POST /sessions/:id/step` answers it (the stage's metrics included; null: not finite). */
export type Step = AnswerOf<"post", `/sessions/${string}/step`>["steps"][number];

/** An evaluation as `POST /sessions/:id/evaluate` answers it. */
export type Evaluation = AnswerOf<"post", `/sessions/${string}/evaluate`>;

/** The key Jupyter kernels (Deno's included) look up to render an object. */
export const DISPLAY: unique symbol = Symbol.for("Jupyter.display");

/** A media bundle: mime type to data. */
export type Bundle = Record<string, string>;

/** An object a Jupyter cell renders by its bundle. */
export interface Displayable {
  [DISPLAY](): Bundle;
}

/** A server reached over HTTP. */
export interface Client {
  /** Its base URL (`http://127.0.0.1:PORT` when started here). */
  url: string;
  /** True when this process started it (then {@linkcode Client.close} stops it). */
  inProcess: boolean;
  /** A JSON request; resolves to the parsed body, throws with the server's error on a non-2xx status. */
  call<M extends Method, P extends PathOf<M>>(method: M, path: P, body?: BodyOf<M, P>): Promise<AnswerOf<M, P>>;
  get<P extends PathOf<"get">>(path: P): Promise<AnswerOf<"get", P>>;
  post<P extends PathOf<"post">>(path: P, body?: BodyOf<"post", P>): Promise<AnswerOf<"post", P>>;
  delete<P extends PathOf<"delete">>(path: P): Promise<AnswerOf<"delete", P>>;
  /** Deletes the server's sessions that write to `outputDir` (left by an earlier run); returns their ids. */
  forget(outputDir: string): Promise<string[]>;
  /** Stops the in-process server (a no-op for a remote one). */
  close(): Promise<void>;
}

/** Options of {@linkcode connect}. */
export interface ConnectOptions {
  /** A running server (default: `WHETSTONE_URL`; none: start one in this process). */
  url?: string;
  /** Bearer key (default: `WHETSTONE_API_KEY`). */
  apiKey?: string;
  /** Session log lines of an in-process server (default: dropped; the notebooks show the step records). */
  log?: (line: string) => void;
}

/** The repository root (the in-process server's root: request paths are relative to it). */
export const ROOT: string = fileURLToPath(new URL("../", import.meta.url)).replace(/\/$/, "");

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined; // no --allow-env
  }
}

/**
 * Reaches the server at `opts.url` / `WHETSTONE_URL`, or starts the app in this process (`Deno.serve` on port 0,
 * roots: the repository, session records in a temp folder).
 */
export async function connect(opts: ConnectOptions = {}): Promise<Client> {
  const remote = opts.url ?? env("WHETSTONE_URL");
  const key = opts.apiKey ?? env("WHETSTONE_API_KEY");
  let url: string;
  let stop = async () => {};
  if (remote) {
    url = remote.replace(/\/+$/, "");
  } else {
    const { createServer } = await import("../routes/app.ts");
    const state = await Deno.makeTempDir({ prefix: "whetstone-notebook-" });
    const server = await createServer({ roots: [ROOT], stateDir: state, apiKey: key, log: opts.log ?? (() => {}) });
    const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, server.fetch);
    url = `http://127.0.0.1:${http.addr.port}`;
    stop = async () => {
      await http.shutdown();
      await server.close();
      await Deno.remove(state, { recursive: true }).catch(() => {});
    };
  }
  const request = async (method: string, path: string, body?: unknown): Promise<unknown> => {
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (key) headers.authorization = `Bearer ${key}`;
    let res: Response;
    try {
      res = await fetch(url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      throw new Error(`${method} ${url}${path}: no answer (${(e as Error).message}); is the server running?`);
    }
    const text = await res.text();
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      json = text;
    }
    if (!res.ok) {
      const err = json?.error?.message ?? json?.error ?? text;
      throw new Error(`${method} ${path}: ${res.status} ${typeof err === "string" ? err : JSON.stringify(err)}`);
    }
    return json;
  };
  // The server answers `path` by the route table the types come from; the tests check answers against its schemas.
  const call = <M extends Method, P extends PathOf<M>>(method: M, path: P, body?: BodyOf<M, P>) =>
    request(method.toUpperCase(), path, body) as Promise<AnswerOf<M, P>>;
  const client: Client = {
    url,
    inProcess: !remote,
    call,
    get: (path) => call("get", path),
    post: (path, body) => request("POST", path, body ?? {}) as Promise<AnswerOf<"post", typeof path>>,
    delete: (path) => call("delete", path),
    async forget(outputDir) {
      const rel = outputDir.replace(/^\.\//, "").replace(/\/+$/, "");
      const { sessions } = await call("get", "/sessions");
      const ids: string[] = [];
      for (const s of sessions) {
        if (s.output_dir === rel || s.output_dir.endsWith(`/${rel}`)) {
          await call("delete", `/sessions/${s.id}`);
          ids.push(s.id);
        }
      }
      return ids;
    },
    close: () => stop(),
  };
  await call("get", "/health"); // fails early, naming the URL, when nothing answers
  return client;
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** A value as table text: floats to 5 significant digits, objects as JSON, nothing for null/undefined. */
export function cellText(v: unknown): string {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(5)));
  if (typeof v === "string") return v;
  return JSON.stringify(v);
}

function clip(s: string, n: number): string {
  const one = s.replace(/\n/g, "⏎");
  return one.length > n ? one.slice(0, n - 1) + "…" : one;
}

/** The mean of `rows[i][key]` (numbers; NaN when one is not a number, or there are no rows). */
export function mean(rows: readonly Record<string, unknown>[], key: string): number {
  let sum = 0;
  for (const r of rows) sum += typeof r[key] === "number" ? r[key] : NaN;
  return rows.length ? sum / rows.length : NaN;
}

/** Options of {@linkcode table}. */
export interface TableOptions {
  /** Columns in order (default: the keys of the rows, in order of first appearance). */
  columns?: string[];
  /** A caption above the table. */
  caption?: string;
  /** Plain-text cells are cut to this many characters (default 40). */
  width?: number;
}

/** Rows (objects) as an HTML table, with an aligned plain-text form. */
export function table(rows: readonly Record<string, unknown>[], opts: TableOptions = {}): Displayable {
  const columns = opts.columns ?? [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cells = rows.map((r) => columns.map((c) => cellText(r[c])));
  const width = opts.width ?? 40;
  return {
    [DISPLAY]() {
      const numeric = columns.map((_, j) => rows.every((r) => typeof r[columns[j]] === "number"));
      const td = (s: string, j: number) =>
        `<td style="text-align:${numeric[j] ? "right" : "left"};white-space:pre-wrap">${esc(s)}</td>`;
      const html = [
        `<table>`,
        opts.caption ? `<caption>${esc(opts.caption)}</caption>` : "",
        `<thead><tr>${columns.map((c) => `<th>${esc(c)}</th>`).join("")}</tr></thead>`,
        `<tbody>${cells.map((r) => `<tr>${r.map(td).join("")}</tr>`).join("")}</tbody>`,
        `</table>`,
      ].join("");
      const plain = [columns, ...cells].map((r) => r.map((s) => clip(s, width)));
      const w = columns.map((_, j) => Math.max(...plain.map((r) => r[j].length)));
      const lines = plain.map((r) => r.map((s, j) => s.padEnd(w[j])).join("  ").trimEnd());
      lines.splice(1, 0, w.map((n) => "-".repeat(n)).join("  "));
      if (opts.caption) lines.unshift(opts.caption);
      return { "text/html": html, "text/plain": lines.join("\n") };
    },
  };
}

/** A run of tokens of a previewed row (`POST /datasets/preview`: `rows[i].views[j].spans[k]`). */
export interface Span {
  text: string;
  ids: number[];
  trained: boolean;
}

/**
 * A tokenized sequence with its masked spans (prompt, history: no loss) struck through in grey and its trained
 * spans (the responses: the labels) on green; newlines show as ⏎.
 */
export function tokens(spans: readonly Span[]): Displayable {
  return {
    [DISPLAY]() {
      const trained = spans.filter((s) => s.trained).reduce((n, s) => n + s.ids.length, 0);
      const total = spans.reduce((n, s) => n + s.ids.length, 0);
      const summary = `${total} tokens, ${trained} trained, ${total - trained} masked`;
      const show = (t: string) => esc(t).replace(/\n/g, "⏎\n");
      const html = `<div style="font-family:monospace;white-space:pre-wrap;line-height:1.6">` +
        spans.map((s) =>
          s.trained
            ? `<span title="trained: ${s.ids.length} tokens" style="background:#c8f0c8">${show(s.text)}</span>`
            : `<span title="masked: ${s.ids.length} tokens" style="color:#888;background:#eee;` +
              `text-decoration:line-through">${show(s.text)}</span>`
        ).join("") +
        `</div><div><small>${summary}; <span style="background:#c8f0c8">trained</span> · ` +
        `<span style="color:#888;background:#eee;text-decoration:line-through">masked</span></small></div>`;
      const plain = spans.map((s) => `${s.trained ? "[trained]" : "[masked] "} ${JSON.stringify(s.text)}`);
      return { "text/html": html, "text/plain": [...plain, summary].join("\n") };
    },
  };
}

/** One point of a curve (a value that is missing or not finite is left out of the plot). */
export interface Point {
  step: number;
  value: number | null | undefined;
}

/**
 * A loss curve as inline SVG (engine/train/outputs/plot.ts's LLaMA-Factory-style plot: raw at 40 % opacity and
 * EMA-smoothed) of the finite points; with none, a line saying so.
 */
export function lossPlot(points: readonly Point[], key = "loss", title = `training ${key}`): Displayable {
  return {
    [DISPLAY](): Bundle {
      const finite = points.filter((p): p is { step: number; value: number } => Number.isFinite(p.value));
      if (!finite.length) return { "text/plain": `${title}: no points yet` };
      const last = finite[finite.length - 1];
      return {
        "image/svg+xml": lossSvg(finite.map((p) => p.step), finite.map((p) => p.value), key, title),
        "text/plain": `${title}: ${finite.length} points, last ${key} ${cellText(last.value)} at step ${last.step}`,
      };
    },
  };
}

/** Options of {@linkcode sideBySide}. */
export interface SideBySideOptions {
  /** Each panel's narrowest width in CSS pixels before the row wraps (default 280). */
  minWidth?: number;
}

/**
 * Displayables in one row of equal panels that wraps on a narrow page (e.g. a few {@linkcode lossPlot}s redrawn
 * together by one {@linkcode Live}): an SVG panel as an image scaled to its panel, any other by its HTML (else its
 * plain text); the plain-text form is each one's, line after line.
 */
export function sideBySide(items: readonly Displayable[], opts: SideBySideOptions = {}): Displayable {
  const minWidth = opts.minWidth ?? 280;
  return {
    [DISPLAY](): Bundle {
      const bundles = items.map((x) => x[DISPLAY]());
      const panel = (b: Bundle) => {
        const svg = b["image/svg+xml"];
        const inner = svg !== undefined
          ? `<img alt="${esc(b["text/plain"] ?? "plot")}" style="width:100%;height:auto" ` +
            `src="data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}"/>`
          : b["text/html"] ?? `<pre>${esc(b["text/plain"] ?? "")}</pre>`;
        return `<div style="flex:1 1 0;min-width:${minWidth}px">${inner}</div>`;
      };
      return {
        "text/html": `<div style="display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start">` +
          `${bundles.map(panel).join("")}</div>`,
        "text/plain": bundles.map((b) => b["text/plain"] ?? "").join("\n"),
      };
    },
  };
}

/** Markdown text (rendered by Jupyter, printed as is elsewhere). */
export function md(text: string): Displayable {
  return { [DISPLAY]: () => ({ "text/markdown": text, "text/plain": text }) };
}

interface Jupyter {
  display(obj: unknown, opts?: { raw?: boolean; update?: boolean; display_id?: string }): Promise<void>;
}

/** Deno's Jupyter API when this runs in the kernel (`deno jupyter`), else undefined. */
export function jupyter(): Jupyter | undefined {
  try {
    return (Deno as unknown as { jupyter?: Jupyter }).jupyter;
  } catch {
    return undefined; // Deno 2 throws on `Deno.jupyter` outside the `deno jupyter` subcommand
  }
}

/** Shows `x` now (a Displayable, or any value by its text); outside a kernel, prints its plain text. */
export async function show(x: Displayable | unknown): Promise<void> {
  await new Live().show(x);
}

/** Milliseconds {@linkcode Live.show} waits after a display so that it reaches the frontend before the cell ends. */
const FLUSH_MS = 20;

/** One output area redrawn in place: the first {@linkcode Live.show} displays, later ones update it. */
export class Live {
  readonly id: string = `whetstone-${crypto.randomUUID()}`;
  #shown = false;

  /** Draws `x` in this area (outside a kernel: prints its plain text). */
  async show(x: Displayable | unknown): Promise<void> {
    const bundle: Bundle = x !== null && typeof x === "object" && DISPLAY in x
      ? (x as Displayable)[DISPLAY]()
      : { "text/plain": typeof x === "string" ? x : cellText(x) };
    const j = jupyter();
    if (j) {
      await j.display(bundle, { raw: true, display_id: this.id, update: this.#shown });
      // The kernel sends display messages from a queue: without a pause, a cell that ends right after a display
      // can be reported idle first, and headless runners (nbclient) then drop the display.
      await new Promise((r) => setTimeout(r, FLUSH_MS));
    } else console.log(bundle["text/plain"] ?? "");
    this.#shown = true;
  }
}
