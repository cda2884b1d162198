/**
 * `loadDatasets(args)`: LLaMA-Factory's `get_dataset` up to (not including) tokenization — dataset_info.json lookup,
 * file or hub loading, `num_samples` and `max_samples` per dataset, conversion to {@linkcode AlignedExample}, mixing
 * and the `val_size` split.
 *
 * @example
 * ```ts
 * const { train, eval: evalSet, warnings } = await loadDatasets({
 *   dataset: "alpaca_en_demo,identity",
 *   dataset_dir: "data",
 *   stage: "sft",
 *   max_samples: 100,
 *   val_size: 0.1,
 * });
 * ```
 *
 * Differences from LF, on purpose: rows that are broken (sharegpt role order) or unusable for the stage (no
 * response for sft, ...) are dropped here, with one counted warning per dataset and reason naming the rows, instead of
 * later in the processors; so `val_size` splits the rows that remain. `train` and `eval` keep dataset order (the
 * trainer shuffles). With `streaming`, `max_samples` takes the first rows (LF refuses the pair), `num_samples` is
 * ignored (as in LF), and `val_size` must be a count: the first `val_size` examples of the stream are the evaluation
 * set (LF shuffles with a buffer first).
 * @module
 */
import type { AlignedExample } from "./aligned.ts";
import {
  DATASET_INFO_FILE,
  type DatasetAttr,
  getDatasetAttrs,
  onlineDatasetAttr,
  parseDatasetNames,
  readDatasetInfo,
} from "./dataset_info.ts";
import { DataError, type FileRow, listDataFiles, readDataFile } from "./files.ts";
import { convertRow, datasetProblem, type Stage, stageProblem, STAGES } from "./formats.ts";
import { type HubDatasetOptions, resolveHubDataset } from "./hub_datasets.ts";
import { mix, MIX_STRATEGIES, mixArrays, type MixStrategy, parseProbs, sampleExactly, splitTrainEval } from "./mix.ts";
import { Rng } from "../util/rng.ts";

/** Arguments of {@linkcode loadDatasets}, named as LLaMA-Factory's `DataArguments`. */
export interface LoadDatasetsArgs {
  /** Names in dataset_info.json: a comma list or an array. */
  dataset?: string | readonly string[];
  /** Evaluation datasets (then `val_size` must be 0). */
  eval_dataset?: string | readonly string[];
  /** The folder of dataset_info.json and the files; default "data". `"ONLINE"`: the names are hub dataset ids. */
  dataset_dir?: string;
  /** dataset_info.json entries to use instead of reading `${dataset_dir}/dataset_info.json`. */
  dataset_info?: Record<string, unknown>;
  /** Default "sft". */
  stage?: Stage;
  /** Keep the first N rows of each dataset (before conversion, so dropped rows count). */
  max_samples?: number;
  /** Evaluation share: a fraction in (0, 1) or a count (>= 1). Default 0. */
  val_size?: number;
  /** Default "concat". */
  mix_strategy?: MixStrategy;
  /** One probability per dataset (comma list or numbers) for the interleave strategies. */
  interleave_probs?: string | readonly number[];
  /** Default 42 (LF's default seed). */
  seed?: number;
  /** Read the training data lazily. */
  streaming?: boolean;
  /** Hub download options (endpoint, cache, token, progress). */
  hub?: HubDatasetOptions;
}

/** Per-dataset counts. */
export interface DatasetStats {
  name: string;
  /** Rows read (after num_samples / max_samples). */
  rows: number;
  /** Examples kept. */
  kept: number;
}

/** What {@linkcode loadDatasets} returns without streaming. */
export interface LoadedDatasets {
  train: AlignedExample[];
  eval?: AlignedExample[];
  warnings: string[];
  /** Train datasets, then eval datasets. */
  stats: DatasetStats[];
}

/** What {@linkcode loadDatasets} returns with streaming: `train` reads the files again each time it is iterated. */
export interface StreamedDatasets {
  train: AsyncIterable<AlignedExample>;
  eval?: AlignedExample[];
  /** Grows as the stream is read: drop counts are added when a pass over a dataset ends. */
  warnings: string[];
}

