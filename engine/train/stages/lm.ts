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
    for (let k = 0; k < records.length; k += Be) {
      const rows = records.slice(k, k + Be);
      const L = bucket(Math.max(...rows.map((r) => r.input_ids.length)), multiple);
      const mb = collate(rows, Be, L);
      const c = await compile(`eval:${Be}:${L}`, () => traceEvalStep(model, Be, L));
      const o = await c.run({ ids_0: mb.ids, positions_0: mb.positions, segments_0: mb.segments, labels_0: mb.labels });
      sum += o.loss_sum[0];
      count += mb.targets;
    }
    const loss = count ? sum / count : 0;
    return { loss, metrics: { perplexity: Math.exp(loss) }, history: {} };
  }
}
