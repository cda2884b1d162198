/**
 * Server settings: from `deno task serve` flags, else environment variables, else defaults.
 *
 * | flag | env | default |
 * | --- | --- | --- |
 * | `--host` | `HOST` | 127.0.0.1 |
 * | `--port` | `PORT` | 8000 |
 * | `--roots a,b` | `WHETSTONE_ROOTS` | the current directory |
 * | `--state-dir` | `WHETSTONE_STATE_DIR` | out/.whetstone |
 * | `--body-limit` (bytes) | `WHETSTONE_BODY_LIMIT` | 1048576 |
 * | `--model`, `--adapter`, `--template`, `--model-name` | `WHETSTONE_MODEL`, `WHETSTONE_ADAPTER`, `WHETSTONE_TEMPLATE`, `WHETSTONE_MODEL_NAME` | none |
 * | `--max-batch` | `WHETSTONE_MAX_BATCH` | 8 (chat answers generated together, per model) |
 * | `--max-queue` | `WHETSTONE_MAX_QUEUE` | 64 (more requests waiting per model; beyond them a 503) |
 * | `--infer-backend` | `WHETSTONE_INFER_BACKEND` | huggingface (the only one: vllm, sglang, ktransformers are refused) |
 * | — | `WHETSTONE_API_KEY` | none (no key asked) |
 * @module
 */
import type { ExecutorKind } from "../engine/mod.ts";
import { inferBackendProblem } from "../engine/config/infer_backend.ts";

/** What a server is made with. */
export interface ServerOptions {
  /** Folders request paths must stay in (default: the current directory). */
  roots?: string[];
  /** Folder of the session database (default `out/.whetstone`). */
  stateDir?: string;
  /** Bearer key every request must carry (default: none). */
  apiKey?: string;
  /** Largest request body in bytes (default 1 MiB). */
  bodyLimit?: number;
  /**
   * Continuous batching of chat answers, per model: how many generate together (default 8) and how many more
   * requests may wait (default 64; beyond them a 503 with Retry-After).
   */
  batch?: { maxBatch?: number; maxQueue?: number };
  /** The model `/v1/chat/completions` serves (besides sessions), loaded on first use. */
  chatModel?: {
    model: string;
    adapter?: string;
    template?: string | null;
    defaultSystem?: string | null;
    /** The id `/v1/models` reports (default: the model path). */
    name?: string;
    executor?: ExecutorKind;
  };
  /**
   * llamafactory runs: the PATH searched for llamafactory-cli (default $PATH), variables added to its environment,
   * the trainer_log.jsonl poll interval and stop's grace period before SIGKILL (ms).
   */
  llamafactory?: { searchPath?: string; env?: Record<string, string>; pollMs?: number; graceMs?: number };
  /** Session log lines (default: console.error). */
  log?: (line: string) => void;
}

/** Where to listen. */
export interface Listen {
  hostname: string;
  port: number;
}

function flag(args: readonly string[], name: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === `--${name}`) return args[i + 1];
    if (args[i].startsWith(`--${name}=`)) return args[i].slice(name.length + 3);
  }
  return undefined;
}

const FLAGS = [
  "host",
  "port",
  "roots",
  "state-dir",
  "body-limit",
  "model",
  "adapter",
  "template",
  "model-name",
  "max-batch",
  "max-queue",
  "infer-backend",
];

/** Reads the serve flags (`--name value` or `--name=value`) and the environment; throws naming a bad one. */
export function serveOptions(
  args: readonly string[] = [],
  env: (name: string) => string | undefined = (n) => Deno.env.get(n),
): { listen: Listen; options: ServerOptions } {
  for (const a of args) {
    const name = /^--([\w-]+)/.exec(a)?.[1];
    if (a.startsWith("--") && !FLAGS.includes(name!)) {
      throw new Error(`unknown serve flag ${a}; expected ${FLAGS.map((f) => `--${f}`).join(", ")}`);
    }
  }
  const get = (f: string, e: string) => flag(args, f) ?? env(e);
  const port = Number(get("port", "PORT") ?? 8000);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`--port / PORT: expected a port number 0..65535, got ${get("port", "PORT")}`);
  }
  const limitText = get("body-limit", "WHETSTONE_BODY_LIMIT");
  const bodyLimit = limitText === undefined ? undefined : Number(limitText);
  if (bodyLimit !== undefined && !(Number.isInteger(bodyLimit) && bodyLimit > 0)) {
    throw new Error(`--body-limit / WHETSTONE_BODY_LIMIT: expected a positive number of bytes, got ${limitText}`);
  }
  const count = (f: string, e: string, min: number): number | undefined => {
    const text = get(f, e);
    if (text === undefined) return undefined;
    const v = Number(text);
    if (!Number.isInteger(v) || v < min) throw new Error(`--${f} / ${e}: expected an integer >= ${min}, got ${text}`);
    return v;
  };
  const maxBatch = count("max-batch", "WHETSTONE_MAX_BATCH", 1);
  const maxQueue = count("max-queue", "WHETSTONE_MAX_QUEUE", 0);
  const backend = inferBackendProblem(get("infer-backend", "WHETSTONE_INFER_BACKEND"));
  if (backend) throw new Error(`--infer-backend / WHETSTONE_INFER_BACKEND (infer_backend): ${backend}`);
  const roots = get("roots", "WHETSTONE_ROOTS")?.split(",").map((s) => s.trim()).filter(Boolean);
  const model = get("model", "WHETSTONE_MODEL");
  return {
    listen: { hostname: get("host", "HOST") ?? "127.0.0.1", port },
    options: {
      roots: roots?.length ? roots : undefined,
      stateDir: get("state-dir", "WHETSTONE_STATE_DIR"),
      apiKey: env("WHETSTONE_API_KEY") || undefined,
      bodyLimit,
      batch: maxBatch === undefined && maxQueue === undefined ? undefined : { maxBatch, maxQueue },
      chatModel: model
        ? {
          model,
          adapter: get("adapter", "WHETSTONE_ADAPTER"),
          template: get("template", "WHETSTONE_TEMPLATE") ?? null,
          name: get("model-name", "WHETSTONE_MODEL_NAME"),
        }
        : undefined,
    },
  };
}
