/**
 * `POST /sessions/:id/predict`: LLaMA-Factory's predict (`do_predict`, engine/train/predict.ts) with the model being
 * trained (its adapter as it is now) on the session's `eval_dataset` (or one named in the body): stage sft generates
 * an answer for every prompt and scores them (BLEU-4, ROUGE), pt reports the loss, rm scores the pairs. The files
 * (generated_predictions.jsonl, predict_results.json, all_results.json) go to `<output_dir>/predict`.
 * @module
 */
import { Hono } from "../deps.ts";
import { predict, predictProblems, type TrainArgs } from "../engine/mod.ts";
import { API, on, reply } from "./api.ts";
import type { ServerContext } from "./context.ts";
import { badRequest, HttpError } from "./http.ts";
import { PredictBody } from "./schemas.ts";

/** The files predict writes into its output folder. */
const FILES = ["generated_predictions.jsonl", "predict_results.json", "all_results.json"];

/** The predict route. */
export function predictRoutes(ctx: ServerContext): Hono {
  const r = new Hono();

  on(r, API.predict, async (c, { params: { id }, body }) => {
    const s = await ctx.sessions.live(id);
    const a = s.args;
    const named = typeof body.eval_dataset === "string" ? body.eval_dataset.split(",") : body.eval_dataset;
    const evalDataset = named?.map((x) => x.trim()).filter(Boolean) ?? a.eval_dataset;
    const given = Object.fromEntries(Object.entries(body).filter(([k, v]) => k !== "eval_dataset" && v != null));
    const args: TrainArgs = {
      ...a,
      ...given,
      eval_dataset: evalDataset?.length ? evalDataset : null,
      do_predict: true,
      predict_with_generate: a.stage === "sft",
      output_dir: `${a.output_dir}/predict`,
    };
    const problems = predictProblems(args);
    if (problems.length) {
      const noData = problems.some((p) => /dataset for evaluation|eval_dataset/.test(p));
      if (noData) {
        throw badRequest(
          "eval_dataset",
          `no evaluation data to predict on: name eval_dataset (datasets of ${a.dataset_dir})` +
            (a.stage === "sft" ? " — LLaMA-Factory predicts (predict_with_generate) on an eval_dataset only" : ""),
        );
      }
      // A body key at fault is named; the others are the session's (its stage).
      const key = /^(\w+):/.exec(problems[0])?.[1];
      throw new HttpError(400, problems.join("; "), key && key in PredictBody.shape ? key : undefined);
    }
    const res = await s.exclusive(
      "predict",
      () => predict(args, { model: s.model, progress: false, log: (l) => ctx.sessions.log(`[${id}] ${l}`) }),
    );
    const files: string[] = [];
    for (const f of FILES) {
      const path = `${res.outputDir}/${f}`;
      if (await Deno.stat(path).then(() => true, () => false)) files.push(path);
    }
    await ctx.sessions.touch(id);
    return reply(c, API.predict, {
      id,
      output_dir: res.outputDir,
      metrics: res.metrics,
      predictions: res.predictions,
      files,
    });
  }, ctx.bodyLimit);

  return r;
}
