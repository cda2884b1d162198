/**
 * Model resolution: a local folder as is, or a hub id (`org/name`) downloaded from `HF_ENDPOINT`
 * (default https://huggingface.co) into `$WHETSTONE_CACHE/hub/<org>--<name>/<revision>/`
 * (default `~/.cache/whetstone/hub/...`). Each file goes to `<file>.partial` and is renamed when complete; an
 * interrupted download resumes with an HTTP `Range` request. Files already complete in the cache are not fetched
 * again, and once a model is complete its cache folder is used without any request (delete it to refresh).
 * @module
 */
import { WEIGHTS_FILE, WEIGHTS_INDEX_FILE } from "./hf_folder.ts";
import { isDir, isFile } from "../util/fs.ts";

/** Progress of one file's download. `total` is unknown when the server does not say. */
export interface DownloadProgress {
  file: string;
  done: number;
  total?: number;
}

/** Options of {@linkcode resolveModel}. Unset ones come from the environment. */
export interface ResolveOptions {
  /** Branch, tag or commit; default "main". */
  revision?: string;
  /** Hub base URL; default `$HF_ENDPOINT`, else https://huggingface.co. */
  endpoint?: string;
  /** Root of the hub cache; default `$WHETSTONE_CACHE/hub`, else `~/.cache/whetstone/hub`. */
  cacheDir?: string;
  /** Bearer token; default `$HF_TOKEN` (or the legacy `$HUGGING_FACE_HUB_TOKEN`). */
  token?: string;
  /** Called as bytes arrive (per chunk) and once when each file completes. */
  onProgress?: (p: DownloadProgress) => void;
  /** Print a progress line on stderr; default: when stderr is a terminal. */
  progressLine?: boolean;
  /** More files to fetch if the repository has them (e.g. "tokenizer.model", "chat_template.jinja"). */
  optionalFiles?: string[];
}

/** Files a model must have besides its weights. */
export const REQUIRED_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json"] as const;
/** Files fetched when the repository has them. */
export const OPTIONAL_FILES = ["generation_config.json", "special_tokens_map.json"] as const;

const MANIFEST = ".whetstone-complete.json";
const HUB_ID = /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/;

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined; // no env permission
  }
}

/** Whether `s` has the form of a hub id, `org/name`. */
export function isHubId(s: string): boolean {
  return HUB_ID.test(s) && !s.includes("..");
}

/** The cache folder of one revision of a hub model. */
export function hubCacheDir(id: string, revision = "main", root?: string): string {
  if (!isHubId(id)) throw new Error(`not a hub id of the form org/name: ${JSON.stringify(id)}`);
  root ??= env("WHETSTONE_CACHE") ? `${env("WHETSTONE_CACHE")}/hub` : undefined;
  root ??= `${env("HOME") ?? env("USERPROFILE") ?? "."}/.cache/whetstone/hub`;
  const rev = revision.replace(/[\/\\]/g, "--");
  if (!rev || rev.startsWith(".")) throw new Error(`invalid revision ${JSON.stringify(revision)}`);
  return `${root.replace(/(.)\/+$/, "$1")}/${id.replace("/", "--")}/${rev}`;
}

function safeName(file: string): boolean {
  return file.length > 0 && !file.split("/").some((p) => p === "" || p === "." || p === "..") && !file.includes("\\");
}

function mb(n: number): string {
  return `${(n / 1e6).toFixed(1)} MB`;
}

/** Writes a progress line on stderr, at most every 100 ms, and a newline when the file is done. */
function stderrProgress(): (p: DownloadProgress, end: boolean) => void {
  const enc = new TextEncoder();
  let last = 0;
  return (p, end) => {
    const now = Date.now();
    if (!end && now - last < 100) return;
    last = now;
    const pct = p.total ? ` (${Math.floor((100 * p.done) / p.total)}%)` : "";
    const line = `\r\x1b[K${p.file}: ${mb(p.done)}${p.total !== undefined ? ` / ${mb(p.total)}` : ""}${pct}`;
    Deno.stderr.writeSync(enc.encode(end ? line + "\n" : line));
  };
}

