/**
 * `deno task train config.yaml [key=value ...]`: LLaMA-Factory's training arguments, read from the same YAML with
 * the same key names and defaults (LF's dataclasses and HF `TrainingArguments`), checked as `get_train_args` checks
 * them. The key table is in `keys.ts`, the value checks in `values.ts`, the cross-field rules in `rules.ts`.
 *
 * - Values are typed by the table: a wrong type, a value out of range or not in the allowed set is an error naming
 *   the key, the value and what is accepted. An unknown key is an error naming the closest known keys. A key whose
 *   feature Whetstone lacks yet (`optim: lion_8bit`, `use_unsloth`, ...) is an error unless it
 *   holds LF's default. Keys that change nothing here (report_to, dataloader_num_workers, ddp_timeout, ...) are
 *   accepted; some add a note to {@linkcode TrainArgs.warnings} (e.g. `bf16: true`: Whetstone computes in f32).
 * - All problems are reported at once, one line each, prefixed by the file name, in one {@linkcode ConfigError}.
 * - Overrides are `key=value`, the value read as a YAML scalar (like LF's OmegaConf dot-list);
 *   `lr_scheduler_kwargs.min_lr_rate=0.1` sets one entry of a mapping.
 * - YAML is read as YAML 1.2 (as `deno task preprocess` reads it); boolean keys also take LF's YAML 1.1 spellings
 *   yes/no/on/off.
 * - Parsing touches no file but the config itself: the model, datasets and output_dir are checked later
 *   ({@linkcode checkOutputDir} for output_dir).
 *
 * @example
 * ```ts
 * const args = await loadTrainConfig("examples/demo_lora_sft.yaml", ["learning_rate=1e-5"]);
 * for (const w of args.warnings) console.error(`warning: ${w}`);
 * const { resumeFrom } = await checkOutputDir(args);
 * ```
 * @module
 */
import { parseYaml } from "../../deps.ts";
import { closeNames } from "../data/dataset_info.ts";
import type { ArgsOf, KeySpec } from "./key_spec.ts";
import { KEY_ALIASES, KEY_GROUPS, KEY_TABLE, type KeyGroup } from "./keys.ts";
import { crossCheck } from "./rules.ts";
import { ConfigError, type TrainArgs } from "./train_args.ts";
import { isMapping, isOff, readValue, show } from "./values.ts";

export { checkOutputDir, warmupSteps } from "./rules.ts";
export { intervalPlan, resolveSteps, stepActions } from "./intervals.ts";
export type { Interval, IntervalPlan, StepActions } from "./intervals.ts";
export {
  dataArgsOf,
  generateOptionsOf,
  type GeneratingOptions,
  groupArgs,
  hubOptionsOf,
  loadDatasetsArgsOf,
  templateOptionsOf,
} from "./views.ts";
export type { OutputDirCheck } from "./rules.ts";
export { ConfigError } from "./train_args.ts";
export type { IntervalStrategy, LrSchedulerKwargs, LrSchedulerType, TrainArgs } from "./train_args.ts";

type Raw = Record<string, unknown>;

/** A YAML scalar of the command line; text that is not YAML stays a string. */
function scalar(text: string): unknown {
  try {
    return parseYaml(text);
  } catch {
    return text;
  }
}

function applyOverrides(raw: Raw, overrides: readonly string[], where: string): Set<string> {
  const fromCli = new Set<string>();
  for (const o of overrides) {
    const m = /^([A-Za-z_][\w]*)(?:\.([\w]+))?=([\s\S]*)$/.exec(o);
    if (!m) {
      throw new ConfigError(where, [`override ${JSON.stringify(o)}: expected key=value (e.g. learning_rate=1e-5)`]);
    }
    const [, key, sub, text] = m;
    const value = scalar(text);
    fromCli.add(key);
    if (sub === undefined) {
      raw[key] = value;
      continue;
    }
    let cur = raw[key];
    if (typeof cur === "string" && cur.trim().startsWith("{")) cur = scalar(cur);
    if (cur !== undefined && cur !== null && !isMapping(cur)) {
      throw new ConfigError(where, [`override ${JSON.stringify(o)}: ${key} is not a mapping`]);
    }
    raw[key] = { ...(cur ?? {}), [sub]: value };
  }
  return fromCli;
}

/**
 * Parses training arguments: YAML text (or an already parsed mapping), then `key=value` overrides. Throws a
 * {@linkcode ConfigError} listing every problem; `where` names the source in the messages.
 */
