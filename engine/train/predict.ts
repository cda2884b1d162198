/**
 * LLaMA-Factory's prediction (`do_predict: true`, examples/extras/nlg_eval/llama3_lora_predict.yaml): the model
 * (with its adapter) answers every prompt of `eval_dataset` and is scored against the dataset's answers.
 *
 * With `predict_with_generate: true` (stage sft), as LF's `run_sft` + `CustomSeq2SeqTrainer`:
 * - examples are processed as LF's unsupervised processor does (prompt up to the assistant header as input_ids,
 *   the response as labels, both cut by `cutoff_len` with `infer_seqlen`);
 * - each prompt is generated from with LF's GeneratingArguments (defaults: do_sample true, temperature 0.95,
 *   top_p 0.7, top_k 50, max_new_tokens 1024, repetition_penalty 1.0), stopping at the template's stop ids (eos and
 *   stop words), `per_device_eval_batch_size` prompts at a time (`generateBatch`); sampling seeds example i with
 *   `seed + i`, so results do not depend on the batch size;
 * - `generated_predictions.jsonl` gets one `{"prompt", "predict", "label"}` line per example (Python's
 *   `json.dumps(..., ensure_ascii=False)`): the prompt decoded with special tokens, prediction and label without
 *   them (`skip_special_tokens`); written as it goes to a temporary file renamed at the end;
 * - `predict_results.json` (and `all_results.json`) hold `predict_bleu-4`, `predict_rouge-1`, `predict_rouge-2`,
 *   `predict_rouge-l` (engine/eval/metrics.ts, always on texts without special tokens), `predict_runtime`,
 *   `predict_samples_per_second` and `predict_steps_per_second` (HF's `speed_metrics`).
 *
 * Without `predict_with_generate`, LF refuses stage sft ("Please enable `predict_with_generate` to save model
 * predictions."); for stage pt Whetstone reports `predict_loss` and `predict_perplexity` on the evaluation data.
 * Stage rm scores each pair with the value head (engine/train/predict_rm.ts): `{"chosen", "rejected"}` lines and
 * `predict_loss` / `predict_accuracy`.
 * @module
 */
import type { TrainArgs } from "../config/args.ts";
import type { GeneratingArgs } from "../config/keys.ts";
import { dataArgsOf, generateOptionsOf, hubOptionsOf, loadDatasetsArgsOf, templateOptionsOf } from "../config/views.ts";
import type { AlignedExample } from "../data/aligned.ts";
import { loadDatasets } from "../data/loader.ts";
import { type PairwiseRecord, processDataset, resolveDataArgs, type SftRecord } from "../data/process.ts";
import { processUnsupervised } from "../data/process_pref.ts";
import { getTemplate } from "../data/template.ts";
import { loadTokenizer } from "../data/tokenizer.ts";
import { decodeIds } from "../data/decode_ids.ts";
import { computeSimilarity } from "../eval/metrics.ts";
import { hasGpu } from "../gpu/device.ts";
import { resolveModel } from "../io/hub.ts";
import type { GenerateOptions } from "../nn/generate.ts";
import { loadModel, type Model } from "../nn/model.ts";
import { bucket, collate } from "./batches.ts";
import { Progress } from "./progress.ts";
import { traceEvalStep } from "./step/lm.ts";
import { ensureValueHead, rmPredictionLine, type RmScore, scorePairs } from "./predict_rm.ts";
import { pyRound } from "../util/py_round.ts";
import { writeAll, writeAtomic } from "../util/fs.ts";
import { writeResults } from "./outputs/trainer_log.ts";

/** The training arguments: prediction's keys (do_predict, predict_with_generate, the generating keys) are fields. */
export type PredictArgs = TrainArgs;

/** LF's `get_train_args` checks that concern prediction (error lines, `key: message`). */
export function predictProblems(a: PredictArgs): string[] {
  const p: string[] = [];
  if (a.do_predict && !["sft", "pt", "rm"].includes(a.stage)) {
    p.push(`do_predict: prediction for stage ${a.stage} is not supported yet (sft, pt and rm are)`);
  }
  if (a.predict_with_generate && a.stage !== "sft") {
    p.push("predict_with_generate: `predict_with_generate` cannot be set as True except SFT.");
  }
  if (a.stage === "sft" && a.do_predict && !a.predict_with_generate) {
    p.push("do_predict: Please enable `predict_with_generate` to save model predictions.");
  }
  if (a.do_predict && !a.eval_dataset && !(a.val_size > 1e-6)) {
    p.push("do_predict: Please specify dataset for evaluation.");
  }
  if (a.predict_with_generate && !a.eval_dataset) {
    p.push("predict_with_generate: Cannot use `predict_with_generate` if `eval_dataset` is None.");
  }
  return p;
}

/** Hooks of {@link predict}. */
export interface PredictHooks {
  /** Human-readable lines (default: console.error, above the progress bar). */
  log?: (line: string) => void;
  /** true: a progress bar; false: none; default: a bar on a terminal, else a line every 5%. */
  progress?: boolean;
  /** A model already loaded (e.g. just trained, with its adapter); default: load model_name_or_path + adapter. */
  model?: Model;
}

