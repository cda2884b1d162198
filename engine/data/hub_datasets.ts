/**
 * Datasets from the Hugging Face hub (`hf_hub_url` in dataset_info.json), downloaded from `HF_ENDPOINT` (default
 * https://huggingface.co) into `$WHETSTONE_CACHE/hub/datasets/<org>--<name>/<revision>/` (default
 * `~/.cache/whetstone/hub/datasets/...`) with {@linkcode downloadFile} (resumable).
 *
 * Which files, kept simple (HF datasets' own resolution also reads README.md `configs:` and loading scripts):
 * 1. With a `subset` (HF config name), the hub's parquet conversion: the files under `<subset>/<split>/` of the
 *    `refs/convert/parquet` revision.
 * 2. Otherwise the repository's data files on `main` (extensions json, jsonl, csv, parquet, txt; under `folder` when
 *    set; README.md, dataset_info.json and dot files skipped). When some file names carry a split keyword as HF's
 *    default patterns do (`train`/`training`, `validation`/`valid`/`dev`/`val`, `test`/`testing`/`eval`/`evaluation`,
 *    as a path part or bounded by `-._ ` or digits, e.g. `data/train-00000-of-00001.parquet`), those of `split` are
 *    taken; when none does, every file is the `train` split.
 * 3. When `main` has no such files, the parquet conversion's `default/<split>/`.
 * File lists come from `GET {endpoint}/api/datasets/{id}/tree/{revision}?recursive=true` (following `Link: rel=next`
 * pages), files from `{endpoint}/datasets/{id}/resolve/{revision}/{path}`. A completed download is recorded in a
 * manifest, and later loads of the same dataset, subset, split and folder use the cache without any request.
 * @module
 */
import { downloadFile, type DownloadProgress } from "../io/hub.ts";
import { DataError, fileType } from "./files.ts";
import { isFile } from "../util/fs.ts";

/** Options of {@linkcode resolveHubDataset}; unset ones come from the environment. */
export interface HubDatasetOptions {
  /** Hub base URL; default `$HF_ENDPOINT`, else https://huggingface.co. */
  endpoint?: string;
  /** Root of the dataset cache; default `$WHETSTONE_CACHE/hub/datasets`, else `~/.cache/whetstone/hub/datasets`. */
  cacheDir?: string;
  /** Bearer token; default `$HF_TOKEN` (or `$HUGGING_FACE_HUB_TOKEN`). */
  token?: string;
  /** Branch, tag or commit of the repository; default "main". */
  revision?: string;
  onProgress?: (p: DownloadProgress) => void;
  progressLine?: boolean;
}

/** What to fetch from a dataset repository. */
export interface HubDatasetRef {
  id: string;
  subset?: string;
  split?: string;
  folder?: string;
}

const PARQUET_REV = "refs/convert/parquet";
const IGNORED = new Set(["README.md", "config.json", "dataset_info.json", "dataset_infos.json", "dataset_dict.json"]);
const SPLIT_KEYWORDS: Record<string, string[]> = {
  train: ["train", "training"],
  validation: ["validation", "valid", "dev", "val"],
  test: ["test", "testing", "eval", "evaluation"],
};

/** `org/name`, or a legacy canonical `name` (the hub redirects those). */
const DATASET_ID = /^([A-Za-z0-9][\w.-]*\/)?[A-Za-z0-9][\w.-]*$/;

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined;
  }
}

/** The split a repository path belongs to by HF's default name patterns (file name first, then folders). */
export function splitOfPath(path: string): string | undefined {
  const name = path.slice(path.lastIndexOf("/") + 1), dirs = path.slice(0, path.lastIndexOf("/") + 1);
  const sep = "[-._ 0-9]";
  for (const [split, words] of Object.entries(SPLIT_KEYWORDS)) {
    for (const w of words) if (new RegExp(`(^|${sep})${w}${sep}`).test(name)) return split;
  }
  for (const [split, words] of Object.entries(SPLIT_KEYWORDS)) {
    for (const w of words) if (new RegExp(`(^|/|${sep})${w}/`).test(dirs)) return split;
  }
  return undefined;
}

interface TreeEntry {
  type: string;
  path: string;
  size?: number;
}

async function listTree(endpoint: string, id: string, revision: string, token?: string): Promise<TreeEntry[]> {
  const out: TreeEntry[] = [];
  let url: string | undefined = `${endpoint}/api/datasets/${id}/tree/${encodeURIComponent(revision)}?recursive=true`;
  for (let page = 0; url && page < 1000; page++) {
    let res: Response;
    try {
      res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
    } catch (e) {
      throw new DataError(
        `cannot list the files of hub dataset ${id} (${url}): ${(e as Error).message} (set HF_ENDPOINT to a ` +
          `reachable hub or mirror, or download the files and use file_name)`,
      );
    }
    if (!res.ok) {
      await res.body?.cancel();
      const hint = res.status === 401 || res.status === 403 || res.status === 404
        ? token ? " (dataset not found, or the token has no access)" : " (dataset not found, or gated: set HF_TOKEN)"
        : "";
      throw new DataError(
        `cannot list the files of hub dataset ${id}@${revision}: HTTP ${res.status} at ${url}${hint}`,
      );
    }
    const body = await res.json();
    if (!Array.isArray(body)) throw new DataError(`unexpected answer listing hub dataset ${id} at ${url}`);
    out.push(...body);
    const next = /<([^>]+)>;\s*rel="next"/.exec(res.headers.get("link") ?? "");
    url = next ? new URL(next[1], url).href : undefined;
  }
  return out;
}

