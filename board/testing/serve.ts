/**
 * The app as `deno task serve` runs it, in its own process, for the browser tests: training in the test's own
 * process would hold its event loop, and the test would see the page late (a Stop clicked steps after it meant).
 * Roots are the repository and a temp folder; the session state lives in the temp folder.
 * @module
 */
import { ROOT } from "./browser.ts";

/** A served app. */
export interface ServedApp {
  url: string;
  /** A temp folder inside the roots (outputs go here); removed by `close`. */
  tmp: string;
  /** `fetch` on the app with the API key (when one is set), the JSON answer read; throws on an error status. */
  // deno-lint-ignore no-explicit-any
  json(method: string, path: string, body?: unknown): Promise<any>;
  /** The server's output so far (its last 20,000 characters). */
  output(): string;
  /** Stops the server (SIGTERM, then SIGKILL after 10 s) and removes the temp folder. */
  close(): Promise<void>;
}

/** Starts `main.ts serve` on a free loopback port; `apiKey` sets WHETSTONE_API_KEY. */
export async function serveApp(opts: { apiKey?: string; timeoutMs?: number } = {}): Promise<ServedApp> {
  const tmp = await Deno.makeTempDir({ prefix: "whetstone-board-" });
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-webgpu",
      "--unstable-kv",
      "main.ts",
      "serve",
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--roots",
      `${ROOT},${tmp}`,
      "--state-dir",
      `${tmp}/state`,
    ],
    cwd: ROOT,
    env: { WHETSTONE_API_KEY: opts.apiKey ?? "", NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let out = "";
  let resolveUrl: (url: string) => void;
  const listening = new Promise<string>((r) => resolveUrl = r);
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      out = (out + chunk).slice(-20_000);
      const m = /listening on (http:\/\/[\d.]+:\d+)\//.exec(out);
      if (m) resolveUrl(m[1]);
    }
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  const close = async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* already gone */ }
    const killer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
    }, 10_000);
    await child.status;
    clearTimeout(killer);
    await drained.catch(() => {});
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
  };
  const timeoutMs = opts.timeoutMs ?? 60_000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const url = await Promise.race([
    listening,
    child.status.then((s) => `exited with code ${s.code}`),
    new Promise<string>((r) => timer = setTimeout(() => r(`no "listening on" after ${timeoutMs} ms`), timeoutMs)),
  ]);
  clearTimeout(timer);
  if (!url.startsWith("http://")) {
    await close();
    throw new Error(`main.ts serve ${url}:\n${out}`);
  }
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (opts.apiKey) headers.authorization = `Bearer ${opts.apiKey}`;
  return {
    url,
    tmp,
    output: () => out,
    close,
    async json(method, path, body) {
      const res = await fetch(url + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`${method} ${path} answered ${res.status}: ${text.slice(0, 500)}`);
      return JSON.parse(text);
    },
  };
}