/** Counts dropped rows per dataset and reason, and words them as warnings. */
class Drops {
  #groups = new Map<string, { reason: string; rows: string[]; count: number }>();
  add(ex: { file: string; row: number }, reason: string): void {
    const kind = reason.split(":")[0];
    let g = this.#groups.get(kind);
    if (!g) this.#groups.set(kind, g = { reason, rows: [], count: 0 });
    g.count++;
    if (g.rows.length < 8) g.rows.push(`${ex.file} row ${ex.row}`);
  }
  get count(): number {
    let n = 0;
    for (const g of this.#groups.values()) n += g.count;
    return n;
  }
  warnings(dataset: string, rows: number): string[] {
    return [...this.#groups.values()].map((g) =>
      `dataset ${JSON.stringify(dataset)}: dropped ${g.count} of ${rows} rows: ${g.reason.split(":")[0]} (${
        g.rows.join(", ")
      }${g.count > g.rows.length ? ", ..." : ""}); first: ${g.reason}`
    );
  }
}

function resolveAttrs(names: string[], info: Record<string, unknown> | null, where: string, warnings: string[]) {
  return info === null ? names.map(onlineDatasetAttr) : getDatasetAttrs(names, info, where, warnings);
}

/** The data files of a dataset: local files, or hub files downloaded to the cache. */
async function datasetFiles(attr: DatasetAttr, dir: string, hub?: HubDatasetOptions): Promise<string[]> {
  const label = `dataset ${JSON.stringify(attr.name)}`;
  switch (attr.loadFrom) {
    case "file": {
      if (attr.split !== "train") {
        throw new DataError(`${label}: local files have only the "train" split, not ${JSON.stringify(attr.split)}`);
      }
      const path = attr.datasetName.startsWith("/")
        ? attr.datasetName
        : `${dir.replace(/\/+$/, "")}/${attr.datasetName}`;
      try {
        return await listDataFiles(path);
      } catch (e) {
        if (e instanceof DataError) {
          throw new DataError(`${label}: ${e.message}`, { ...e.location, dataset: attr.name });
        }
        throw e;
      }
    }
    case "hf_hub":
      try {
        return await resolveHubDataset(
          { id: attr.datasetName, subset: attr.subset, split: attr.split, folder: attr.folder },
          hub,
        );
      } catch (e) {
        if (e instanceof DataError) throw new DataError(`${label} (hf_hub_url ${attr.datasetName}): ${e.message}`);
        throw e;
      }
    case "ms_hub":
    case "om_hub":
      throw new DataError(
        `${label} is on ${attr.loadFrom === "ms_hub" ? "ModelScope (ms_hub_url" : "Modelers (om_hub_url"} ` +
          `${attr.datasetName}), which is not supported: only local files and Hugging Face hub datasets ` +
          `(hf_hub_url, from HF_ENDPOINT) are. Download it and point file_name at it.`,
      );
    case "script":
      throw new DataError(
        `${label} needs a loading script (script_url ${attr.datasetName}), which is not supported: ` +
          `convert the data to json, jsonl, csv, parquet or txt and use file_name`,
      );
    case "cloud_file":
      throw new DataError(
        `${label} is a cloud file (cloud_file_name ${attr.datasetName}), which is not supported: download it and use ` +
          `file_name`,
      );
  }
}

async function* rowsOf(files: string[]): AsyncGenerator<FileRow> {
  for (const f of files) yield* readDataFile(f);
}

interface Prepared {
  attr: DatasetAttr;
  files: string[];
}

async function prepare(names: string[], args: LoadDatasetsArgs, warnings: string[]): Promise<Prepared[]> {
  const stage = args.stage ?? "sft";
  const dir = args.dataset_dir ?? "data";
  let info: Record<string, unknown> | null, where: string;
  if (args.dataset_info) [info, where] = [args.dataset_info, "dataset_info (argument)"];
  else if (dir === "ONLINE") [info, where] = [null, "ONLINE"];
  else if (dir.startsWith("REMOTE:")) {
    throw new DataError(
      `dataset_dir ${
        JSON.stringify(dir)
      }: REMOTE dataset_info.json is not supported; download it (and its files) to a folder`,
    );
  } else [info, where] = [await readDatasetInfo(dir), `${dir.replace(/\/+$/, "")}/${DATASET_INFO_FILE}`];
  const attrs = resolveAttrs(names, info, where, warnings);
  for (const attr of attrs) {
    const problem = datasetProblem(attr, stage);
    if (problem) {
      throw new DataError(`dataset ${JSON.stringify(attr.name)} cannot be used for stage ${stage}: ${problem}`);
    }
  }
  const out: Prepared[] = [];
  for (const attr of attrs) out.push({ attr, files: await datasetFiles(attr, dir, args.hub) });
  return out;
}

/** Converts rows and drops those unusable for the stage, counting drops. */
function convert(attr: DatasetAttr, row: FileRow, stage: Stage, drops: Drops): AlignedExample | undefined {
  const c = convertRow(attr, row, stage);
  if (c.dropped !== undefined) return void drops.add(row, c.dropped);
  const why = stageProblem(c.example, stage);
  if (why) return void drops.add(row, why);
  return c.example;
}

async function loadOne(p: Prepared, index: number, args: LoadDatasetsArgs, warnings: string[]) {
  const stage = args.stage ?? "sft", seed = args.seed ?? 42;
  let rows: FileRow[] = [];
  for await (const r of rowsOf(p.files)) rows.push(r);
  if (p.attr.numSamples !== undefined) {
    rows = sampleExactly(rows, p.attr.numSamples, new Rng(seed + 7919 * (index + 1)));
  }
  if (args.max_samples !== undefined) rows = rows.slice(0, args.max_samples);
  const drops = new Drops();
  const examples: AlignedExample[] = [];
  for (const r of rows) {
    const ex = convert(p.attr, r, stage, drops);
    if (ex) examples.push(ex);
  }
  warnings.push(...drops.warnings(p.attr.name, rows.length));
  return { examples, stats: { name: p.attr.name, rows: rows.length, kept: examples.length } };
}

function streamOne(p: Prepared, args: LoadDatasetsArgs, warnings: string[]): () => AsyncGenerator<AlignedExample> {
  const stage = args.stage ?? "sft";
  let reported = false;
  return async function* () {
    const drops = new Drops();
    let n = 0, complete = false;
    try {
      for await (const r of rowsOf(p.files)) {
        if (args.max_samples !== undefined && n >= args.max_samples) break;
        n++;
        const ex = convert(p.attr, r, stage, drops);
        if (ex) yield ex;
      }
      complete = true;
    } finally {
      if (complete && !reported) {
        reported = true;
        warnings.push(...drops.warnings(p.attr.name, n));
      }
    }
  };
}

function checkArgs(args: LoadDatasetsArgs): void {
  const stage = args.stage ?? "sft";
  if (!STAGES.includes(stage)) {
    throw new DataError(`stage should be one of ${STAGES.join(", ")}, got ${JSON.stringify(stage)}`);
  }
  const strategy = args.mix_strategy ?? "concat";
  if (!MIX_STRATEGIES.includes(strategy)) {
    throw new DataError(`mix_strategy should be one of ${MIX_STRATEGIES.join(", ")}, got ${JSON.stringify(strategy)}`);
  }
  if (args.max_samples !== undefined && !(Number.isInteger(args.max_samples) && args.max_samples >= 0)) {
    throw new DataError(`max_samples should be a non-negative integer, got ${args.max_samples}`);
  }
  const val = args.val_size ?? 0;
  if (!(Number.isFinite(val) && val >= 0)) throw new DataError(`val_size should be a number >= 0, got ${val}`);
  if (val > 1e-6 && parseDatasetNames(args.eval_dataset).length > 0) {
    throw new DataError("Cannot specify `val_size` if `eval_dataset` is not None (LF): set one or the other");
  }
  if (args.streaming && val > 1e-6 && (val < 1 || !Number.isInteger(val))) {
    throw new DataError(`with streaming, val_size should be an integer count of examples, got ${val}`);
  }
}

/** Loads, converts, mixes and splits the datasets named in `args` (see the module doc). */
export function loadDatasets(args: LoadDatasetsArgs & { streaming: true }): Promise<StreamedDatasets>;
export function loadDatasets(args: LoadDatasetsArgs & { streaming?: false }): Promise<LoadedDatasets>;
export function loadDatasets(args: LoadDatasetsArgs): Promise<LoadedDatasets | StreamedDatasets>;
export async function loadDatasets(args: LoadDatasetsArgs): Promise<LoadedDatasets | StreamedDatasets> {
  checkArgs(args);
  const names = parseDatasetNames(args.dataset), evalNames = parseDatasetNames(args.eval_dataset);
  if (names.length === 0) throw new DataError("no dataset given: set `dataset` to names defined in dataset_info.json");
  const warnings: string[] = [];
  const strategy = args.mix_strategy ?? "concat", seed = args.seed ?? 42;
  const train = await prepare(names, args, warnings);
  const evals = evalNames.length ? await prepare(evalNames, args, warnings) : [];
  const trainProbs = parseProbs(strategy === "concat" ? undefined : args.interleave_probs, train.length, warnings);
  // LF merges the eval datasets with the same strategy and probabilities (when they fit their number).
  const evalProbs = evals.length === train.length ? trainProbs : undefined;

  const loadAll = async (ps: Prepared[], offset: number, probs?: number[]) => {
    const sets: AlignedExample[][] = [], stats: DatasetStats[] = [];
    for (let i = 0; i < ps.length; i++) {
      const { examples, stats: s } = await loadOne(ps[i], offset + i, args, warnings);
      sets.push(examples);
      stats.push(s);
    }
    return { examples: await mixArrays(sets, strategy, seed, probs), stats };
  };

  if (args.streaming) {
    if (strategy === "concat" && train.length > 1) {
      warnings.push(
        "The samples between different datasets will not be mixed in streaming mode (mix_strategy concat).",
      );
    }
    for (const p of train) {
      if (p.attr.numSamples !== undefined) {
        warnings.push(`dataset ${JSON.stringify(p.attr.name)}: num_samples is ignored when streaming (as in LF)`);
      }
    }
    const sources = train.map((p) => streamOne(p, args, warnings));
    const skip = Math.trunc(args.val_size ?? 0);
    let evalSet: AlignedExample[] | undefined;
    if (skip > 0) {
      evalSet = [];
      for await (const ex of mix(sources, strategy, seed, trainProbs)) {
        if (evalSet.length >= skip) break;
        evalSet.push(ex);
      }
      if (evalSet.length < skip) {
        throw new DataError(
          `val_size ${skip} takes every one of the ${evalSet.length} examples, leaving none to train on`,
        );
      }
    } else if (evals.length) {
      evalSet = (await loadAll(evals, train.length, evalProbs)).examples;
    }
    const stream: AsyncIterable<AlignedExample> = {
      async *[Symbol.asyncIterator]() {
        let i = 0;
        for await (const ex of mix(sources, strategy, seed, trainProbs)) if (i++ >= skip) yield ex;
      },
    };
    return { train: stream, eval: evalSet, warnings };
  }

  const t = await loadAll(train, 0, trainProbs);
  if (t.examples.length === 0) {
    throw new DataError(
      `Cannot find valid samples in ${names.join(", ")} for stage ${args.stage ?? "sft"}` +
        (warnings.length ? `: ${warnings.join("; ")}` : " (the datasets are empty)"),
    );
  }
  const stats = [...t.stats];
  let trainSet = t.examples, evalSet: AlignedExample[] | undefined;
  if ((args.val_size ?? 0) > 1e-6) {
    try {
      ({ train: trainSet, eval: evalSet } = splitTrainEval(t.examples, args.val_size!, seed));
    } catch (e) {
      throw new DataError((e as Error).message);
    }
  } else if (evals.length) {
    const e = await loadAll(evals, train.length, evalProbs);
    evalSet = e.examples;
    stats.push(...e.stats);
  }
  return { train: trainSet, eval: evalSet, warnings, stats };
}
