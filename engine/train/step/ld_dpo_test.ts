/**
 * `ld_alpha` (LD-DPO): {@linkcode ldRearLabels} and the front + α·rear split against fixtures/losses/ld_dpo.json
 * (LLaMA-Factory's `get_batch_logps` ported in make_ld_dpo.py, float64), and a dpo run on the tiny model where
 * ld_alpha 1 repeats the plain run exactly while 0.5 changes it.
 */
import assert from "node:assert/strict";
import { parseTrainArgs } from "../../config/args.ts";
import { train } from "../trainer.ts";
import { ldRearLabels } from "./pref_feeds.ts";

const ROOT = new URL("../../../", import.meta.url).pathname;
const GOLD = JSON.parse(await Deno.readTextFile(`${ROOT}fixtures/losses/ld_dpo.json`));

Deno.test("LD-DPO's rear tokens and log-probs match LF's get_batch_logps", () => {
  const { L, V } = GOLD, rows = GOLD.labels.length, B = rows / 2;
  // Shifted as the collator shifts them: position t holds the label of t + 1.
  const shifted = new Int32Array(rows * L).fill(-100);
  for (let r = 0; r < rows; r++) for (let t = 0; t + 1 < L; t++) shifted[r * L + t] = GOLD.labels[r][t + 1];
  const rear = ldRearLabels(shifted, B, L);
  const logp = (r: number, t: number, y: number) => {
    const row = GOLD.logits.slice((r * L + t) * V, (r * L + t + 1) * V) as number[];
    const m = Math.max(...row), lse = m + Math.log(row.reduce((s, x) => s + Math.exp(x - m), 0));
    return row[y] - lse;
  };
  for (const c of GOLD.cases) {
    for (let r = 0; r < rows; r++) {
      let all = 0, back = 0;
      for (let t = 0; t < L; t++) {
        if (shifted[r * L + t] !== -100) all += logp(r, t, shifted[r * L + t]);
        if (rear[r * L + t] !== -100) back += logp(r, t, rear[r * L + t]);
      }
      const got = c.ld_alpha === null ? all : all - (1 - c.ld_alpha) * back;
      assert.ok(Math.abs(got - c.logps[r]) < 1e-12, `ld_alpha ${c.ld_alpha} row ${r}: ${got} vs ${c.logps[r]}`);
    }
  }
  // The golden's pairs have a rear part on both sides of the table (chosen longer in one pair, rejected in the other).
  assert.ok(rear.some((x, i) => x !== -100 && i < B * L) && rear.some((x, i) => x !== -100 && i >= B * L));
});

Deno.test("ld_alpha in a dpo run: 1 repeats the plain run, 0.5 changes it", async () => {
  const out = await Deno.makeTempDir({ prefix: "whetstone-ld-" });
  try {
    const run = async (ld: number | null) =>
      (await train(
        parseTrainArgs({
          model_name_or_path: `${ROOT}fixtures/tiny/model`,
          stage: "dpo",
          do_train: true,
          dataset: "whetstone_pref",
          dataset_dir: `${ROOT}fixtures/demo`,
          template: "qwen",
          cutoff_len: 128,
          output_dir: `${out}/${ld}`,
          logging_steps: 1,
          per_device_train_batch_size: 4,
          learning_rate: 2e-3,
          max_steps: 3,
          save_strategy: "no",
          seed: 7,
          ld_alpha: ld,
        }),
        { progress: false, log: () => {} },
      )).logHistory.filter((h) => h.loss !== undefined).map((h) => [h.loss, h["logps/chosen"]]);
    const plain = await run(null), one = await run(1), half = await run(0.5);
    assert.deepEqual(one, plain);
    assert.notDeepEqual(half, plain);
    assert.ok(half.every(([l]) => Number.isFinite(l)));
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