export function parseTrainArgs(
  input: string | Record<string, unknown>,
  overrides: readonly string[] = [],
  where = "<config>",
): TrainArgs {
  let parsed: unknown = input;
  if (typeof input === "string") {
    try {
      parsed = parseYaml(input);
    } catch (e) {
      throw new ConfigError(where, [`not valid YAML: ${(e as Error).message}`]);
    }
  }
  if (parsed === null || parsed === undefined) parsed = {};
  if (!isMapping(parsed)) {
    const got = Array.isArray(parsed) ? "a list" : `a ${typeof parsed}`;
    throw new ConfigError(where, [`expected a mapping of argument names to values, got ${got}`]);
  }
  const raw: Raw = { ...parsed };
  const fromCli = applyOverrides(raw, overrides, where);
  const problems: string[] = [];
  const warnings: string[] = [];
  const from = (key: string) => (fromCli.has(key) ? " (command line)" : "");

  for (const [old, key] of Object.entries(KEY_ALIASES)) {
    if (!(old in raw)) continue;
    if (key in raw && raw[key] !== raw[old]) {
      problems.push(`${old} and ${key} disagree (${show(raw[old])} vs ${show(raw[key])}); ${old} is ${key}'s old name`);
    } else raw[key] = raw[old];
    delete raw[old];
  }

  const read: Raw = {};
  for (const [key, value] of Object.entries(raw)) {
    const spec = Object.hasOwn(KEY_TABLE, key) ? KEY_TABLE[key] : undefined;
    if (!spec) {
      const close = closeNames(key, Object.keys(KEY_TABLE), 3);
      problems.push(
        `unknown key "${key}"${from(key)}${
          close.length ? `; did you mean ${close.join(", ")}?` : " (not a LLaMA-Factory or Whetstone argument)"
        }`,
      );
    } else if (spec.use === "unsupported") {
      if (!isOff(value, spec.def)) {
        const reset = spec.def === null ? "remove it" : `remove it or set it to ${show(spec.def)}`;
        problems.push(
          `${key} is not supported by Whetstone yet${spec.what ? ` (${spec.what})` : ""}; got ${show(value)}${
            from(key)
          }: ${reset}`,
        );
      }
    } else if (spec.use === "ignored") {
      const rejected = spec.reject?.(value);
      if (rejected) problems.push(`${key}: ${rejected}`);
      const note = typeof spec.note === "function" ? spec.note(value) : isOff(value, spec.def) ? undefined : spec.note;
      if (note) warnings.push(`${key}: ${note}`);
    } else {
      try {
        read[key] = readValue(key, spec, value);
      } catch (e) {
        problems.push((e as Error).message + from(key));
      }
    }
  }
  const out: Raw = {};
  for (const [key, spec] of Object.entries(KEY_TABLE)) {
    if (spec.use === "train") out[key] = key in read ? read[key] : structuredClone(spec.def);
  }
  const args = out as unknown as TrainArgs;
  args.warnings = warnings;
  if (typeof raw.optim === "string" && raw.optim.startsWith("paged_") && args.optim) {
    // bitsandbytes pages the states between GPU and CPU memory (CUDA unified memory) when the GPU runs short.
    warnings.push(`optim: ${raw.optim} runs as ${args.optim}: paging is a CUDA memory matter, the update is the same`);
  }
  if (problems.length === 0) crossCheck(args, new Set(Object.keys(raw)), problems, warnings);
  if (problems.length) throw new ConfigError(where, problems);
  return args;
}

/**
 * The keys of one LF argument group read from a config mapping that may hold other keys (which are left alone), as
 * `llamafactory-cli chat` reads its generating arguments: each value checked as `parseTrainArgs` checks it, absent
 * ones LF's defaults. Throws a {@linkcode ConfigError} listing every bad value.
 */
export function parseGroupArgs<G extends KeyGroup>(
  raw: Record<string, unknown>,
  group: G,
  where = "<config>",
): ArgsOf<(typeof KEY_GROUPS)[G]> {
  const out: Raw = {}, problems: string[] = [];
  for (const [key, spec] of Object.entries(KEY_GROUPS[group] as Record<string, KeySpec>)) {
    if (spec.use !== "train") continue;
    try {
      out[key] = raw[key] === undefined ? structuredClone(spec.def) : readValue(key, spec, raw[key]);
    } catch (e) {
      problems.push((e as Error).message);
    }
  }
  if (problems.length) throw new ConfigError(where, problems);
  return out as ArgsOf<(typeof KEY_GROUPS)[G]>;
}

/** Reads a YAML or JSON config file and parses it with {@linkcode parseTrainArgs} (errors name the file). */
export async function loadTrainConfig(path: string, overrides: readonly string[] = []): Promise<TrainArgs> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound ? "no such file" : (e as Error).message;
    throw new ConfigError(path, [`cannot read the config: ${why}`]);
  }
  return parseTrainArgs(text, overrides, path);
}

/**
 * Splits a `train` command line as llamafactory-cli does: `config.yaml [key=value ...]`, or, without a config file,
 * `--key value` / `--key=value` flags (a bare `--flag` is true) turned into overrides.
 */
export function splitTrainCommand(argv: readonly string[]): { config?: string; overrides: string[] } {
  if (argv.length && /\.(ya?ml|json)$/i.test(argv[0]) && !argv[0].includes("=")) {
    return { config: argv[0], overrides: argv.slice(1) };
  }
  const overrides: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const m = /^--([A-Za-z_][\w.]*)(?:=([\s\S]*))?$/.exec(a);
    if (!m) {
      if (a.includes("=") && !a.startsWith("-")) {
        overrides.push(a);
        continue;
      }
      throw new ConfigError("<command line>", [
        `unexpected argument ${JSON.stringify(a)}: expected config.yaml [key=value ...] or --key value flags`,
      ]);
    }
    if (m[2] !== undefined) overrides.push(`${m[1]}=${m[2]}`);
    else if (i + 1 < argv.length && !argv[i + 1].startsWith("--")) overrides.push(`${m[1]}=${argv[++i]}`);
    else overrides.push(`${m[1]}=true`);
  }
  return { overrides };
}
