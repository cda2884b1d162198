/**
 * Test helpers: a real server on a loopback port (Deno.serve on port 0) over a temp state folder, JSON calls
 * that always read the body and check every JSON answer against its route's schema (routes/api.ts; errors against
 * the error body's), and a reader of server-sent events.
 * @module
 */
import { z } from "../deps.ts";
import { routeOf } from "./api.ts";
import { createServer, type Server } from "./app.ts";
import { ErrorBody, OpenAiErrorBody } from "./schemas.ts";
import type { ServerOptions } from "./options.ts";

/** The repository root. */
export const ROOT = new URL("../", import.meta.url).pathname.replace(/\/$/, "");

/** A server listening on 127.0.0.1 for a test. */
export interface TestServer {
  url: string;
  server: Server;
  /** A temp folder inside the roots (outputs go here). */
  tmp: string;
  /** `fetch` on the server, the JSON body read (null when it is not JSON). */
  call(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<Reply>;
  /** Stops listening and closes the sessions; `keepTmp` leaves the temp folder (a restart test reuses it). */
  close(keepTmp?: boolean): Promise<void>;
}

/** A response, its body read. */
export interface Reply {
  status: number;
  // deno-lint-ignore no-explicit-any
  json: any;
  text: string;
  headers: Headers;
}

/** Training arguments of a small, fast session on the built-in tiny model and the demo data. */
export function tinyArgs(outputDir: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    config: "examples/demo_lora_sft.yaml",
    output_dir: outputDir,
    max_samples: 24,
    cutoff_len: 64,
    per_device_train_batch_size: 4,
    max_steps: 6,
    logging_steps: 1,
    save_steps: 3,
    eval_steps: 3,
    ...extra,
  };
}

/** Starts a server: roots are the repository and a temp folder; state in the temp folder unless given. */
export async function startServer(opts: ServerOptions & { tmp?: string } = {}): Promise<TestServer> {
  const tmp = opts.tmp ?? await Deno.makeTempDir({ prefix: "whetstone-api-" });
  const server = await createServer({
    roots: [ROOT, tmp],
    stateDir: `${tmp}/state`,
    log: () => {},
    ...opts,
  });
  const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, server.fetch);
  const url = `http://127.0.0.1:${http.addr.port}`;
  return {
    url,
    server,
    tmp,
    async call(method, path, body, headers = {}) {
      const res = await fetch(url + path, {
        method,
        headers: { "content-type": "application/json", ...headers },
        body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
      });
      const text = await res.text();
      let json = null;
      try {
        json = JSON.parse(text);
      } catch { /* not JSON */ }
      const route = routeOf(method, path);
      const json_ = (res.headers.get("content-type") ?? "").startsWith("application/json");
      if (route && json_) {
        const schema = res.ok
          ? route.response
          : !route.openai || res.status === 401
          ? ErrorBody
          : res.status === 413
          ? z.union([ErrorBody, OpenAiErrorBody])
          : OpenAiErrorBody;
        const check = schema.safeParse(json);
        if (!check.success) {
          throw new Error(
            `${method} ${path} answered outside its schema: ${check.error.message}\n${text.slice(0, 2000)}`,
          );
        }
      }
      return { status: res.status, json, text, headers: res.headers };
    },
    async close(keepTmp = false) {
      await http.shutdown();
      await server.close();
      if (!keepTmp) await Deno.remove(tmp, { recursive: true });
    },
  };
}

/** One server-sent event. */
export interface Sse {
  event?: string;
  data: string;
}

/** Reads events from a streamed response until `stop` returns true for one (or the stream ends). */
export async function readEvents(
  res: Response,
  stop: (e: Sse) => boolean = () => false,
  onEvent?: (e: Sse) => void,
): Promise<Sse[]> {
  const out: Sse[] = [];
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return out;
      buf += value;
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const e: Sse = { data: "" };
        const data: string[] = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) e.event = line.slice(7);
          else if (line.startsWith("data: ")) data.push(line.slice(6));
        }
        if (!data.length && e.event === undefined) continue; // a comment
        e.data = data.join("\n");
        out.push(e);
        onEvent?.(e);
        if (stop(e)) return out;
      }
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}
