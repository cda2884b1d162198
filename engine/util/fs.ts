/**
 * The project's file-system helpers, written once: whether a path exists (or is a file / a folder), and atomic
 * writes (a temporary file beside the target, synced, then renamed over it: readers see the old file or the new
 * one, never half of it).
 *
 * @example
 * ```ts
 * if (!(await exists("out/run"))) await Deno.mkdir("out/run", { recursive: true });
 * await writeFileAtomic("out/run/state.json", JSON.stringify({ step: 3 }));
 * await writeAtomic("out/run/big.bin", async (f) => {
 *   for (const chunk of [new Uint8Array(8), new Uint8Array(8)]) await writeAll(f, chunk);
 * });
 * ```
 * @module
 */

/** What exists/isFile/isDir take: `followLinks: false` looks at a link itself (a dangling link exists). */
export interface StatOptions {
  followLinks?: boolean;
}

async function statOrUndefined(path: string, opts: StatOptions): Promise<Deno.FileInfo | undefined> {
  try {
    return opts.followLinks === false ? await Deno.lstat(path) : await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/** Whether something is at `path` (links followed unless `followLinks: false`); errors but NotFound propagate. */
export async function exists(path: string, opts: StatOptions = {}): Promise<boolean> {
  return (await statOrUndefined(path, opts)) !== undefined;
}

/** Whether `path` is a file (false when nothing is there); errors but NotFound propagate. */
export async function isFile(path: string): Promise<boolean> {
  return (await statOrUndefined(path, {}))?.isFile ?? false;
}

/** Whether `path` is a folder (false when nothing is there); errors but NotFound propagate. */
export async function isDir(path: string): Promise<boolean> {
  return (await statOrUndefined(path, {}))?.isDirectory ?? false;
}

/** Writes all of `data` (a single `write` may write less than it is given). */
export async function writeAll(file: Deno.FsFile, data: Uint8Array): Promise<void> {
  for (let done = 0; done < data.length;) done += await file.write(data.subarray(done));
}

/** A fresh hidden name beside `path` (`dir/.name.<random>.<tag>`), for a file or folder renamed onto it later. */
export function tempBeside(path: string, tag = "tmp"): string {
  const slash = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  const rand = crypto.randomUUID().replaceAll("-", "").slice(0, 12);
  return `${path.slice(0, slash + 1)}.${path.slice(slash + 1)}.${rand}.${tag}`;
}

/** Options of the atomic writes. */
export interface AtomicOptions {
  /** fsync the file before the rename (default true: the new content is on disk when the name points to it). */
  fsync?: boolean;
}

/**
 * Creates or replaces `path` atomically: `fill` writes a new temporary file beside it, which is synced and renamed
 * over `path`. On any error the temporary file is removed and the error rethrown; `path` is then untouched.
 */
export async function writeAtomic(
  path: string,
  fill: (file: Deno.FsFile) => Promise<void>,
  opts: AtomicOptions = {},
): Promise<void> {
  const tmp = tempBeside(path);
  try {
    const file = await Deno.open(tmp, { write: true, createNew: true });
    try {
      await fill(file);
      if (opts.fsync ?? true) await file.sync();
    } finally {
      file.close();
    }
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/** Writes text (UTF-8) or bytes to `path` atomically (see {@link writeAtomic}). */
export async function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  opts: AtomicOptions = {},
): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  await writeAtomic(path, (f) => writeAll(f, bytes), opts);
}