/** One line of generated_predictions.jsonl. */
export interface Prediction {
  prompt: string;
  predict: string;
  label: string;
}

/** What {@link predict} returns. */
export interface PredictResult {
  /** What predict_results.json holds. */
  metrics: Record<string, number>;
  /** The lines of generated_predictions.jsonl (generation only). */
  predictions: Prediction[];
  /** The generated token ids of each example (the stop id that ended it included). */
  generated: number[][];
  /** Stage rm: the scores of each pair (unrounded), as generated_predictions.jsonl holds them rounded. */
  scores?: RmScore[];
  outputDir: string;
}

/** The file LF writes the predictions to. */
export const PREDICTIONS_FILE = "generated_predictions.jsonl";

/** Python's `json.dumps(obj, ensure_ascii=False)` of a flat object of strings (", " and ": " separators). */
export function pyJsonLine(obj: Record<string, string>): string {
  return "{" + Object.entries(obj).map(([k, v]) => `${JSON.stringify(k)}: ${JSON.stringify(v)}`).join(", ") + "}";
}

/** The examples to predict on: `eval_dataset` (LF's predict set), else the `val_size` split. */
async function predictExamples(a: PredictArgs): Promise<{ examples: AlignedExample[]; warnings: string[] }> {
  const args = loadDatasetsArgsOf(a);
  if (a.eval_dataset?.length) {
    // Loaded as the only datasets, so that no training `dataset` is needed (LF merges them the same way).
    const d = await loadDatasets({ ...args, dataset: a.eval_dataset, eval_dataset: undefined, val_size: 0 });
    return { examples: d.train, warnings: d.warnings };
  }
  const d = await loadDatasets(args);
  return { examples: d.eval ?? [], warnings: d.warnings };
}

async function openModel(a: PredictArgs, dir: string, log: (s: string) => void): Promise<Model> {
  const adapters = a.adapter_name_or_path ?? [];
  if (adapters.length > 1) throw new Error("adapter_name_or_path: stacking several adapters is not supported");
  // As the trainer: "webgpu" without any adapter falls back to the reference executor.
  const executor = a.executor === "webgpu" && !(await hasGpu()) ? "reference" : a.executor;
  const model = await loadModel(dir, {
    executor,
    adapter: adapters[0],
    ropeScaling: a.rope_scaling ? { type: a.rope_scaling, modelMaxLength: a.cutoff_len, log } : undefined,
  });
  log(`model: ${model.config.family}${adapters.length ? ` + adapter ${adapters[0]}` : ""} on ${model.executor.name}`);
  return model;
}

function speedMetrics(n: number, steps: number, secs: number): Record<string, number> {
  return {
    predict_runtime: pyRound(secs, 4),
    predict_samples_per_second: pyRound(n / secs, 3),
    predict_steps_per_second: pyRound(steps / secs, 3),
  };
}

