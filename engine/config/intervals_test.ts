import assert from "node:assert/strict";
import { parseTrainArgs } from "./args.ts";
import { intervalPlan, resolveSteps, stepActions } from "./intervals.ts";

const M = "model_name_or_path: m\ndataset: d\n";

/** The steps at which each action happens over a run of `total` steps with `perEpoch` steps an epoch. */
function timeline(yaml: string, total: number, perEpoch: number) {
  const p = intervalPlan(parseTrainArgs(M + yaml), total);
  const out = { log: [] as number[], evaluate: [] as number[], save: [] as number[] };
  for (let step = 1; step <= total; step++) {
    const act = stepActions(p, step, total, step % perEpoch === 0);
    for (const k of ["log", "evaluate", "save"] as const) if (act[k]) out[k].push(step);
  }
  return out;
}

Deno.test("resolveSteps: HF's fractional steps are a ratio of the total, rounded up", () => {
  assert.equal(resolveSteps(0.25, 10), 3);
  assert.equal(resolveSteps(0.1, 100), 10);
  assert.equal(resolveSteps(0.001, 10), 1, "a positive ratio is at least one step");
  assert.equal(resolveSteps(5, 100), 5);
  assert.equal(resolveSteps(1, 100), 1, "1 is a count, not a ratio");
  assert.equal(resolveSteps(0, 100), 0);
  assert.throws(() => resolveSteps(-1, 10), /expected a step count or a ratio >= 0, got -1/);
});

Deno.test("steps strategies: every N steps, fractional N resolved against the total; save also at the last step", () => {
  const t = timeline("logging_steps: 4\nsave_steps: 0.5\neval_strategy: steps\neval_steps: 0.3\nval_size: 0.1", 10, 5);
  assert.deepEqual(t.log, [4, 8]);
  assert.deepEqual(t.save, [5, 10]);
  assert.deepEqual(t.evaluate, [3, 6, 9]);
  assert.deepEqual(timeline("save_steps: 4", 10, 5).save, [4, 8, 10], "HF saves at the end with save_strategy steps");
});

Deno.test("epoch strategies act at each epoch's end and at the run's end; logging_first_step logs step 1", () => {
  const t = timeline(
    "logging_strategy: epoch\nsave_strategy: epoch\neval_strategy: epoch\nval_size: 0.1\nlogging_first_step: true",
    11,
    4,
  );
  assert.deepEqual(t.log, [1, 4, 8, 11]);
  assert.deepEqual(t.evaluate, [4, 8, 11]);
  assert.deepEqual(t.save, [4, 8, 11]);
  const off = timeline("logging_strategy: no\nsave_strategy: no", 6, 3);
  assert.deepEqual([off.log, off.save, off.evaluate], [[], [], []]);
});
