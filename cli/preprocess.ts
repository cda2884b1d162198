/**
 * `deno task preprocess config.yaml [key=value ...] [--out train.jsonl] [--eval-out eval.jsonl]`: loads the datasets
 * of a LLaMA-Factory style YAML config, applies the template and the stage processing, and writes each processed
 * example as one JSON line (LF's field names) in dataset order, before any shuffling — Whetstone's counterpart of LF's
 * `tokenized_path` preprocessing run.
 *
 * Keys read: `model_name_or_path` (a local folder with tokenizer.json), `template`, `stage`, `dataset`,
 * `eval_dataset`, `dataset_dir`, `cutoff_len`, `max_samples`, `val_size`, `mix_strategy`, `interleave_probs`, `seed`,
 * `packing`, `neat_packing`, `train_on_prompt`, `mask_history`, `preprocessing_batch_size`, `enable_thinking`,
 * `preserve_thinking`, `tool_format`, `default_system`; other keys (training settings) are ignored. Overrides
 * `key=value` are parsed as YAML scalars, like LF's OmegaConf dot-list.
 * @module
 */
import { parseYaml } from "../deps.ts";
import { loadDatasets, type LoadDatasetsArgs } from "../engine/data/loader.ts";
import { processDataset, type ProcessResult, type Stage } from "../engine/data/process.ts";
import { getTemplate } from "../engine/data/template.ts";
import { loadTokenizer } from "../engine/data/tokenizer.ts";

/** A flat config: LF's argument names to values. */
export type PreprocessConfig = Record<string, unknown>;

/** Parsed command line. */
export interface PreprocessCommand {
  config: PreprocessConfig;
  out?: string;
  evalOut?: string;
}

const USAGE = "usage: deno task preprocess config.yaml [key=value ...] [--out train.jsonl] [--eval-out eval.jsonl]";

/** Reads the config file (YAML or JSON) and applies `key=value` overrides. */
export async function parsePreprocessArgs(args: readonly string[]): Promise<PreprocessCommand> {
  let file: string | undefined;
  let out: string | undefined;
  let evalOut: string | undefined;
  const overrides: [string, unknown][] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--out" || a === "--eval-out") {
      const v = args[++i];
      if (v === undefined) throw new Error(`${a} expects a file path\n${USAGE}`);
      if (a === "--out") out = v;
      else evalOut = v;
    } else if (a.startsWith("--out=")) out = a.slice(6);
    else if (a.startsWith("--eval-out=")) evalOut = a.slice(11);
    else if (/^[A-Za-z_][\w.]*=/.test(a)) {
      const at = a.indexOf("=");
      overrides.push([a.slice(0, at), parseYaml(a.slice(at + 1))]);
    } else if (file === undefined && /\.(ya?ml|json)$/.test(a)) file = a;
    else throw new Error(`unexpected argument "${a}"\n${USAGE}`);
  }
  if (file === undefined) throw new Error(`expected a config file (.yaml, .yml or .json)\n${USAGE}`);
  let config: unknown;
  const text = await Deno.readTextFile(file);
  try {
    config = file.endsWith(".json") ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    throw new Error(`${file} does not parse: ${(e as Error).message}`, { cause: e });
  }
  if (config === null || config === undefined) config = {};
  if (typeof config !== "object" || Array.isArray(config)) {
    throw new Error(
      `${file}: expected a mapping of argument names to values, got ${
        Array.isArray(config) ? "a list" : typeof config
      }`,
    );
  }
  const merged = { ...(config as PreprocessConfig) };
  for (const [k, v] of overrides) merged[k] = v;
  return { config: merged, out, evalOut };
}

function opt<T>(c: PreprocessConfig, key: string, type: "string" | "number" | "boolean"): T | undefined {
  const v = c[key];
  if (v === undefined || v === null) return undefined;
  const actual: string = typeof v;
  if (actual !== type) throw new Error(`${key}: expected a ${type}, got ${JSON.stringify(v)}`);
  return v as T;
}