/** Runs LLaMA-Factory's `do_predict` on `eval_dataset`; writes and returns the predictions and metrics. */
export async function predict(a: PredictArgs, hooks: PredictHooks = {}): Promise<PredictResult> {
  const problems = predictProblems({ ...a, do_predict: true });
  if (problems.length) throw new Error(problems.join("\n"));
  const ui: { progress?: Progress } = {};
  const log = hooks.log ?? ((s: string) => (ui.progress ? ui.progress.println(s) : console.error(s)));
  const out = a.output_dir.replace(/\/+$/, "");
  const dir = await resolveModel(a.model_name_or_path, hubOptionsOf(a));
  const template = getTemplate(await loadTokenizer(dir), templateOptionsOf(a));
  const { examples, warnings } = await predictExamples(a);
  for (const w of warnings) log(`note: ${w}`);
  const dataArgs = resolveDataArgs(dataArgsOf(a));
  const generate = a.predict_with_generate;
  const processed = generate
    ? processUnsupervised({ examples, offset: 0 }, template, dataArgs)
    : processDataset(examples, template, dataArgs);
  for (const w of processed.warnings) log(`note: ${w}`);
  const records = processed.records as SftRecord[];
  if (!records.length) throw new Error(`eval_dataset ${a.eval_dataset ?? ""}: no valid examples to predict on`);
  const model = hooks.model ?? await openModel(a, dir, log);
  // A model handed over (just trained) keeps its head; a loaded one gets the adapter's (or model's) head, as LF's.
  if (a.stage === "rm") {
    await ensureValueHead(model, a.adapter_name_or_path?.at(-1) ?? dir, a.seed, log, { keep: !!hooks.model });
  }
  const B = a.per_device_eval_batch_size;
  const steps = Math.ceil(records.length / B);
  await Deno.mkdir(out, { recursive: true });
  const mode = hooks.progress === undefined ? "auto" : hooks.progress ? "bar" : "none";
  const progress = ui.progress = new Progress({ total: records.length, mode });
  log(`predict: ${records.length} examples, batch ${B}${generate ? `, generating (${describe(a)})` : ""}`);
  const started = performance.now();

  if (a.stage === "rm") {
    const pairs = processed.records as unknown as PairwiseRecord[];
    const { scores, loss, accuracy } = await scorePairs(model, pairs, B, a.bucket ?? 64, progress);
    progress.done();
    const secs = (performance.now() - started) / 1000;
    await Deno.writeTextFile(`${out}/${PREDICTIONS_FILE}`, scores.map(rmPredictionLine).join("\n"));
    const metrics = { predict_loss: loss, predict_accuracy: accuracy, ...speedMetrics(records.length, steps, secs) };
    await writeResults(out, "predict", metrics);
    logMetrics(log, metrics);
    log(`predictions in ${out}/${PREDICTIONS_FILE}`);
    return { metrics, predictions: [], generated: [], scores, outputDir: out };
  }

  if (!generate) {
    // Loss only (stage pt): the mean token loss over the evaluation data, as the trainer's evaluation.
    let sum = 0, count = 0;
    const graphs = new Map<number, ReturnType<typeof model.executor.compile>>();
    for (let i = 0; i < records.length; i += B) {
      const rows = records.slice(i, i + B);
      const L = bucket(Math.max(...rows.map((r) => r.input_ids.length)), a.bucket ?? 64);
      const mb = collate(rows, B, L);
      const trace = (s: Record<string, number>) => traceEvalStep(model, B, s.L);
      if (!graphs.has(L)) graphs.set(L, model.executor.compile(trace({ L }), { symbolic: { sizes: { L }, trace } }));
      const c = await graphs.get(L)!;
      const o = await c.run({ ids_0: mb.ids, positions_0: mb.positions, segments_0: mb.segments, labels_0: mb.labels });
      sum += o.loss_sum[0];
      count += mb.targets;
      progress.update(i + rows.length);
    }
    progress.done();
    const loss = count ? sum / count : 0;
    const secs = (performance.now() - started) / 1000;
    const metrics = {
      predict_loss: loss,
      predict_perplexity: Math.exp(loss),
      ...speedMetrics(records.length, steps, secs),
    };
    await writeResults(out, "predict", metrics);
    logMetrics(log, metrics);
    return { metrics, predictions: [], generated: [], outputDir: out };
  }

  const stop = model.stopIds(template.stopTokenIds());
  const skip = a.skip_special_tokens;
  const enc = new TextEncoder();
  const predictions: Prediction[] = [], generated: number[][] = [], preds: string[] = [], labels: string[] = [];
  let tokens = 0;
  await writeAtomic(`${out}/${PREDICTIONS_FILE}`, async (file) => {
    for (let i = 0; i < records.length; i += B) {
      const rows = records.slice(i, i + B);
      const prompts = rows.map((r) => r.input_ids);
      const opts: GenerateOptions = {
        ...generateOptionsOf(a, Math.max(...prompts.map((p) => p.length))),
        stop,
        seed: a.seed + i,
        vocabLimit: template.tokenizer.idLimit,
      };
      const ids = prompts.length === 1
        ? [await model.generate(prompts[0], opts)]
        : await model.generateBatch(prompts, opts);
      let lines = "";
      rows.forEach((r, k) => {
        const p: Prediction = {
          prompt: decodeIds(template, r.input_ids, false),
          predict: decodeIds(template, ids[k], skip),
          label: decodeIds(template, r.labels, skip),
        };
        predictions.push(p);
        generated.push(ids[k]);
        preds.push(skip ? p.predict : decodeIds(template, ids[k], true));
        labels.push(skip ? p.label : decodeIds(template, r.labels, true));
        tokens += ids[k].length;
        lines += pyJsonLine({ ...p }) + "\n";
      });
      await writeAll(file, enc.encode(lines));
      const secs = (performance.now() - started) / 1000;
      progress.update(i + rows.length, { tokensPerSec: tokens / Math.max(secs, 1e-9) });
    }
  });
  progress.done();
  const scores = await computeSimilarity(preds, labels);
  const secs = (performance.now() - started) / 1000;
  const metrics: Record<string, number> = {};
  for (const [k, v] of Object.entries(scores)) metrics[`predict_${k}`] = v;
  Object.assign(metrics, speedMetrics(records.length, steps, secs));
  await writeResults(out, "predict", metrics);
  logMetrics(log, metrics);
  log(`predictions in ${out}/${PREDICTIONS_FILE}`);
  return { metrics, predictions, generated, outputDir: out };
}

function describe(a: GeneratingArgs): string {
  const len = a.max_new_tokens > 0 ? `max_new_tokens ${a.max_new_tokens}` : `max_length ${a.max_length}`;
  if (!a.do_sample) return `greedy, ${len}`;
  return `sampling: temperature ${a.temperature}, top_p ${a.top_p}, top_k ${a.top_k}, ${len}`;
}

/** HF's `log_metrics`: a header and one aligned `key = value` line per metric, keys sorted. */
function logMetrics(log: (s: string) => void, metrics: Record<string, number>): void {
  const keys = Object.keys(metrics).sort();
  const width = Math.max(...keys.map((k) => k.length));
  log("***** predict metrics *****");
  for (const k of keys) log(`  ${k.padEnd(width)} = ${metrics[k]}`);
}
