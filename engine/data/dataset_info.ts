/**
 * `dataset_info.json`: the registry of datasets a LLaMA-Factory data folder declares, parsed to
 * {@linkcode DatasetAttr} as `data/parser.py` does (keys, defaults and precedence of sources).
 *
 * Quirk kept from LLaMA-Factory: an entry with a `columns` object takes **every** column from it, the others becoming
 * unset (so `"columns": {"prompt": "text"}` has no `input`/`output`); likewise a `tags` object replaces every tag
 * (so `kto_en_demo`, whose tags name no `system_tag`, has none).
 * @module
 */
import { DataError } from "./files.ts";

/** Where a dataset comes from, in LLaMA-Factory's order of precedence. */
export type LoadFrom = "hf_hub" | "ms_hub" | "om_hub" | "script" | "cloud_file" | "file";

/** The converter a dataset uses. */
export type Formatting = "alpaca" | "sharegpt" | "openai";

/** Column names of a dataset (`columns` in dataset_info.json); unset when the dataset has no such column. */
export interface DatasetColumns {
  prompt?: string;
  query?: string;
  response?: string;
  history?: string;
  messages?: string;
  system?: string;
  tools?: string;
  images?: string;
  videos?: string;
  audios?: string;
  chosen?: string;
  rejected?: string;
  kto_tag?: string;
}

/** Role tags of sharegpt/openai messages (`tags` in dataset_info.json). */
export interface DatasetTags {
  role_tag?: string;
  content_tag?: string;
  user_tag?: string;
  assistant_tag?: string;
  observation_tag?: string;
  function_tag?: string;
  system_tag?: string;
}

/** One dataset of dataset_info.json, resolved (LLaMA-Factory's `DatasetAttr`). */
export interface DatasetAttr {
  /** The key in dataset_info.json (or the hub id with `dataset_dir: ONLINE`). */
  name: string;
  loadFrom: LoadFrom;
  /** The hub id, script folder, cloud path or file name, according to `loadFrom`. */
  datasetName: string;
  formatting: Formatting;
  ranking: boolean;
  /** HF config name. */
  subset?: string;
  /** Default "train". */
  split: string;
  /** HF `data_dir`: a folder of the hub repository. */
  folder?: string;
  /** Sample exactly this many rows (a seeded permutation, then resampling with replacement). */
  numSamples?: number;
  columns: DatasetColumns;
  tags: DatasetTags;
  /** The raw entry, for messages. */
  entry: Record<string, unknown>;
}

/** Column names, in LLaMA-Factory's order. */
export const COLUMN_NAMES = [
  "prompt",
  "query",
  "response",
  "history",
  "messages",
  "system",
  "tools",
  "images",
  "videos",
  "audios",
  "chosen",
  "rejected",
  "kto_tag",
] as const satisfies readonly (keyof DatasetColumns)[];

/** Tag names, in LLaMA-Factory's order. */
export const TAG_NAMES = [
  "role_tag",
  "content_tag",
  "user_tag",
  "assistant_tag",
  "observation_tag",
  "function_tag",
  "system_tag",
] as const satisfies readonly (keyof DatasetTags)[];

/** Columns when an entry has no `columns` object. */
export const DEFAULT_COLUMNS: Readonly<DatasetColumns> = {
  prompt: "instruction",
  query: "input",
  response: "output",
  messages: "conversations",
};

/** Tags when an entry has no `tags` object. */
export const DEFAULT_TAGS: Readonly<Required<DatasetTags>> = {
  role_tag: "from",
  content_tag: "value",
  user_tag: "human",
  assistant_tag: "gpt",
  observation_tag: "observation",
  function_tag: "function_call",
  system_tag: "system",
};

const ENTRY_KEYS = new Set([
  "hf_hub_url",
  "ms_hub_url",
  "om_hub_url",
  "script_url",
  "cloud_file_name",
  "file_name",
  "formatting",
  "ranking",
  "subset",
  "split",
  "folder",
  "num_samples",
  "columns",
  "tags",
]);
const FORMATTINGS: readonly Formatting[] = ["alpaca", "sharegpt", "openai"];

