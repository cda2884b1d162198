/**
 * Bench "serve": the chat server under concurrent clients. Two `main.ts serve` processes, started at once as a user
 * runs them (different ports), serve the built-in tiny model (fixtures/tiny/model, qwen template): one serves
 * sequentially (`--max-batch 1`: one answer generates at a time, the others wait), the other batches continuously
 * (`--max-batch 16`). For c = 1, 4, 16 clients, each sending greedy `/v1/chat/completions` requests one after another
 * until `BENCH_SERVE_REQUESTS` (default 32) have answered, the bench alternates a sequential round and a batched round
 * `BENCH_SERVE_REPEATS` times (default 5), so both modes see the same machine load. Reported per mode: the median
 * requests/s and generated tokens/s (the answers' usage completion_tokens over the wall time) with their spread
 * (min, p25, p75, max over the rounds); then the ratio of the medians (batched over sequential) with the min and max
 * of the rounds' paired ratios; and each server's peak RSS (VmHWM, where /proc has it). `BENCH_SERVE_TOKENS` sets
 * max_tokens (default 32). An untimed warm-up round on each server first loads the model and plans the graphs.
 * @module
 */
import type { Bench, Measurement } from "./report.ts";
import { envInt } from "./rounds.ts";
import { spread, spreadFields } from "./stats.ts";

const MODEL = new URL("../fixtures/tiny/model", import.meta.url).pathname;
const QUESTIONS = [
  "Hi",
  "What is Whetstone?",
  "Tell me a long story about a whetstone and a knife.",
  "Name three colors.",
  "1 2 3 4 5 6 7 8 9 10 11 12",
  "Why is the sky blue?",
];

/** Requests/s and generated tokens/s for `clients` concurrent clients sending `requests` requests to one server. */
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
async function spawnServer(
  maxBatch: number,
): Promise<{ url: string; peakRssMiB: () => Promise<number | undefined>; close: () => Promise<void> }> {
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
  // The child is the Deno process itself (no shell between), so its VmHWM is the server's peak resident memory.
  const peakRssMiB = async () => {
    const status = await Deno.readTextFile(`/proc/${child.pid}/status`).catch(() => "");
    const kb = /^VmHWM:\s+(\d+) kB/m.exec(status);
    return kb ? Number(kb[1]) / 1024 : undefined;
  };
  return { url: first, peakRssMiB, close };
}

const MODES = [["sequential", 1], ["batched", 16]] as const;

/** The serve bench. */
export const serveBench: Bench = {
  name: "serve",
  description:
    "chat server requests/s and generated tokens/s at 1, 4, 16 clients: sequential vs continuous batching, " +
    "both servers up at once, alternating rounds",
  async *run(): AsyncIterable<Measurement> {
    const requests = envInt("BENCH_SERVE_REQUESTS", 32);
    const maxTokens = envInt("BENCH_SERVE_TOKENS", 32);
    const repeats = envInt("BENCH_SERVE_REPEATS", 5);
    const started = await Promise.allSettled(MODES.map(([, maxBatch]) => spawnServer(maxBatch)));
    const servers = started.flatMap((s) => s.status === "fulfilled" ? [s.value] : []);
    try {
      const failed = started.find((s) => s.status === "rejected");
      if (failed) throw (failed as PromiseRejectedResult).reason;
      // Untimed: loads the model and plans the graphs every measured round uses (every prompt, every batch size).
      for (const server of servers) await load(server.url, 16, 2 * requests, maxTokens);
      for (const clients of [1, 4, 16]) {
        const n = Math.max(requests, clients);
        const rounds = MODES.map(() => ({ req: [] as number[], tok: [] as number[] }));
        const load0 = Deno.loadavg()[0];
        for (let r = 0; r < repeats; r++) {
          for (const [i, server] of servers.entries()) {
            const m = await load(server.url, clients, n, maxTokens);
            rounds[i].req.push(m.reqPerS);
            rounds[i].tok.push(m.tokPerS);
          }
        }
        const load1 = Number(((load0 + Deno.loadavg()[0]) / 2).toFixed(2));
        const common = { bench: "serve", clients, requests: n, max_tokens: maxTokens, repeats };
        const metrics = [
          ["requests/s", "req", "req/s", "requests/s ratio"],
          ["generated tokens/s", "tok", "tok/s", "tokens/s ratio"],
        ] as const;
        for (const [i, [serving]] of MODES.entries()) {
          for (const [metric, key, unit] of metrics) {
            const s = spread(rounds[i][key]);
            yield { ...common, serving, metric, value: s.median, unit, ...spreadFields(s), load1 };
          }
        }
        for (const [, key, , metric] of metrics) {
          const [seq, bat] = [rounds[0][key], rounds[1][key]];
          // The ratio of the medians; round_min/round_max: the extremes of the paired per-round ratios (round r's
          // batched over round r's sequential, measured right after each other).
          const paired = spread(bat.map((b, r) => b / seq[r]));
          const round = (x: number) => Number(x.toPrecision(4));
          yield {
            ...common,
            serving: "batched/sequential",
            metric,
            value: spread(bat).median / spread(seq).median,
            unit: "x",
            round_min: round(paired.min),
            round_max: round(paired.max),
          };
        }
      }
      for (const [i, [serving, maxBatch]] of MODES.entries()) {
        const mib = await servers[i].peakRssMiB();
        if (mib !== undefined) {
          yield { bench: "serve", serving, max_batch: maxBatch, metric: "server peak RSS", value: mib, unit: "MiB" };
        }
      }
    } finally {
      await Promise.all(servers.map((s) => s.close()));
    }
  },
};