/** How one download should be made. */
export interface DownloadOptions {
  token?: string;
  /** Name shown in progress reports. */
  file?: string;
  onProgress?: (p: DownloadProgress) => void;
  progressLine?: boolean;
}

/**
 * Downloads `url` to `dest` through `dest.partial`, resuming a partial file with a `Range` request (a server that
 * answers 200 instead of 206 gets the file from the start). Returns false on 404 (nothing written), throws on other
 * failures, keeping the partial file for the next try.
 */
export async function downloadFile(url: string, dest: string, opts: DownloadOptions = {}): Promise<boolean> {
  const partial = `${dest}.partial`;
  const file = opts.file ?? dest.slice(dest.lastIndexOf("/") + 1);
  const line = (opts.progressLine ?? Deno.stderr.isTerminal()) ? stderrProgress() : undefined;
  for (let attempt = 0;; attempt++) {
    let have = 0;
    try {
      have = (await Deno.stat(partial)).size;
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    const headers = new Headers({ "accept-encoding": "identity" });
    if (opts.token) headers.set("authorization", `Bearer ${opts.token}`);
    if (have > 0) headers.set("range", `bytes=${have}-`);
    let res: Response;
    try {
      res = await fetch(url, { headers });
    } catch (e) {
      throw new Error(`download of ${url} failed: ${(e as Error).message}`);
    }
    const code = res.headers.get("x-error-code");
    if (res.status === 404 && code !== "RepoNotFound" && code !== "RevisionNotFound") {
      await res.body?.cancel();
      return false;
    }
    let append = false, total: number | undefined;
    if (res.status === 206) {
      const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers.get("content-range") ?? "");
      if (!m || Number(m[1]) !== have) {
        await res.body?.cancel();
        if (attempt > 0) throw new Error(`download of ${url}: bad Content-Range ${res.headers.get("content-range")}`);
        await Deno.remove(partial); // start over without a range
        continue;
      }
      append = true;
      total = m[3] === "*" ? undefined : Number(m[3]);
    } else if (res.status === 416 && have > 0 && attempt === 0) {
      await res.body?.cancel(); // the partial file is not a prefix of this file (or is whole): start over
      await Deno.remove(partial);
      continue;
    } else if (!res.ok) {
      await res.body?.cancel();
      const hint = res.status === 401 || res.status === 403 || code === "RepoNotFound"
        ? opts.token
          ? " (repository not found, or the token has no access)"
          : " (repository not found, or gated: set HF_TOKEN)"
        : "";
      throw new Error(
        `download of ${url} failed: HTTP ${res.status} ${res.statusText}${code ? ` ${code}` : ""}${hint}`,
      );
    } else {
      have = 0;
      const len = res.headers.get("content-length");
      const enc = res.headers.get("content-encoding");
      if (len !== null && (!enc || enc === "identity")) total = Number(len);
    }
    const out = await Deno.open(partial, { write: true, create: true, append, truncate: !append });
    let done = have;
    const report = (end: boolean) => {
      const p = { file, done, total };
      opts.onProgress?.(p);
      line?.(p, end);
    };
    try {
      if (res.body) {
        for await (const chunk of res.body) {
          for (let w = 0; w < chunk.length;) w += await out.write(chunk.subarray(w));
          done += chunk.length;
          report(false);
        }
      }
    } catch (e) {
      throw new Error(`download of ${url} interrupted at ${done} bytes (rerun to resume): ${(e as Error).message}`);
    } finally {
      out.close();
    }
    if (total !== undefined && done !== total) {
      throw new Error(`download of ${url} ended at ${done} of ${total} bytes (rerun to resume)`);
    }
    report(true);
    await Deno.rename(partial, dest);
    return true;
  }
}

/**
 * Resolves a model to a local folder: an existing folder is returned as is; a hub id `org/name` is downloaded
 * (config, tokenizer files, weights: `model.safetensors` or the index and its shards) into the cache, and the cache
 * folder returned. Throws naming the file and URL when a required file is missing.
 */