/** The file name LLaMA-Factory reads in `dataset_dir`. */
export const DATASET_INFO_FILE = "dataset_info.json";

/**
 * Splits a `dataset` argument into names: a comma list (`"a, b"`) or an array of names (each may itself be a comma
 * list); blanks are dropped.
 */
export function parseDatasetNames(value: string | readonly string[] | undefined | null): string[] {
  if (value === undefined || value === null) return [];
  const items = typeof value === "string" ? [value] : value;
  return items.flatMap((s) => String(s).split(",")).map((s) => s.trim()).filter((s) => s.length > 0);
}

/** Reads `${dir}/dataset_info.json`; errors say which file and why. */
export async function readDatasetInfo(dir: string): Promise<Record<string, unknown>> {
  const path = `${dir.replace(/\/+$/, "")}/${DATASET_INFO_FILE}`;
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new DataError(`cannot open ${path}: no such file (dataset_dir is ${JSON.stringify(dir)})`);
    }
    throw new DataError(`cannot open ${path}: ${(e as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new DataError(`${path} is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new DataError(
      `${path} should be a JSON object of dataset entries, got ${Array.isArray(value) ? "an array" : typeof value}`,
    );
  }
  return value as Record<string, unknown>;
}

function optString(entry: Record<string, unknown>, key: string, where: string): string | undefined {
  const v = entry[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw new DataError(`${where}: "${key}" should be a string, got ${JSON.stringify(v)}`);
  return v;
}

function stringMap<K extends string>(
  obj: unknown,
  names: readonly K[],
  key: string,
  where: string,
  warnings: string[],
): Partial<Record<K, string>> {
  if (typeof obj !== "object" || obj === null || Array.isArray(obj)) {
    throw new DataError(`${where}: "${key}" should be an object, got ${JSON.stringify(obj)}`);
  }
  const out: Partial<Record<K, string>> = {};
  for (const [k, v] of Object.entries(obj)) {
    if (!(names as readonly string[]).includes(k)) {
      warnings.push(`${where}: unknown ${key} key ${JSON.stringify(k)} ignored (known: ${names.join(", ")})`);
      continue;
    }
    if (v === null || v === undefined) continue;
    if (typeof v !== "string") {
      throw new DataError(`${where}: ${key}.${k} should be a string, got ${JSON.stringify(v)}`);
    }
    out[k as K] = v;
  }
  return out;
}

/**
 * Resolves one dataset_info.json entry. The source is, in LLaMA-Factory's precedence: a hub URL (`hf_hub_url`, else
 * `ms_hub_url`, else `om_hub_url`), then `script_url`, `cloud_file_name`, `file_name`. Unknown keys give warnings.
 */
export function parseDatasetAttr(name: string, entry: unknown, warnings: string[] = []): DatasetAttr {
  const where = `dataset_info.json entry ${JSON.stringify(name)}`;
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)) {
    throw new DataError(`${where} should be an object, got ${JSON.stringify(entry)}`);
  }
  const e = entry as Record<string, unknown>;
  for (const k of Object.keys(e)) {
    if (!ENTRY_KEYS.has(k)) warnings.push(`${where}: unknown key ${JSON.stringify(k)} ignored`);
  }
  const hf = optString(e, "hf_hub_url", where), ms = optString(e, "ms_hub_url", where);
  const om = optString(e, "om_hub_url", where), script = optString(e, "script_url", where);
  const cloud = optString(e, "cloud_file_name", where), file = optString(e, "file_name", where);
  let loadFrom: LoadFrom, datasetName: string;
  if (hf !== undefined) [loadFrom, datasetName] = ["hf_hub", hf];
  else if (ms !== undefined) [loadFrom, datasetName] = ["ms_hub", ms];
  else if (om !== undefined) [loadFrom, datasetName] = ["om_hub", om];
  else if (script !== undefined) [loadFrom, datasetName] = ["script", script];
  else if (cloud !== undefined) [loadFrom, datasetName] = ["cloud_file", cloud];
  else if (file !== undefined) [loadFrom, datasetName] = ["file", file];
  else {
    throw new DataError(
      `${where} names no source: expected one of file_name, hf_hub_url, ms_hub_url, om_hub_url, script_url, ` +
        `cloud_file_name`,
    );
  }

  const formatting = (optString(e, "formatting", where) ?? "alpaca") as Formatting;
  if (!FORMATTINGS.includes(formatting)) {
    throw new DataError(
      `${where}: formatting should be one of ${FORMATTINGS.join(", ")}, got ${JSON.stringify(formatting)}`,
    );
  }
  const ranking = e.ranking ?? false;
  if (typeof ranking !== "boolean") {
    throw new DataError(`${where}: ranking should be true or false, got ${JSON.stringify(ranking)}`);
  }
  const numSamples = e.num_samples ?? undefined;
  if (numSamples !== undefined && (typeof numSamples !== "number" || !Number.isInteger(numSamples) || numSamples < 0)) {
    throw new DataError(`${where}: num_samples should be a non-negative integer, got ${JSON.stringify(numSamples)}`);
  }
  const columns: DatasetColumns = e.columns === undefined
    ? { ...DEFAULT_COLUMNS }
    : stringMap(e.columns, COLUMN_NAMES, "columns", where, warnings);
  const tags: DatasetTags = e.tags === undefined
    ? { ...DEFAULT_TAGS }
    : stringMap(e.tags, TAG_NAMES, "tags", where, warnings);
  return {
    name,
    loadFrom,
    datasetName,
    formatting,
    ranking,
    subset: optString(e, "subset", where),
    split: optString(e, "split", where) ?? "train",
    folder: optString(e, "folder", where),
    numSamples: numSamples as number | undefined,
    columns,
    tags,
    entry: e,
  };
}

