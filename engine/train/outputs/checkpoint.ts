/**
 * Crash-safe checkpoint folders in HF Trainer's layout: `<output_dir>/checkpoint-<global_step>/`.
 *
 * {@linkcode writeCheckpointAtomic} builds a checkpoint in a hidden temp folder `.checkpoint-<step>.tmp-<random>/`,
 * fsyncs it and renames it to `checkpoint-<step>` in one step, so a run killed mid-save never leaves a half-written
 * `checkpoint-N`, and the previous checkpoints are never touched before the new one is complete. A checkpoint counts
 * as complete only if its marker file (`trainer_state.json`, written by the caller) exists; the marker is checked
 * before the rename. Leftovers of an interrupted save are removed by {@linkcode cleanCheckpointLeftovers}, which the
 * next write runs first (a trainer may also run it at startup, before {@linkcode latestCheckpoint}).
 *
 * Our checkpoint files (HF's torch pickles replaced by portable formats):
 * - `optimizer.safetensors`: optimizer moments, name → f32 ({@linkcode saveOptimizerState});
 * - `scheduler.json`, `rng_state.json`: small JSON states ({@linkcode saveJsonState});
 * - `trainer_state.json`: HF's TrainerState (see `trainer_log.ts` `writeTrainerState`), the completion marker.
 *
 * One writer per output folder is assumed.
 * @module
 */
import { openSafetensors, writeSafetensors } from "../../io/safetensors.ts";
import { exists, writeFileAtomic } from "../../util/fs.ts";

/** HF's `PREFIX_CHECKPOINT_DIR`. */
export const CHECKPOINT_PREFIX = "checkpoint";
/** The file whose presence marks a checkpoint folder as complete. */
export const TRAINER_STATE_FILE = "trainer_state.json";
/** Optimizer state file (f32 tensors by name). */
export const OPTIMIZER_FILE = "optimizer.safetensors";
/** Scheduler state file. */
export const SCHEDULER_FILE = "scheduler.json";
/** RNG / data-order state file. */
export const RNG_FILE = "rng_state.json";

/** A complete checkpoint folder. */
export interface CheckpointInfo {
  /** The global step in its name. */
  step: number;
  /** `checkpoint-<step>`. */
  name: string;
  /** `<outputDir>/checkpoint-<step>`. */
  path: string;
}

const NAME = /^checkpoint-(\d+)$/;
const TMP = /^\.checkpoint-\d+\.tmp-[0-9a-f]+$/;
const OLD = /^\.checkpoint-(\d+)\.old-[0-9a-f]+$/;

