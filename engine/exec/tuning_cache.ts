/**
 * The tuning cache: tuned kernel parameters per adapter (its name, plus the optional features the
 * kernels use: ` +f16`, ` +sg32` — see {@link tuningKey}), in one JSON file
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
  /** shader-f16 passed its probe (f16 kernel variants). */
  readonly f16?: boolean;
  /** Fixed subgroup size that passed its probe, 0 or absent when none (subgroup kernel variants). */
  readonly subgroupSize?: number;
}

/**
 * The key an adapter's tuned entries are cached under: its name, plus ` +f16` and ` +sg<size>` when
 * those variants can run — a config tuned with a variant must not be loaded where it cannot run,
 * and one tuned without the variants was chosen among fewer candidates. An adapter with neither
 * keeps its bare name (caches written before the variants still load).
 */
export function tuningKey(gpu: AdapterFacts): string {
  return `${gpu.adapterName}${gpu.f16 ? " +f16" : ""}${gpu.subgroupSize ? ` +sg${gpu.subgroupSize}` : ""}`;
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
  const entries = readTuning(path).adapters[tuningKey(gpu)] ?? {};
  for (const [k, v] of Object.entries(entries)) tuned.set(k, v);
  return Object.keys(entries).length;
}

/**
 * Merges `entries` into the adapter's section (`key`, see {@link tuningKey}) of the tuning file,
 * written atomically (temp file, rename).
 */
export async function saveTuning(
  key: string,
  entries: Record<string, unknown>,
  path = tuningPath(),
): Promise<void> {
  const dir = path.slice(0, path.lastIndexOf("/"));
  if (dir) await Deno.mkdir(dir, { recursive: true });
  const file = readTuning(path);
  file.adapters[key] = { ...file.adapters[key], ...entries };
  await writeFileAtomic(path, JSON.stringify(file, null, 1) + "\n");
}