/** Loads, templates and processes the datasets of a config. */
export async function preprocess(
  c: PreprocessConfig,
): Promise<{ train: ProcessResult; eval?: ProcessResult; warnings: string[] }> {
  const model = opt<string>(c, "model_name_or_path", "string");
  if (!model) throw new Error("model_name_or_path: expected a local model folder with tokenizer.json");
  const tokenizer = await loadTokenizer(model).catch((e) => {
    throw new Error(
      `model_name_or_path "${model}": ${(e as Error).message} (hub model ids are not downloaded; give a local folder)`,
      { cause: e },
    );
  });
  const stage = (opt<string>(c, "stage", "string") ?? "sft") as Stage;
  const trainOnPrompt = opt<boolean>(c, "train_on_prompt", "boolean");
  const template = getTemplate(tokenizer, {
    template: opt<string>(c, "template", "string") ?? null,
    toolFormat: opt<string>(c, "tool_format", "string"),
    defaultSystem: opt<string>(c, "default_system", "string"),
    enableThinking: c.enable_thinking === null ? null : opt<boolean>(c, "enable_thinking", "boolean"),
    preserveThinking: opt<boolean>(c, "preserve_thinking", "boolean"),
    trainOnPrompt,
  });
  const loaded = await loadDatasets({
    dataset: opt<string>(c, "dataset", "string"),
    eval_dataset: opt<string>(c, "eval_dataset", "string"),
    dataset_dir: opt<string>(c, "dataset_dir", "string") ?? "data",
    stage,
    max_samples: opt<number>(c, "max_samples", "number"),
    val_size: opt<number>(c, "val_size", "number"),
    mix_strategy: opt<LoadDatasetsArgs["mix_strategy"]>(c, "mix_strategy", "string"),
    interleave_probs: opt<string>(c, "interleave_probs", "string"),
    seed: opt<number>(c, "seed", "number"),
  });
  const args = {
    stage,
    cutoffLen: opt<number>(c, "cutoff_len", "number"),
    trainOnPrompt,
    maskHistory: opt<boolean>(c, "mask_history", "boolean"),
    packing: opt<boolean>(c, "packing", "boolean"),
    neatPacking: opt<boolean>(c, "neat_packing", "boolean"),
    batchSize: opt<number>(c, "preprocessing_batch_size", "number"),
  };
  const train = processDataset(loaded.train, template, args);
  if (train.records.length === 0) {
    throw new Error(
      stage === "pt"
        ? "Cannot find sufficient samples, consider increasing dataset size."
        : "Cannot find valid samples, check `data/README.md` for the data format.",
    );
  }
  const evalSet = loaded.eval ? processDataset(loaded.eval, template, args) : undefined;
  return { train, eval: evalSet, warnings: loaded.warnings };
}

async function writeJsonl(path: string | undefined, result: ProcessResult): Promise<void> {
  const text = result.records.map((r) => JSON.stringify(r)).join("\n") + (result.records.length ? "\n" : "");
  if (path === undefined || path === "-") await Deno.stdout.write(new TextEncoder().encode(text));
  else await Deno.writeTextFile(path, text);
}

/** The `preprocess` verb: returns the exit code. */
export async function preprocessMain(args: string[]): Promise<number> {
  try {
    const cmd = await parsePreprocessArgs(args);
    const { train, eval: evalSet, warnings } = await preprocess(cmd.config);
    const uniq = (ws: string[]) => [...new Set(ws)];
    for (const w of uniq([...warnings, ...train.warnings, ...(evalSet?.warnings ?? [])]).slice(0, 20)) {
      console.error(`warning: ${w}`);
    }
    await writeJsonl(cmd.out, train);
    const tokens = train.records.reduce(
      (n, r) => n + ("input_ids" in r ? r.input_ids.length : r.chosen_input_ids.length),
      0,
    );
    console.error(
      `${train.records.length} train records (${tokens} tokens, cutoff_len ${train.args.cutoffLen}) -> ${
        cmd.out ?? "stdout"
      }`,
    );
    if (evalSet) {
      if (cmd.evalOut) await writeJsonl(cmd.evalOut, evalSet);
      console.error(
        `${evalSet.records.length} eval records${cmd.evalOut ? ` -> ${cmd.evalOut}` : " (not written: no --eval-out)"}`,
      );
    }
    return 0;
  } catch (e) {
    console.error(`preprocess: ${(e as Error).message}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await preprocessMain(Deno.args));