function join(dir: string, name: string): string {
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

function rand(): string {
  return crypto.randomUUID().replaceAll("-", "").slice(0, 12);
}

async function readDirSafe(dir: string): Promise<Deno.DirEntry[]> {
  const out: Deno.DirEntry[] = [];
  try {
    for await (const e of Deno.readDir(dir)) out.push(e);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  return out;
}

/** fsyncs a file or a folder (a folder's fsync makes the names in it durable). */
async function syncPath(path: string): Promise<void> {
  const f = await Deno.open(path, { read: true });
  try {
    await f.sync();
  } finally {
    f.close();
  }
}

/** fsyncs every file under `dir`, then the folders themselves. */
async function syncTree(dir: string): Promise<void> {
  for (const e of await readDirSafe(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory) await syncTree(p);
    else if (e.isFile) await syncPath(p);
  }
  await syncPath(dir);
}

/** Saves a small JSON state (e.g. {@linkcode SCHEDULER_FILE}, {@linkcode RNG_FILE}) to `dir/file` atomically. */
export async function saveJsonState(dir: string, file: string, value: unknown): Promise<void> {
  await writeFileAtomic(join(dir, file), JSON.stringify(value, null, 2) + "\n");
}

/** Loads a JSON state written by {@linkcode saveJsonState}; throws with the path if it is missing or invalid. */
export async function loadJsonState<T = unknown>(dir: string, file: string): Promise<T> {
  const path = join(dir, file);
  const text = await Deno.readTextFile(path);
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new Error(`${path}: expected JSON, got a parse error (${(e as Error).message})`);
  }
}

/**
 * Saves optimizer state tensors (name → f32 values, stored 1-D) to `dir/optimizer.safetensors` atomically, with
 * optional string metadata (e.g. `{ step: "120" }`).
 */
export async function saveOptimizerState(
  dir: string,
  tensors: Record<string, Float32Array> | ReadonlyMap<string, Float32Array>,
  metadata?: Record<string, string>,
): Promise<void> {
  const entries = tensors instanceof Map ? [...tensors] : Object.entries(tensors);
  const out: Record<string, { dtype: "F32"; shape: number[]; data: Uint8Array }> = {};
  for (const [name, v] of entries) {
    if (!(v instanceof Float32Array)) throw new Error(`optimizer state ${name}: expected a Float32Array`);
    out[name] = { dtype: "F32", shape: [v.length], data: new Uint8Array(v.buffer, v.byteOffset, v.byteLength) };
  }
  await writeSafetensors(join(dir, OPTIMIZER_FILE), out, metadata);
}

/** Loads what {@linkcode saveOptimizerState} wrote (every tensor widened to f32, flattened). */
export async function loadOptimizerState(
  dir: string,
): Promise<{ tensors: Map<string, Float32Array>; metadata: Record<string, string> }> {
  using f = await openSafetensors(join(dir, OPTIMIZER_FILE));
  const tensors = new Map<string, Float32Array>();
  for (const name of f.tensors.keys()) tensors.set(name, await f.readF32(name));
  return { tensors, metadata: { ...f.metadata } };
}

/**
 * Removes what an interrupted {@linkcode writeCheckpointAtomic} left in `outputDir`: `.checkpoint-*.tmp-*` folders
 * are deleted; a `.checkpoint-N.old-*` folder (a replaced checkpoint, moved aside just before the new one was
 * renamed in) is deleted if `checkpoint-N` exists and renamed back to `checkpoint-N` otherwise.
 * Returns the names it removed or restored.
 */
export async function cleanCheckpointLeftovers(outputDir: string): Promise<string[]> {
  const done: string[] = [];
  for (const e of await readDirSafe(outputDir)) {
    if (!e.isDirectory) continue;
    const p = join(outputDir, e.name);
    if (TMP.test(e.name)) {
      await Deno.remove(p, { recursive: true });
      done.push(e.name);
      continue;
    }
    const m = OLD.exec(e.name);
    if (!m) continue;
    const target = join(outputDir, `${CHECKPOINT_PREFIX}-${Number(m[1])}`);
    if (await exists(target, { followLinks: false })) await Deno.remove(p, { recursive: true });
    else await Deno.rename(p, target);
    done.push(e.name);
  }
  return done;
}

/** Options of {@linkcode writeCheckpointAtomic}. */
export interface WriteCheckpointOptions {
  /** File `write` must have created for the checkpoint to count as complete (default `trainer_state.json`; null: none). */
  marker?: string | null;
  /** fsync every file and the folders before and after the rename (default true). */
  fsync?: boolean;
}

/**
 * Writes `<outputDir>/checkpoint-<step>/` atomically: cleans leftovers of earlier interrupted saves, lets `write`
 * fill a fresh temp folder `.checkpoint-<step>.tmp-<random>/`, checks the marker file is there, fsyncs, and renames
 * the folder into place. An existing `checkpoint-<step>` is replaced (moved aside, then deleted after the rename).
 * If `write` throws, the temp folder is removed and the error rethrown; existing checkpoints are untouched.
 * @returns the checkpoint's path.
 */
export async function writeCheckpointAtomic(
  outputDir: string,
  step: number,
  write: (tmpDir: string) => Promise<void>,
  opts: WriteCheckpointOptions = {},
): Promise<string> {
  if (!Number.isInteger(step) || step < 0) throw new Error(`checkpoint: expected a step integer >= 0, got ${step}`);
  const marker = opts.marker === undefined ? TRAINER_STATE_FILE : opts.marker;
  const fsync = opts.fsync ?? true;
  await Deno.mkdir(outputDir, { recursive: true });
  await cleanCheckpointLeftovers(outputDir);
  const tmp = join(outputDir, `.${CHECKPOINT_PREFIX}-${step}.tmp-${rand()}`);
  const final = join(outputDir, `${CHECKPOINT_PREFIX}-${step}`);
  await Deno.mkdir(tmp);
  try {
    await write(tmp);
    if (marker !== null && !await exists(join(tmp, marker))) {
      throw new Error(`checkpoint-${step}: expected write() to create ${marker} (the completion marker); it did not`);
    }
    if (fsync) await syncTree(tmp);
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
  let old: string | undefined;
  if (await exists(final, { followLinks: false })) {
    old = join(outputDir, `.${CHECKPOINT_PREFIX}-${step}.old-${rand()}`);
    await Deno.rename(final, old);
  }
  await Deno.rename(tmp, final);
  if (fsync) await syncPath(outputDir);
  if (old) await Deno.remove(old, { recursive: true });
  return final;
}

/**
 * The complete checkpoints in `outputDir`, sorted by step: folders named `checkpoint-<int>` holding `marker`
 * (default `trainer_state.json`). Temp folders, moved-aside folders and folders without the marker are ignored.
 */
export async function listCheckpoints(outputDir: string, marker = TRAINER_STATE_FILE): Promise<CheckpointInfo[]> {
  const out: CheckpointInfo[] = [];
  for (const e of await readDirSafe(outputDir)) {
    const m = NAME.exec(e.name);
    if (!m || !e.isDirectory) continue;
    const path = join(outputDir, e.name);
    if (marker && !await exists(join(path, marker))) continue;
    out.push({ step: Number(m[1]), name: e.name, path });
  }
  return out.sort((a, b) => a.step - b.step);
}

/** The complete checkpoint with the highest step, or undefined if there is none (HF's `get_last_checkpoint`). */
export async function latestCheckpoint(
  outputDir: string,
  marker = TRAINER_STATE_FILE,
): Promise<CheckpointInfo | undefined> {
  return (await listCheckpoints(outputDir, marker)).at(-1);
}

/**
 * HF's checkpoint rotation (`rotate_checkpoints`): with `saveTotalLimit` > 0, deletes the oldest complete checkpoints
 * until at most `max(saveTotalLimit, protected count)` remain. The most recent one (highest step) is always kept,
 * as are the checkpoints in `protect` (steps or paths, e.g. the best model's and the one just written).
 * A limit of 0 or undefined keeps everything. Returns the deleted paths.
 */
export async function pruneCheckpoints(
  outputDir: string,
  saveTotalLimit: number | undefined,
  protect: readonly (number | string)[] = [],
): Promise<string[]> {
  if (!saveTotalLimit || saveTotalLimit <= 0) return [];
  const ckpts = await listCheckpoints(outputDir);
  if (ckpts.length <= saveTotalLimit) return [];
  const isProtected = (c: CheckpointInfo) =>
    c === ckpts.at(-1) ||
    protect.some((p) => typeof p === "number" ? p === c.step : p.replace(/\/+$/, "").split("/").at(-1) === c.name);
  const keep = Math.max(saveTotalLimit, ckpts.filter(isProtected).length);
  const deleted: string[] = [];
  let remaining = ckpts.length;
  for (const c of ckpts) {
    if (remaining <= keep) break;
    if (isProtected(c)) continue;
    await Deno.remove(c.path, { recursive: true });
    deleted.push(c.path);
    remaining--;
  }
  return deleted;
}
