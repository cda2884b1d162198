/**
 * The tuning cache: tuned kernel parameters per adapter name, in one JSON file
 * (`$WHETSTONE_CACHE/tuning.json`, else `.cache/whetstone/tuning.json` under the project root),
 * loaded into an executor's `ctx.tuned` when it starts and written atomically by the tuner.
 *
 * ```json
 * { "version": 1, "adapters": { "llvmpipe (LLVM 19.1.7, 256 bits)": { "matmul:l:nn:f32.f32:a4": { ... } } } }
 * ```
 * @module
 */
import { ADAPTER_KIND_KEY, type AdapterKind } from "../../kernels/matmul.ts";
import { writeFileAtomic } from "../util/fs.ts";

/** The cache file's contents. */
export interface TuningFile {
  version: 1;
  /** Adapter name → tuned key → parameters. */
  adapters: Record<string, Record<string, unknown>>;
}

/** What the cache needs to know of an adapter. */
export interface AdapterFacts {
  readonly adapterName: string;
  readonly isFallback: boolean;
}

/** "cpu" for software adapters (lavapipe/llvmpipe, SwiftShader, WARP, fallback adapters), else "gpu". */
export function adapterKind(gpu: AdapterFacts): AdapterKind {
  return gpu.isFallback || /llvmpipe|lavapipe|swiftshader|software|warp|basic render/i.test(gpu.adapterName)
    ? "cpu"
    : "gpu";
}

/** Path of the tuning file: `$WHETSTONE_CACHE/tuning.json`, else `<project>/.cache/whetstone/tuning.json`. */
export function tuningPath(): string {
  let dir: string | undefined;
  try {
    dir = Deno.env.get("WHETSTONE_CACHE");
  } catch {
    // no env permission: use the project default
  }
  if (dir) return `${dir.replace(/\/+$/, "")}/tuning.json`;
  return decodeURIComponent(new URL("../../.cache/whetstone/tuning.json", import.meta.url).pathname);
}

/** Reads the tuning file; a missing, unreadable or malformed file reads as empty. */
export function readTuning(path = tuningPath()): TuningFile {
  try {
    const j = JSON.parse(Deno.readTextFileSync(path));
    if (j && j.version === 1 && typeof j.adapters === "object" && j.adapters) return j as TuningFile;
  } catch {
    // absent or not readable: nothing tuned yet
  }
  return { version: 1, adapters: {} };
}

/**
 * Fills `tuned` with the adapter kind and every cached entry of this adapter; returns how many
 * entries were loaded. Never throws (an unreadable cache means untuned defaults).
 */
export function loadTuning(tuned: Map<string, unknown>, gpu: AdapterFacts, path = tuningPath()): number {
  tuned.set(ADAPTER_KIND_KEY, adapterKind(gpu));
  const entries = readTuning(path).adapters[gpu.adapterName] ?? {};
  for (const [k, v] of Object.entries(entries)) tuned.set(k, v);
  return Object.keys(entries).length;
}

/** Merges `entries` into the adapter's section of the tuning file, written atomically (temp file, rename). */
export async function saveTuning(
  adapterName: string,
  entries: Record<string, unknown>,
  path = tuningPath(),
): Promise<void> {
  const dir = path.slice(0, path.lastIndexOf("/"));
  if (dir) await Deno.mkdir(dir, { recursive: true });
  const file = readTuning(path);
  file.adapters[adapterName] = { ...file.adapters[adapterName], ...entries };
  await writeFileAtomic(path, JSON.stringify(file, null, 1) + "\n");
}
