/**
 * A training session's evaluation over its evaluation records: the mean token loss and the perplexity (pt, sft),
 * or the preference stage's loss with LF's eval metrics (rm, dpo, kto; pref_run.ts). Graphs come from the session's
 * cache of compiled graphs (session_run.ts).
 * @module
 */
import type { SftRecord } from "../data/process.ts";
import type { CompiledGraph } from "../exec/executor.ts";
import type { Graph } from "../graph/mod.ts";
import { bucket, collate } from "./batches.ts";
import type { PrefRecord } from "./pref_run.ts";
import type { RunInit } from "./session_records.ts";
import { traceEvalStep } from "./step.ts";

/** Compiles the graph `make` builds, once per `key`. */
export type CompileCached = (key: string, make: () => Graph) => Promise<CompiledGraph>;

/** An evaluation: its loss and (rm, dpo, kto) LF's eval metrics. */
export interface EvalResult {
  loss: number;
  metrics: Record<string, number>;
}

/** Mean token loss over the evaluation records of a pt or sft run, in batches of per_device_eval_batch_size. */
export async function lmEvalLoss(i: RunInit, compiled: CompileCached): Promise<number> {
  const { args: a, model } = i;
  const evalRecords = i.evalRecords as SftRecord[];
  const Be = a.per_device_eval_batch_size, multiple = a.bucket ?? 64;
  let sum = 0, count = 0;
  for (let k = 0; k < evalRecords.length; k += Be) {
    const rows = evalRecords.slice(k, k + Be);
    const L = bucket(Math.max(...rows.map((r) => r.input_ids.length)), multiple);
    const mb = collate(rows, Be, L);
    const c = await compiled(`eval:${Be}:${L}`, () => traceEvalStep(model, Be, L));
    const o = await c.run({ ids_0: mb.ids, positions_0: mb.positions, segments_0: mb.segments, labels_0: mb.labels });
    sum += o.loss_sum[0];
    count += mb.targets;
  }
  return count ? sum / count : 0;
}

/** The eval loss over the evaluation records, and (rm, dpo, kto) LF's eval metrics. */
export async function evaluateRecords(i: RunInit, compiled: CompileCached): Promise<EvalResult> {
  const { args: a, pref } = i;
  if (!pref) return { loss: await lmEvalLoss(i, compiled), metrics: {} };
  return await pref.evaluate(i.evalRecords as PrefRecord[], a.per_device_eval_batch_size, a.bucket ?? 64, compiled);
}

/** The metrics of an evaluation: LF's for rm, dpo and kto, else the perplexity. */
export function evalMetrics(i: RunInit, e: EvalResult): Record<string, number> {
  return i.pref ? e.metrics : { perplexity: Math.exp(e.loss) };
}
