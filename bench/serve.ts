/**
 * Bench "serve": the chat server under concurrent clients. `main.ts serve`, in its own process as a user runs it,
 * serves the built-in tiny model (fixtures/tiny/model, qwen template); `c` clients (c = 1, 4, 16) each send greedy
 * `/v1/chat/completions` requests one after another until `BENCH_SERVE_REQUESTS` (default 32) have answered.
 * Measured in the same run for sequential serving (`--max-batch 1`: one answer generates at a time, the others
 * wait) and continuous batching (`--max-batch 16`): requests/s, generated tokens/s (the answers' usage
 * completion_tokens over the wall time). `BENCH_SERVE_TOKENS` sets
 * max_tokens (default 32). A first untimed round on each server loads the model and plans the graphs.
 * @module
 */
import type { Bench, Measurement } from "./report.ts";

const MODEL = new URL("../fixtures/tiny/model", import.meta.url).pathname;
const QUESTIONS = [
  "Hi",
  "What is Whetstone?",
  "Tell me a long story about a whetstone and a knife.",
  "Name three colors.",
  "1 2 3 4 5 6 7 8 9 10 11 12",
  "Why is the sky blue?",
];

/** Requests/s, tokens/s and the most rows at once for `clients` concurrent clients on one server. */
async function load(
  url: string,
  clients: number,
  requests: number,
  maxTokens: number,
): Promise<{ reqPerS: number; tokPerS: number }> {
  let next = 0, tokens = 0;
  const one = async (i: number) => {
    const res = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      body: JSON.stringify({
        model: "tiny",
        messages: [{ role: "user", content: QUESTIONS[i % QUESTIONS.length] }],
        temperature: 0,
        max_tokens: maxTokens,
      }),
    });
    const json = await res.json();
    if (res.status !== 200) throw new Error(`request ${i}: ${res.status} ${JSON.stringify(json)}`);
    tokens += json.usage.completion_tokens;
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: clients }, async () => {
    for (let i = next++; i < requests; i = next++) await one(i);
  }));
  const s = (performance.now() - t0) / 1000;
  return { reqPerS: requests / s, tokPerS: tokens / s };
}

/** `main.ts serve` of the tiny model in its own process; resolves once it listens. */
async function spawnServer(maxBatch: number): Promise<{ url: string; close: () => Promise<void> }> {
  const state = await Deno.makeTempDir({ prefix: "whetstone-bench-serve-" });
  const root = new URL("../", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--unstable-webgpu", "--unstable-kv", "main.ts", "serve", "--host", "127.0.0.1", "--port", "0"]
      .concat(["--roots", root, "--state-dir", state, "--model", MODEL, "--template", "qwen", "--model-name", "tiny"])
      .concat(["--max-batch", String(maxBatch), "--max-queue", "64"]),
    cwd: root,
    env: { NO_COLOR: "1", WHETSTONE_API_KEY: "" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let out = "";
  let listening: (url: string) => void;
  const url = new Promise<string>((r) => listening = r);
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      out = (out + chunk).slice(-10_000);
      const m = /listening on (http:\/\/[\d.]+:\d+)\//.exec(out);
      if (m) listening(m[1]);
    }
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  const close = async () => {
    try {
      child.kill("SIGTERM");
    } catch { /* gone */ }
    await child.status;
    await drained.catch(() => {});
    await Deno.remove(state, { recursive: true }).catch(() => {});
  };
  const first = await Promise.race([url, child.status.then((s) => ({ exited: s.code }))]);
  if (typeof first !== "string") {
    await close();
    throw new Error(`main.ts serve exited with code ${first.exited} before listening:\n${out}`);
  }
  return { url: first, close };
}

/** The serve bench. */
export const serveBench: Bench = {
  name: "serve",
  description: "chat server requests/s and generated tokens/s at 1, 4, 16 clients: sequential vs continuous batching",
  async *run(): AsyncIterable<Measurement> {
    const requests = Number(Deno.env.get("BENCH_SERVE_REQUESTS") ?? 32);
    const maxTokens = Number(Deno.env.get("BENCH_SERVE_TOKENS") ?? 32);
    for (const [serving, maxBatch] of [["sequential", 1], ["batched", 16]] as const) {
      const server = await spawnServer(maxBatch);
      try {
        const url = server.url;
        // Untimed: loads the model and plans the graphs every measured run uses (every prompt, every batch size).
        await load(url, 16, 2 * requests, maxTokens);
        for (const clients of [1, 4, 16]) {
          const r = await load(url, clients, Math.max(requests, clients), maxTokens);
          const common = { bench: "serve", serving, clients, requests, max_tokens: maxTokens };
          yield { ...common, metric: "requests/s", value: r.reqPerS, unit: "req/s" };
          yield { ...common, metric: "generated tokens/s", value: r.tokPerS, unit: "tok/s" };
        }
      } finally {
        await server.close();
      }
    }
  },
};
