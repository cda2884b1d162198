/**
 * The on-disk cache of ONNX Runtime-optimized models, for sessions asked for at an optimization level other than the
 * executor's default "disabled" (`sessionOptions.graphOptimizationLevel`): there, building a session for a large step
 * graph is mostly ONNX Runtime's graph optimization (a SmolLM2-135M LoRA step graph: built in ~6–8 s at level
 * "basic", loaded from the cache in ~2–3 s; bench onnx_compile); the optimized graph it builds is saved once (the
 * `optimizedModelFilePath` session option) and later sessions of the same model load it with optimization disabled. Params are graph inputs, so the saved models hold no weights (~1.5 MiB for 135M).
 *
 * An entry is `<dir>/<key>.onnx`, key = SHA-256 of the lowered model's bytes, onnxruntime's version, the session
 * options and the CPU (an optimized model may hold CPU-specific kernels). The directory is
 * `$WHETSTONE_CACHE/onnx`, else `.cache/whetstone/onnx/` under the project root; `WHETSTONE_ONNX_CACHE=off`
 * turns the cache off; deleting the directory clears it. The least recently used entries past
 * {@link ModelCacheOptions.maxEntries} are removed when one is written.
 * @module
 */
import { exists } from "../../util/fs.ts";

/** Options of the model cache. */
export interface ModelCacheOptions {
  /** The cache directory (default {@link modelCacheDir}). */
  dir?: string;
  /** Models with fewer nodes are not cached: their sessions build in well under a second (default 2000). */
  minNodes?: number;
  /** Entries kept; the least recently used beyond are removed (default 64). */
  maxEntries?: number;
}

/** `$WHETSTONE_CACHE/onnx`, else `<project>/.cache/whetstone/onnx`; undefined when `WHETSTONE_ONNX_CACHE=off`. */
export function modelCacheDir(): string | undefined {
  let dir: string | undefined, off: string | undefined;
  try {
    dir = Deno.env.get("WHETSTONE_CACHE");
    off = Deno.env.get("WHETSTONE_ONNX_CACHE");
  } catch {
    // no env permission: the project default
  }
  if (off && /^(off|0|false|no)$/i.test(off)) return undefined;
  if (dir) return `${dir.replace(/\/+$/, "")}/onnx`;
  return decodeURIComponent(new URL("../../../.cache/whetstone/onnx", import.meta.url).pathname);
}

let cpu: string | undefined;

/** What identifies this CPU for optimized kernels: the target triple, the core count and the model name. */
function cpuFacts(): string {
  if (cpu !== undefined) return cpu;
  let model = "";
  try {
    model = Deno.readTextFileSync("/proc/cpuinfo").match(/^model name\s*:\s*(.*)$/m)?.[1] ?? "";
  } catch {
    // not Linux, or no read permission: the target and core count only
  }
  return cpu = `${Deno.build.target}|${navigator.hardwareConcurrency}|${model}`;
}

/** The cache key of a model: hex SHA-256 of its bytes and of what else decides the optimized graph. */
export async function modelCacheKey(bytes: Uint8Array, ortVersion: string, options: object): Promise<string> {
  const facts = new TextEncoder().encode(`\n${ortVersion}\n${cpuFacts()}\n${JSON.stringify(options)}`);
  const all = new Uint8Array(bytes.length + facts.length);
  all.set(bytes);
  all.set(facts, bytes.length);
  const h = new Uint8Array(await crypto.subtle.digest("SHA-256", all));
  return Array.from(h, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The path of a cached entry, its mtime refreshed (it is now the most recently used), or undefined when absent;
 * throws when the directory cannot be read.
 */
export async function cachedModel(dir: string, key: string): Promise<string | undefined> {
  const path = `${dir}/${key}.onnx`;
  if (!(await exists(path))) return undefined;
  try {
    const now = new Date();
    await Deno.utime(path, now, now);
  } catch {
    // a read-only cache still serves
  }
  return path;
}

/** A fresh temporary path in `dir` for onnxruntime to save an optimized model to (the directory is made). */
export async function pendingPath(dir: string, key: string): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  return `${dir}/${key}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp`;
}

/** Moves a saved model into place (atomically) and removes the least recently used entries past `maxEntries`. */
export async function commitModel(dir: string, key: string, tmp: string, maxEntries = 64): Promise<void> {
  await Deno.rename(tmp, `${dir}/${key}.onnx`);
  const entries: { path: string; t: number }[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (!e.isFile || !e.name.endsWith(".onnx")) continue;
    const path = `${dir}/${e.name}`;
    try {
      entries.push({ path, t: (await Deno.stat(path)).mtime?.getTime() ?? 0 });
    } catch {
      // removed meanwhile by another process
    }
  }
  entries.sort((a, b) => b.t - a.t);
  for (const { path } of entries.slice(maxEntries)) await Deno.remove(path).catch(() => {});
}
