/**
 * Stage rm prediction (`do_predict: true`), as LLaMA-Factory's `run_rm` + `PairwiseTrainer`: each pair of the
 * predict set is scored by the value head at the last token of its chosen and of its rejected answer (no dropout);
 * - `generated_predictions.jsonl` gets one `{"chosen": score, "rejected": score}` line per pair, scores rounded to
 *   2 decimals and printed as Python's `json.dumps` prints floats, lines joined with "\n" (LF writes no final newline);
 * - `predict_results.json` (and `all_results.json`) hold `predict_loss` (the mean over pairs of
 *   −log σ(chosen − rejected), HF's batch losses weighted by batch size), `predict_accuracy` (`rm/metric.py`: the
 *   share of pairs whose chosen score is strictly higher), `predict_runtime`, `predict_samples_per_second` and
 *   `predict_steps_per_second`.
 * The value head comes from the adapter (or model) folder's `value_head.safetensors`; without one LF keeps a
 * freshly initialised head (with a warning), and so does Whetstone.
 * @module
 */
import type { PairwiseRecord } from "../data/process.ts";
import { Graph } from "../graph/mod.ts";
import { traceDecoder } from "../nn/decoder.ts";
import type { Model } from "../nn/model.ts";
import {
  initValueHead,
  lastTokenScores,
  loadValueHead,
  traceValues,
  V_HEAD_WEIGHT,
  VALUE_HEAD_FILE,
} from "../nn/value_head.ts";
import { pyFloatRepr } from "../data/template_tools.ts";
import { bucket } from "./batches.ts";
import { pairwiseFeeds } from "./step/pref_feeds.ts";
import type { Progress } from "./progress.ts";
import { pyRound } from "../util/py_round.ts";
import { isFile } from "../util/fs.ts";

/** The scores of one pair. */
export interface RmScore {
  chosen: number;
  rejected: number;
}

/** Traces the scoring of B pairs: ids/positions/segments_0 [2B, L] (chosen rows, then rejected) → scores [2B]. */
export function traceRmScores(model: Model, B: number, L: number): Graph {
  const g = new Graph();
  const inp = {
    ids: g.input("ids_0", [2 * B, L], "i32"),
    positions: g.input("positions_0", [2 * B, L], "i32"),
    segments: g.input("segments_0", [2 * B, L], "i32"),
  };
  const out = traceDecoder(model.config, inp, model.weights(g));
  g.output("scores", lastTokenScores(traceValues(g, model, out.hidden), inp.segments));
  return g;
}

/**
 * Gives `model` the value head LF's `load_model` would: from `from`'s {@link VALUE_HEAD_FILE} when it has one, else
 * (unless the model already holds a head) a new one seeded by `seed`. `keep`: a head the model holds is kept.
 */
export async function ensureValueHead(
  model: Model,
  from: string,
  seed: number,
  log: (s: string) => void,
  opts: { keep?: boolean } = {},
): Promise<void> {
  if (opts.keep && model.executor.hasParam(model.prefix + V_HEAD_WEIGHT)) return;
  const file = `${from.replace(/\/+$/, "")}/${VALUE_HEAD_FILE}`;
  if (await isFile(file)) {
    await loadValueHead(model, file);
    log(`value head: loaded from ${file}`);
  } else if (!model.executor.hasParam(model.prefix + V_HEAD_WEIGHT)) {
    log(`warning: ${from} has no ${VALUE_HEAD_FILE}; scoring with a freshly initialised value head`);
    initValueHead(model, { seed });
  }
}

/** One `{"chosen": x, "rejected": y}` line as LF's `json.dumps` writes it (scores rounded to 2 decimals). */
export function rmPredictionLine(s: RmScore): string {
  return `{"chosen": ${pyFloatRepr(pyRound(s.chosen, 2))}, "rejected": ${pyFloatRepr(pyRound(s.rejected, 2))}}`;
}

/** −log σ(x), computed stably. */
const negLogSigmoid = (x: number) => Math.max(-x, 0) + Math.log1p(Math.exp(-Math.abs(x)));

/** Scores every pair in batches of `B` and returns the scores, the loss and accuracy over them. */
export async function scorePairs(
  model: Model,
  records: readonly PairwiseRecord[],
  B: number,
  multiple: number,
  progress?: Progress,
): Promise<{ scores: RmScore[]; loss: number; accuracy: number }> {
  const graphs = new Map<number, ReturnType<typeof model.executor.compile>>();
  const scores: RmScore[] = [];
  for (let i = 0; i < records.length; i += B) {
    const rows = records.slice(i, i + B);
    const len = Math.max(...rows.flatMap((r) => [r.chosen_input_ids.length, r.rejected_input_ids.length]));
    const L = bucket(len, multiple);
    const trace = (s: Record<string, number>) => traceRmScores(model, B, s.L);
    if (!graphs.has(L)) graphs.set(L, model.executor.compile(trace({ L }), { symbolic: { sizes: { L }, trace } }));
    const f = pairwiseFeeds(rows, B, L);
    const o = await (await graphs.get(L)!).run({
      ids_0: f.ids_0,
      positions_0: f.positions_0,
      segments_0: f.segments_0,
    });
    rows.forEach((_, k) => scores.push({ chosen: o.scores[k], rejected: o.scores[B + k] }));
    progress?.update(i + rows.length);
  }
  const n = Math.max(scores.length, 1);
  return {
    scores,
    loss: scores.reduce((s, x) => s + negLogSigmoid(x.chosen - x.rejected), 0) / n,
    accuracy: scores.filter((x) => x.chosen > x.rejected).length / n,
  };
}