function cacheRoot(opts: HubDatasetOptions): string {
  if (opts.cacheDir) return opts.cacheDir.replace(/(.)\/+$/, "$1");
  const w = env("WHETSTONE_CACHE");
  return w ? `${w}/hub/datasets` : `${env("HOME") ?? env("USERPROFILE") ?? "."}/.cache/whetstone/hub/datasets`;
}

function safePath(p: string): boolean {
  return p.length > 0 && !p.split("/").some((x) => x === "" || x === "." || x === "..") && !p.includes("\\");
}

/**
 * Downloads the data files of a hub dataset (see the module doc for which) and returns their local paths, in
 * repository order. Throws {@linkcode DataError} naming the dataset and URL when nothing fits.
 */
export async function resolveHubDataset(ref: HubDatasetRef, opts: HubDatasetOptions = {}): Promise<string[]> {
  const { id } = ref;
  if (!DATASET_ID.test(id) || id.includes("..")) {
    throw new DataError(`not a hub dataset id of the form org/name: ${JSON.stringify(id)}`);
  }
  const split = ref.split ?? "train", revision = opts.revision ?? "main";
  const key = JSON.stringify({ subset: ref.subset ?? null, split, folder: ref.folder ?? null });
  const tag = Array.from(new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(key))))
    .slice(0, 6).map((b) => b.toString(16).padStart(2, "0")).join("");
  const dir = `${cacheRoot(opts)}/${id.replace("/", "--")}`;
  const manifest = `${dir}/.whetstone-${revision.replace(/[\/\\]/g, "--")}-${tag}.json`;
  try {
    const m = JSON.parse(await Deno.readTextFile(manifest)) as { files: string[] };
    const ok = await Promise.all(m.files.map(isFile));
    if (m.files.length > 0 && ok.every(Boolean)) return m.files;
  } catch {
    // not cached yet
  }

  const endpoint = (opts.endpoint ?? env("HF_ENDPOINT") ?? "https://huggingface.co").replace(/\/+$/, "");
  const token = opts.token ?? env("HF_TOKEN") ?? env("HUGGING_FACE_HUB_TOKEN");
  let rev = revision;
  let files: string[];
  const fromParquet = async (config: string): Promise<string[]> => {
    const tree = await listTree(endpoint, id, PARQUET_REV, token);
    const prefix = `${config}/${split}/`;
    return tree.filter((e) => e.type === "file" && e.path.startsWith(prefix) && e.path.endsWith(".parquet"))
      .map((e) => e.path).sort();
  };
  if (ref.subset !== undefined) {
    rev = PARQUET_REV;
    files = await fromParquet(ref.subset);
    if (files.length === 0) {
      throw new DataError(
        `hub dataset ${id}: no parquet files for subset ${JSON.stringify(ref.subset)} and split ` +
          `${JSON.stringify(split)} in its parquet conversion (${endpoint}/datasets/${id}/tree/${PARQUET_REV})`,
      );
    }
  } else {
    const tree = await listTree(endpoint, id, revision, token);
    const under = ref.folder ? `${ref.folder.replace(/^\/+|\/+$/g, "")}/` : "";
    const data = tree.filter((e) => {
      if (e.type !== "file" || !e.path.startsWith(under)) return false;
      const name = e.path.slice(e.path.lastIndexOf("/") + 1);
      if (IGNORED.has(name) || name.startsWith(".") || name.startsWith("_")) return false;
      const t = fileType(e.path);
      return t !== undefined && t !== "arrow";
    }).map((e) => e.path);
    if (data.length === 0) {
      rev = PARQUET_REV;
      files = await fromParquet("default");
      if (files.length === 0) {
        throw new DataError(
          `hub dataset ${id}: no data files (json, jsonl, csv, parquet, txt)${
            under ? ` under ${under}` : ""
          } in ${endpoint}/datasets/${id}/tree/${revision}, and no parquet conversion for split ${
            JSON.stringify(split)
          }`,
        );
      }
    } else {
      const splits = data.map(splitOfPath);
      if (splits.some((s) => s !== undefined)) {
        files = data.filter((_, i) => splits[i] === split);
        if (files.length === 0) {
          const have = [...new Set(splits.filter((s) => s))].join(", ");
          throw new DataError(`hub dataset ${id}: no files of split ${JSON.stringify(split)} (it has ${have})`);
        }
      } else if (split === "train") {
        files = data;
      } else {
        throw new DataError(
          `hub dataset ${id}: its files name no split, so it has only "train", not ${JSON.stringify(split)}`,
        );
      }
      const types = new Set(files.map((f) => fileType(f)));
      if (types.size > 1) {
        throw new DataError(
          `hub dataset ${id}: the files of split ${split} mix types (${[...types].join(", ")}): ${files.join(", ")}`,
        );
      }
    }
  }

  const local: string[] = [];
  const revDir = `${dir}/${rev.replace(/[\/\\]/g, "--")}`;
  for (const f of files) {
    if (!safePath(f)) throw new DataError(`hub dataset ${id}: unsafe file path ${JSON.stringify(f)}`);
    const dest = `${revDir}/${f}`;
    const have = await isFile(dest);
    if (!have) {
      await Deno.mkdir(dest.slice(0, dest.lastIndexOf("/")), { recursive: true });
      const url = `${endpoint}/datasets/${id}/resolve/${encodeURIComponent(rev)}/${
        f.split("/").map(encodeURIComponent).join("/")
      }`;
      const ok = await downloadFile(url, dest, {
        token,
        file: `${id}/${f}`,
        onProgress: opts.onProgress,
        progressLine: opts.progressLine,
      });
      if (!ok) throw new DataError(`hub dataset ${id}: ${f} is listed but not found at ${url}`);
    }
    local.push(dest);
  }
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(manifest, JSON.stringify({ id, ...JSON.parse(key), revision: rev, files: local }) + "\n");
  return local;
}
