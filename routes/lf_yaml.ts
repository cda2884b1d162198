/**
 * The LLaMA-Factory runner's YAML: the training arguments of a `POST /sessions {runner: "llamafactory"}` request
 * turned into the file `llamafactory-cli train` reads, as LlamaBoard writes `<output_dir>/training_args.yaml`
 * before it launches a run (webui/runner.py). Only keys LLaMA-Factory accepts go in: Whetstone's own keys
 * (`executor`, `bucket`) are dropped with a warning, and any key LLaMA-Factory's argument parser would refuse is a
 * 400 naming it. The values are LF's to check (its parser runs in the child); the paths are confined to the
 * server's roots and written absolute, comma-list keys as comma strings (as LlamaBoard joins `dataset`).
 * @module
 */
import { join } from "node:path";
import { stringifyYaml } from "../deps.ts";
import { KEY_ALIASES, KEY_TABLE, KEYS, WHETSTONE_KEYS } from "../engine/config/keys.ts";
import { badRequest } from "./http.ts";
import type { Roots } from "./paths.ts";

/** The file name LlamaBoard gives the arguments of a run it launches (extras/constants.py `TRAINING_ARGS`). */
export const LF_ARGS_FILE = "training_args.yaml";

/** Keys naming one model (a local folder or a hub id). */
const MODEL_KEYS = ["model_name_or_path", "ref_model", "reward_model"] as const;
/** Keys naming a comma list of models or adapters. */
const MODEL_LIST_KEYS = ["adapter_name_or_path", "ref_model_adapters", "reward_model_adapters"] as const;
/** Keys naming a local file or folder the run reads or writes (config keys may instead hold a JSON object). */
const PATH_KEYS = [
  "output_dir",
  "cache_dir",
  "tokenized_path",
  "media_dir",
  "logging_dir",
  "export_dir",
  "swanlab_logdir",
  "profiler_output_dir",
  "ray_storage_path",
  "deepspeed",
  "fsdp_config",
  "accelerator_config",
  "new_special_tokens_config",
] as const;

/** Whether LLaMA-Factory's `get_train_args` accepts `key` (Whetstone's own keys excluded). */
export function isLfKey(key: string): boolean {
  return (key in KEYS && !(key in WHETSTONE_KEYS)) || key in KEY_ALIASES;
}

/** A run's arguments as LLaMA-Factory takes them. */
export interface LfArgs {
  /** The keys, paths resolved, in the order given. */
  args: Record<string, unknown>;
  /** The output folder (absolute, inside the roots). */
  outputDir: string;
  /** What was dropped or filled in. */
  warnings: string[];
}

const commaList = (field: string, v: unknown): string[] => {
  const items = Array.isArray(v) ? v : typeof v === "string" ? v.split(",") : undefined;
  if (!items || items.some((x) => typeof x !== "string")) {
    throw badRequest(field, `expected a comma list or a list of strings, got ${JSON.stringify(v)}`);
  }
  return (items as string[]).map((s) => s.trim()).filter(Boolean);
};

/**
 * Checks and converts the request's keys (already merged over a `config` file, `runner` removed). A key
 * LLaMA-Factory lacks is a 400 naming it; `model_name_or_path` and `output_dir` are required; `do_train` is set
 * (as LlamaBoard sets it) unless given.
 */
export async function lfArgs(config: Record<string, unknown>, roots: Roots): Promise<LfArgs> {
  const args: Record<string, unknown> = {};
  const warnings: string[] = [];
  for (const [key, value] of Object.entries(config)) {
    if (key in WHETSTONE_KEYS) {
      warnings.push(`${key}: Whetstone's own key, not passed to llamafactory-cli (dropped)`);
      continue;
    }
    if (!isLfKey(key)) {
      throw badRequest(key, `${key} is not an argument of LLaMA-Factory's train (llamafactory-cli would refuse it)`);
    }
    if (value === undefined) continue;
    args[key] = value;
  }
  for (const key of ["model_name_or_path", "output_dir"]) {
    if (typeof args[key] !== "string" || !args[key]) {
      throw badRequest(key, `${key}: required (a string), got ${JSON.stringify(args[key] ?? null)}`);
    }
  }
  for (const key of MODEL_KEYS) {
    if (typeof args[key] === "string") args[key] = await roots.modelPath(key, args[key] as string);
    else if (args[key] != null) throw badRequest(key, `expected a path or hub id, got ${JSON.stringify(args[key])}`);
  }
  for (const key of MODEL_LIST_KEYS) {
    if (args[key] == null) continue;
    const out: string[] = [];
    for (const p of commaList(key, args[key])) out.push(await roots.modelPath(key, p));
    args[key] = out.join(",");
  }
  for (const key of PATH_KEYS) {
    const v = args[key];
    if (v == null || typeof v === "object" || (typeof v === "string" && v.trimStart().startsWith("{"))) continue;
    if (typeof v !== "string") throw badRequest(key, `expected a path, got ${JSON.stringify(v)}`);
    args[key] = await roots.path(key, v);
  }
  if (typeof args.dataset_dir === "string" && args.dataset_dir !== "ONLINE") {
    args.dataset_dir = await roots.path("dataset_dir", args.dataset_dir);
  }
  if (typeof args.resume_from_checkpoint === "string") {
    args.resume_from_checkpoint = await roots.path("resume_from_checkpoint", args.resume_from_checkpoint);
  }
  for (const [key, value] of Object.entries(args)) {
    if (!Array.isArray(value)) continue;
    if (KEY_TABLE[key]?.kind === "list") args[key] = commaList(key, value).join(",");
  }
  if (!("do_train" in args)) args.do_train = true;
  return { args, outputDir: args.output_dir as string, warnings };
}

/**
 * A float as PyYAML reads it as a float: YAML 1.1's float needs a dot, so `2e-7` (JS's form) would be a string
 * there and becomes `2.0e-7`.
 */
export function yaml11Float(x: number): string {
  const s = String(x);
  return /e/.test(s) && !s.includes(".") ? s.replace("e", ".0e") : s;
}

/**
 * The YAML text of `args` (a header comment, then the keys) in YAML 1.1, as LLaMA-Factory reads it with PyYAML:
 * strings such as `yes`, `on` quoted, and floats in exponent form written with a dot.
 */
export function lfYamlText(args: Record<string, unknown>): string {
  const floats: string[] = [];
  const mark = (v: unknown): unknown => {
    if (typeof v === "number" && Number.isFinite(v) && !Number.isInteger(v) && /e/.test(String(v))) {
      floats.push(yaml11Float(v));
      return `__whetstone_float_${floats.length - 1}__`;
    }
    if (Array.isArray(v)) return v.map(mark);
    if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, mark(x)]));
    return v;
  };
  const text = stringifyYaml(mark(args), { version: "1.1" })
    .replace(/__whetstone_float_(\d+)__/g, (_, i) => floats[Number(i)]);
  return "# written by Whetstone for `llamafactory-cli train` (LLaMA-Factory's keys only)\n" + text;
}

/** Writes `<output_dir>/training_args.yaml` (creating the folder) and returns its path. */
export async function writeLfYaml(outputDir: string, args: Record<string, unknown>): Promise<string> {
  await Deno.mkdir(outputDir, { recursive: true });
  const path = join(outputDir, LF_ARGS_FILE);
  await Deno.writeTextFile(path, lfYamlText(args));
  return path;
}