/** A dataset named by its hub id with `dataset_dir: ONLINE`: LLaMA-Factory's defaults (alpaca columns). */
export function onlineDatasetAttr(id: string): DatasetAttr {
  return {
    name: id,
    loadFrom: "hf_hub",
    datasetName: id,
    formatting: "alpaca",
    ranking: false,
    split: "train",
    columns: { ...DEFAULT_COLUMNS },
    tags: { ...DEFAULT_TAGS },
    entry: { hf_hub_url: id },
  };
}

/** Edit distance, for suggestions. */
function distance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j];
      prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length];
}

/** Up to `n` names of `known` close to `name` (by edit distance, or containing each other), best first. */
export function closeNames(name: string, known: Iterable<string>, n = 5): string[] {
  const lower = name.toLowerCase();
  const scored: [number, string][] = [];
  for (const k of known) {
    const kl = k.toLowerCase();
    const d = distance(lower, kl);
    const contains = kl.includes(lower) || lower.includes(kl);
    if (d <= Math.max(2, Math.floor(lower.length / 3)) || contains) scored.push([contains ? Math.min(d, 1.5) : d, k]);
  }
  return scored.sort((a, b) => a[0] - b[0] || a[1].localeCompare(b[1])).slice(0, n).map(([, k]) => k);
}

/**
 * Looks up dataset names in a parsed dataset_info.json. A name that is not there is an error listing close names
 * (and, for a name that looks like a file path, how to register a file).
 */
export function getDatasetAttrs(
  names: readonly string[],
  info: Record<string, unknown>,
  where = DATASET_INFO_FILE,
  warnings: string[] = [],
): DatasetAttr[] {
  return names.map((name) => {
    if (!Object.hasOwn(info, name)) {
      const close = closeNames(name, Object.keys(info));
      let msg = `undefined dataset ${JSON.stringify(name)} in ${where}`;
      msg += close.length ? `; close names: ${close.join(", ")}` : `; it defines ${Object.keys(info).length} datasets`;
      if (/[\/\\]|\.(json|jsonl|csv|parquet|txt)$/i.test(name)) {
        const base = name.replace(/^.*[\/\\]/, "").replace(/\.[^.]*$/, "");
        msg += `. "dataset" takes names defined in ${DATASET_INFO_FILE}, not paths: to use a file, add an entry such ` +
          `as {"${base}": {"file_name": "${name.replace(/^.*[\/\\]/, "")}"}} and put the file in dataset_dir`;
      }
      throw new DataError(msg);
    }
    return parseDatasetAttr(name, info[name], warnings);
  });
}
