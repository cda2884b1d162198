/**
 * The training and eval step graphs with RoPE whose frequencies depend on the length (fixtures/rope/, see
 * engine/nn/rope_runs_test.ts): each micro-batch of one step gets the frequencies of its own batch's actual length,
 * as transformers' forward of that batch does, whatever the step's padded length.
 */
import assert from "node:assert/strict";
import { loadModel } from "../../nn/model.ts";
import { executors } from "../../nn/executors_testing.ts";
import type { MicroBatch } from "../batches.ts";
import { buildGradStep } from "./builder.ts";
import { adamwStepPlan, lmObjectiveOf, traceEvalStep, trainStepFeeds } from "./lm.ts";

const root = new URL("../../../fixtures/rope/", import.meta.url).pathname;
interface Loss {
  rows: number[][];
  loss: number;
}

/** Rows right-padded to L, positions 0.., labels shifted as the batcher shifts them. */
function microBatch(rows: number[][], L: number): MicroBatch {
  const B = rows.length, n = B * L;
  const mb: MicroBatch = {
    B,
    L,
    ids: new Int32Array(n),
    positions: new Int32Array(n),
    segments: new Int32Array(n),
    labels: new Int32Array(n).fill(-100),
    tokens: 0,
    targets: 0,
  };
  rows.forEach((r, b) => {
    for (let i = 0; i < L; i++) mb.positions[b * L + i] = i;
    r.forEach((t, i) => {
      mb.ids[b * L + i] = t;
      mb.segments[b * L + i] = 1;
      mb.tokens++;
      if (i + 1 < r.length) [mb.labels[b * L + i], mb.targets] = [r[i + 1], mb.targets + 1];
    });
  });
  return mb;
}

for (const name of ["phi3_longrope12", "llama_dynamic12"]) {
  const { losses } = JSON.parse(await Deno.readTextFile(`${root}${name}/runs.json`)) as { losses: Loss[] };
  // Both padded to 16: [10, 7] stays below the threshold 12, [13, 4] passes it.
  const [short, long] = [losses.find((l) => l.rows[0].length === 10)!, losses.find((l) => l.rows[0].length === 13)!];
  for (const [exName, make] of executors()) {
    Deno.test(`lm step ${name} on ${exName}: each micro-batch's RoPE follows its own length`, async () => {
      const model = await loadModel(`${root}${name}`, { executor: await make() });
      const mbs = [microBatch(short.rows, 16), microBatch(long.rows, 16)];
      const names = ["model.layers.0.self_attn.o_proj.weight"];
      const step = await model.executor.compile(
        buildGradStep(lmObjectiveOf(model, adamwStepPlan(2, 16, names, { G: 2 })), names, 2),
      );
      const got = (await step.run(trainStepFeeds(mbs).feeds, ["loss"])).loss[0];
      const t = mbs.map((m) => m.targets);
      const want = (short.loss * t[0] + long.loss * t[1]) / (t[0] + t[1]);
      assert.ok(Math.abs(got - want) <= 1e-5 * want, `train step loss ${got}, transformers ${want}`);
      // The eval step: one batch.
      const evalStep = await model.executor.compile(traceEvalStep(model, 2, 16));
      for (const [i, l] of [short, long].entries()) {
        const feeds = trainStepFeeds([mbs[i]]).feeds;
        const sum = (await evalStep.run(feeds, ["loss_sum"])).loss_sum[0];
        assert.ok(Math.abs(sum / t[i] - l.loss) <= 1e-5 * l.loss, `eval loss ${sum / t[i]}, transformers ${l.loss}`);
      }
    });
  }
}
