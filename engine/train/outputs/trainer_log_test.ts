import assert from "node:assert/strict";
import {
  formatTimedelta,
  pyFloat,
  pyJson,
  readTrainerLog,
  readTrainerState,
  TrainerLog,
  writeResults,
  writeTrainerState,
} from "./trainer_log.ts";
import { pyRound } from "../../util/py_round.ts";

const FIX = new URL("../../../fixtures/schedules/", import.meta.url);
const pyformat = JSON.parse(await Deno.readTextFile(new URL("pyformat.json", FIX)));

Deno.test("pyFloat / pyRound / formatTimedelta / pyJson match Python", () => {
  for (const [x, s] of pyformat.repr as [number, string][]) assert.equal(pyFloat(x), s, `repr(${x})`);
  for (const [x, r] of pyformat.round2 as [number, number][]) assert.equal(pyRound(x, 2), r, `round(${x}, 2)`);
  for (const [n, s] of pyformat.timedelta as [number, string][]) assert.equal(formatTimedelta(n), s, `timedelta(${n})`);
  const { value, dumps, indent2_sorted } = pyformat.record;
  value.loss = 2; // JSON transport turned Python's 2.0 into 2: pyJson writes non-int keys as floats again
  assert.equal(pyJson(value), dumps);
  assert.equal(pyJson(value, 2, true), indent2_sorted);
  assert.equal(pyJson({ a: [], b: {}, c: [1.5, null], d: undefined }), '{"a": [], "b": {}, "c": [1.5, null]}');
  assert.equal(formatTimedelta(-5), "-1 day, 23:59:55");
});

Deno.test("TrainerLog writes LLaMA-Factory records and truncates on resume", async () => {
  const dir = await Deno.makeTempDir();
  try {
    let t = 0;
    const now = () => t;
    {
      using log = await TrainerLog.open(`${dir}/out`, { totalSteps: 100, now });
      t = 35_500;
      const r = log.log(10, { loss: 2.0, lr: 4.5e-5, epoch: 0.1, totalTokens: 65_536 });
      assert.deepEqual(Object.keys(r), [
        "current_steps",
        "total_steps",
        "loss",
        "lr",
        "epoch",
        "percentage",
        "elapsed_time",
        "remaining_time",
        "throughput",
        "total_tokens",
      ]);
      // remaining = 90 steps * 3.55 s = 319.5 s -> 0:05:19
      assert.equal(
        await Deno.readTextFile(`${dir}/out/trainer_log.jsonl`),
        '{"current_steps": 10, "total_steps": 100, "loss": 2.0, "lr": 4.5e-05, "epoch": 0.1, "percentage": 10.0, ' +
          '"elapsed_time": "0:00:35", "remaining_time": "0:05:19", "throughput": 1846.08, "total_tokens": 65536}\n',
      );
      t = 70_000;
      log.log(20, { loss: 1.5, lr: 4e-5, epoch: 0.2 });
      log.log(20, { eval_loss: 1.75, epoch: 0.2 });
      t = 100_000;
      log.log(30, { loss: 1.25, lr: 3.5e-5, epoch: 0.3 });
    }
    // A torn last line, as a kill mid-write could leave.
    await Deno.writeTextFile(`${dir}/out/trainer_log.jsonl`, '{"current_steps": 40, "tot', { append: true });
    assert.deepEqual((await readTrainerLog(`${dir}/out`)).map((r) => r.current_steps), [10, 20, 20, 30]);

    // Resume from checkpoint-20: the records after step 20 and the torn line go, the rest stays.
    t = 0;
    using log = await TrainerLog.open(`${dir}/out`, { totalSteps: 100, resumeStep: 20, resumeTokens: 60_000, now });
    let recs = await readTrainerLog(`${dir}/out`);
    assert.deepEqual(recs.map((r) => [r.current_steps, r.loss, r.eval_loss]), [
      [10, 2, undefined],
      [20, 1.5, undefined],
      [20, undefined, 1.75],
    ]);
    t = 10_000;
    const r = log.log(25, { loss: 1.4, totalTokens: 70_000 });
    // 5 steps in 10 s this session: 75 left -> 150 s; throughput counts only this session's 10k tokens.
    assert.deepEqual([r.elapsed_time, r.remaining_time, r.throughput, r.percentage], ["0:00:10", "0:02:30", 1000, 25]);
    recs = await readTrainerLog(`${dir}/out`);
    assert.deepEqual(recs.map((r) => r.current_steps), [10, 20, 20, 25]);

    // A fresh run (no resumeStep) starts a new file.
    log.close();
    assert.throws(() => log.log(26), /closed/);
    using fresh = await TrainerLog.open(`${dir}/out`, { totalSteps: 0, now });
    fresh.log(0, {});
    assert.deepEqual(await readTrainerLog(`${dir}/out`), [
      { current_steps: 0, total_steps: 0, percentage: 100, elapsed_time: "0:00:00", remaining_time: "0:00:00" },
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeTrainerState / writeResults reproduce HF's files byte for byte", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const hf = new URL("hf_output/", FIX);
    const expected = await Deno.readTextFile(new URL("trainer_state.json", hf));
    const parsed = JSON.parse(expected);
    await writeTrainerState(dir, {
      global_step: parsed.global_step,
      epoch: parsed.epoch,
      max_steps: parsed.max_steps,
      num_train_epochs: parsed.num_train_epochs,
      logging_steps: parsed.logging_steps,
      save_steps: parsed.save_steps,
      train_batch_size: 1,
      log_history: parsed.log_history,
    });
    assert.equal(await Deno.readTextFile(`${dir}/trainer_state.json`), expected);
    assert.equal((await readTrainerState(dir)).global_step, 6);

    const train = JSON.parse(await Deno.readTextFile(new URL("train_results.json", hf)));
    const evalm = JSON.parse(await Deno.readTextFile(new URL("eval_results.json", hf)));
    await writeResults(dir, "train", train);
    await writeResults(dir, "eval", evalm);
    for (const f of ["train_results.json", "eval_results.json", "all_results.json"]) {
      assert.equal(await Deno.readTextFile(`${dir}/${f}`), await Deno.readTextFile(new URL(f, hf)), f);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
