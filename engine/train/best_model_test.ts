/**
 * Best-metric tracking and early stopping against fixtures/losses/early_stopping.json (transformers' own
 * EarlyStoppingCallback.on_evaluate and Trainer._determine_best_metric, run by make_early_stopping.py), the config
 * rules (HF's defaults and checks), and a run on the tiny model: `early_stopping_steps` stops it, and
 * `load_best_model_at_end` ends it with the best checkpoint's weights; `eval_on_start` evaluates at step 0.
 */
import assert from "node:assert/strict";
import { parseTrainArgs } from "../config/args.ts";
import { newBestState, onEvaluate } from "./best_model.ts";
import { makeTinyModel } from "./testing.ts";
import { train } from "./trainer.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const GOLD = JSON.parse(await Deno.readTextFile(`${ROOT}fixtures/losses/early_stopping.json`));
const M = { model_name_or_path: "m", output_dir: "o", dataset: "d" };

Deno.test("best metric and early stopping follow transformers step for step", () => {
  for (const c of GOLD.cases) {
    const a = parseTrainArgs({
      ...M,
      eval_strategy: "steps",
      eval_steps: 2,
      save_steps: 2,
      val_size: 0.1,
      load_best_model_at_end: true,
      metric_for_best_model: c.metric,
      early_stopping_steps: c.patience,
    });
    assert.equal(a.greater_is_better, c.greater_is_better);
    const s = newBestState();
    let stopped = false;
    for (const t of c.trace) {
      const d = onEvaluate(a, s, { [`eval_${c.metric}`]: t.value, eval_x: 0 }, t.step);
      const what = `${c.metric} patience ${c.patience} step ${t.step}`;
      assert.deepEqual(
        [d.newBest, s.best_metric, s.best_global_step, s.patience_counter],
        [t.new_best, t.best_metric, t.best_global_step, t.counter],
        what,
      );
      // HF's control flag stays set once raised; ours is per evaluation (the loop ends at the first).
      stopped ||= d.stop;
      assert.equal(stopped, t.stop, what);
    }
  }
  assert.throws(
    () => onEvaluate(parseTrainArgs({ ...M, metric_for_best_model: "bleu" }), newBestState(), { eval_loss: 1 }, 2),
    /metric_for_best_model: 'eval_bleu' is not among the evaluation metrics \(eval_loss\)/,
  );
});

Deno.test("HF's defaults and checks for the best-model keys", () => {
  const a = parseTrainArgs({ ...M, load_best_model_at_end: true, eval_strategy: "steps", val_size: 0.1 });
  assert.deepEqual([a.metric_for_best_model, a.greater_is_better], ["loss", false]);
  assert.equal(parseTrainArgs({ ...M, metric_for_best_model: "accuracy" }).greater_is_better, true);
  const fails = (o: Record<string, unknown>) => {
    try {
      parseTrainArgs({ ...M, ...o });
    } catch (e) {
      return (e as Error).message;
    }
    return "";
  };
  assert.match(fails({ load_best_model_at_end: true }), /load_best_model_at_end: .*save and eval strategy to match/);
  assert.match(
    fails({ load_best_model_at_end: true, eval_strategy: "steps", eval_steps: 3, save_steps: 4, val_size: 0.1 }),
    /saving steps to be a round multiple of the evaluation steps, but found 4/,
  );
  assert.match(fails({ early_stopping_steps: 2 }), /early_stopping_steps: EarlyStoppingCallback requires metric_for/);
  assert.match(
    fails({ early_stopping_steps: 2, metric_for_best_model: "loss" }),
    /EarlyStoppingCallback requires IntervalStrategy of steps or epoch/,
  );
  assert.match(fails({ eval_on_start: true }), /eval_on_start: .*needs an evaluation set/);
});

Deno.test("a run: eval_on_start, early stopping, and the best checkpoint's weights at the end", async () => {
  const root = await Deno.makeTempDir({ prefix: "whetstone-best-" });
  try {
    const out = `${root}/out`;
    const a = parseTrainArgs({
      model_name_or_path: await makeTinyModel(`${root}/model`),
      stage: "sft",
      do_train: true,
      dataset: "whetstone_demo",
      dataset_dir: `${ROOT}fixtures/demo`,
      template: "qwen",
      cutoff_len: 64,
      max_samples: 16,
      val_size: 4,
      output_dir: out,
      logging_steps: 1,
      per_device_train_batch_size: 2,
      learning_rate: 1e-2,
      max_steps: 12,
      eval_strategy: "steps",
      eval_steps: 2,
      save_steps: 2,
      eval_on_start: true,
      // "Better" is a higher loss: as the eval loss falls, the first evaluation stays the best, and with patience 2
      // the run stops at the third (step 6), then loads checkpoint-2.
      metric_for_best_model: "loss",
      greater_is_better: true,
      early_stopping_steps: 2,
      load_best_model_at_end: true,
    });
    const res = await train(a, { progress: false, log: () => {} });
    const evals = res.logHistory.filter((h) => h.eval_loss !== undefined);
    assert.deepEqual(evals.map((h) => h.step).slice(0, 4), [0, 2, 4, 6], "eval_on_start, then every 2 steps");
    assert.ok(evals[2].eval_loss! < evals[1].eval_loss! && evals[3].eval_loss! < evals[1].eval_loss!);
    assert.equal(res.globalStep, 6, "early stopping after two evaluations without a higher loss");
    const state = JSON.parse(await Deno.readTextFile(`${out}/trainer_state.json`));
    assert.deepEqual([state.best_global_step, state.best_metric], [2, evals[1].eval_loss]);
    assert.equal(state.best_model_checkpoint, `${out}/checkpoint-2`);
    const final = await Deno.readFile(`${out}/adapter_model.safetensors`);
    assert.deepEqual(final, await Deno.readFile(`${out}/checkpoint-2/adapter_model.safetensors`), "the best weights");
    assert.notDeepEqual(final, await Deno.readFile(`${out}/checkpoint-6/adapter_model.safetensors`));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