export async function resolveModel(idOrPath: string, opts: ResolveOptions = {}): Promise<string> {
  if (await isDir(idOrPath)) return idOrPath;
  if (!isHubId(idOrPath)) {
    throw new Error(`${JSON.stringify(idOrPath)} is neither a folder nor a hub model id of the form org/name`);
  }
  const id = idOrPath;
  const revision = opts.revision ?? "main";
  const dir = hubCacheDir(id, revision, opts.cacheDir);
  const wanted = [...REQUIRED_FILES, ...OPTIONAL_FILES, ...(opts.optionalFiles ?? [])];
  for (const f of wanted) if (!safeName(f)) throw new Error(`invalid file name ${JSON.stringify(f)}`);

  // A complete cache: no requests at all.
  try {
    const m = JSON.parse(await Deno.readTextFile(`${dir}/${MANIFEST}`)) as { tried: string[]; files: string[] };
    const present = await Promise.all(m.files.map((f) => isFile(`${dir}/${f}`)));
    if (present.every(Boolean) && wanted.every((f) => m.tried.includes(f))) return dir;
  } catch {
    // no manifest (or a bad one): check file by file
  }

  await Deno.mkdir(dir, { recursive: true });
  const endpoint = (opts.endpoint ?? env("HF_ENDPOINT") ?? "https://huggingface.co").replace(/\/+$/, "");
  const token = opts.token ?? env("HF_TOKEN") ?? env("HUGGING_FACE_HUB_TOKEN");
  const urlOf = (file: string) =>
    `${endpoint}/${id}/resolve/${encodeURIComponent(revision)}/${file.split("/").map(encodeURIComponent).join("/")}`;
  const tried: string[] = [], files: string[] = [];
  const fetchFile = async (file: string, required: boolean): Promise<boolean> => {
    tried.push(file);
    const dest = `${dir}/${file}`;
    let ok = await isFile(dest);
    if (!ok) {
      if (file.includes("/")) await Deno.mkdir(dest.slice(0, dest.lastIndexOf("/")), { recursive: true });
      ok = await downloadFile(urlOf(file), dest, {
        token,
        file: `${id}/${file}`,
        onProgress: opts.onProgress,
        progressLine: opts.progressLine,
      });
    }
    if (ok) files.push(file);
    else if (required) throw new Error(`${id}@${revision}: required file ${file} not found at ${urlOf(file)}`);
    return ok;
  };

  for (const f of REQUIRED_FILES) await fetchFile(f, true);
  for (const f of [...OPTIONAL_FILES, ...(opts.optionalFiles ?? [])]) await fetchFile(f, false);

  const haveIndex = await isFile(`${dir}/${WEIGHTS_INDEX_FILE}`);
  if (haveIndex || !await fetchFile(WEIGHTS_FILE, false)) {
    if (!await fetchFile(WEIGHTS_INDEX_FILE, false)) {
      throw new Error(
        `${id}@${revision}: no safetensors weights: neither ${urlOf(WEIGHTS_FILE)} nor ${
          urlOf(WEIGHTS_INDEX_FILE)
        } exists (only safetensors weights are supported)`,
      );
    }
    let shards: string[];
    try {
      const index = JSON.parse(await Deno.readTextFile(`${dir}/${WEIGHTS_INDEX_FILE}`));
      shards = [...new Set(Object.values(index.weight_map ?? {}) as string[])];
    } catch (e) {
      await Deno.remove(`${dir}/${WEIGHTS_INDEX_FILE}`).catch(() => {});
      throw new Error(`${id}@${revision}: ${urlOf(WEIGHTS_INDEX_FILE)} is not a valid index: ${(e as Error).message}`);
    }
    if (shards.length === 0) throw new Error(`${id}@${revision}: ${WEIGHTS_INDEX_FILE} has an empty weight_map`);
    for (const s of shards) {
      if (typeof s !== "string" || !safeName(s) || s.includes("/")) {
        throw new Error(`${id}@${revision}: ${WEIGHTS_INDEX_FILE} names an invalid shard ${JSON.stringify(s)}`);
      }
      await fetchFile(s, true);
    }
  }
  await Deno.writeTextFile(`${dir}/${MANIFEST}`, JSON.stringify({ id, revision, tried, files }) + "\n");
  return dir;
}
