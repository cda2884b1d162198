/**
 * Stages pt and sft: the language-model objective (step/lm.ts) over micro-batches of processed records, each
 * optimizer step's loss the token mean over all its micro-batches, and evaluation as HF's: the mean token loss over
 * the evaluation records with its perplexity.
 * @module
 */
import type { SftRecord } from "../../data/process.ts";
import { bucket, collate } from "../batches.ts";
import { lmObjectiveOf, traceEvalStep, trainStepFeeds } from "../step/lm.ts";
import type { Objective } from "../step/objective.ts";
import { neftuneNoise, neftuneSeed } from "../../nn/neftune.ts";
import { type EvalResult, GraphStage, type StageContext, type StepFeeds, stepSeed } from "./stage.ts";

/** pt or sft. */
export class LmStage extends GraphStage<SftRecord> {
  readonly valueHead = false;
  readonly extraBytes = 0;
  override readonly samples: boolean;

  constructor(readonly name: "pt" | "sft", ctx: StageContext) {
    super(ctx);
    this.samples = name === "sft";
  }

  length(r: SftRecord): number {
    return r.input_ids.length;
  }

  objective(L: number): Objective {
    return lmObjectiveOf(this.ctx.model, this.ctx.plan(L));
  }

  feeds(rowsOf: readonly (readonly SftRecord[])[], B: number, L: number, step: number): StepFeeds {
    const mbs = rowsOf.map((rows) => collate(rows, B, L));
    const out = trainStepFeeds(mbs);
    // NEFTune: each micro-batch's embedding noise, seeded by the run's seed, the step and the micro-batch.
    const alpha = this.ctx.plan(L).neftune;
    if (alpha) {
      const H = this.ctx.model.config.hidden, s = stepSeed(this.ctx.args.seed, step);
      mbs.forEach((_, k) => out.feeds[`noise_${k}`] = neftuneNoise(neftuneSeed(s, k), B, L, H, alpha));
    }
    return { ...out, present: mbs.length };
  }

  /** Mean token loss over `records` in batches of per_device_eval_batch_size, and its perplexity. */
  async evaluate(records: readonly SftRecord[]): Promise<EvalResult> {
    const { args: a, model, compile } = this.ctx;
    const Be = a.per_device_eval_batch_size, multiple = a.bucket ?? 64;
    let sum = 0, count = 0;
    const dft = a.use_dft_loss && a.stage === "sft", accuracy = a.compute_accuracy && a.stage === "sft";
    const vocabIds = accuracy ? Float32Array.from({ length: model.config.vocab }, (_, i) => i) : undefined;
    const perRow: number[] = [];
    for (let k = 0; k < records.length; k += Be) {
      const rows = records.slice(k, k + Be);
      const L = bucket(Math.max(...rows.map((r) => r.input_ids.length)), multiple);
      const mb = collate(rows, Be, L);
      const key = `eval:${Be}:${L}${dft ? ":dft" : ""}${accuracy ? ":acc" : ""}`;
      const trace = (s: Record<string, number>) => traceEvalStep(model, Be, s.L, dft, accuracy);
      const c = await compile(key, () => trace({ L }), { sizes: { L }, trace });
      const feeds = { ids_0: mb.ids, positions_0: mb.positions, segments_0: mb.segments, labels_0: mb.labels };
      const o = await c.run(vocabIds ? { ...feeds, vocab_ids: vocabIds } : feeds);
      sum += o.loss_sum[0];
      count += mb.targets;
      if (accuracy) perRow.push(...rowAccuracies(o.correct, mb.labels, rows.length, L));
    }
    const loss = count ? sum / count : 0;
    if (!accuracy) return { loss, metrics: { perplexity: Math.exp(loss) }, history: {} };
    // LF's ComputeAccuracy: the mean over sequences of each sequence's token accuracy.
    const acc = perRow.length ? perRow.reduce((x, y) => x + y, 0) / perRow.length : 0;
    return { loss, metrics: { eval_accuracy: acc, perplexity: Math.exp(loss) }, history: { eval_accuracy: acc } };
  }
}

/**
 * Token accuracy of each of the first `n` rows of a batch (`correct` and `labels` [B·L], labels shifted): the mean
 * of `correct` over the row's labelled positions, as LF's ComputeAccuracy takes it per sequence. Rows without a
 * labelled token are skipped (LF would average a NaN in).
 */
export function rowAccuracies(correct: ArrayLike<number>, labels: ArrayLike<number>, n: number, L: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < n; r++) {
    let hit = 0, total = 0;
    for (let t = r * L; t < (r + 1) * L; t++) {
      if (labels[t] === -100) continue;
      total++;
      hit += correct[t];
    }
    if (total) out.push(hit / total);
  }
  return out;
}
