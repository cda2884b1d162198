/**
 * TrainSession on the built-in tiny model and the demo data: stepping in pieces gives the losses of one `train`
 * run, events come in order, one operation runs at a time, generation uses the template, and a saved session
 * resumes where it stopped.
 */
import assert from "node:assert/strict";
import { parseTrainArgs } from "../config/args.ts";
import { SessionBusyError, type SessionEvent, SessionFinishedError, TrainSession } from "./session.ts";
import { train } from "./trainer.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const root = await Deno.makeTempDir({ prefix: "whetstone-session-" });
const quiet = { log: () => {} };

function args(out: string, extra: Record<string, unknown> = {}) {
  return parseTrainArgs({
    model_name_or_path: `${ROOT}fixtures/tiny/model`,
    stage: "sft",
    do_train: true,
    finetuning_type: "lora",
    lora_target: "all",
    dataset: "whetstone_demo",
    dataset_dir: `${ROOT}fixtures/demo`,
    template: "qwen",
    default_system: "You are a helpful assistant.",
    cutoff_len: 64,
    max_samples: 24,
    val_size: 4,
    output_dir: out,
    logging_steps: 2,
    per_device_train_batch_size: 4,
    learning_rate: 5e-3,
    max_steps: 6,
    save_steps: 3,
    eval_steps: 3,
    eval_strategy: "steps",
    seed: 7,
    ...extra,
  });
}

Deno.test("session: stepping 2 + 4 gives train()'s losses, logs and files; events come in order", async () => {
  const whole = await train(args(`${root}/train`), { progress: false, ...quiet });
  const s = await TrainSession.create(args(`${root}/session`), quiet);
  assert.equal(s.plan.total_steps, 6);
  assert.ok(s.plan.memory!.activations > 0);
  const events: SessionEvent[] = [];
  s.on((e) => events.push(e));
  const a = await s.step(2);
  const b = await s.step(10);
  assert.deepEqual([...a, ...b].map((r) => r.current_steps), [1, 2, 3, 4, 5, 6]);
  assert.ok([...a, ...b].every((r) => Number.isFinite(r.loss) && r.grad_norm! > 0), "every step reads its loss back");
  assert.deepEqual(s.losses.map((l) => l.step), whole.losses.map((l) => l.step));
  s.losses.forEach((l, i) => {
    const w = whole.losses[i].loss;
    assert.ok(Math.abs(l.loss - w) <= 1e-6 * Math.abs(w), `step ${l.step}: ${l.loss} vs train() ${w}`);
  });
  // The window mean at a logging step is the mean of its steps' losses.
  const steps = [...a, ...b];
  assert.ok(Math.abs(s.losses[0].loss - (steps[0].loss! + steps[1].loss!) / 2) < 1e-5);
  assert.deepEqual(s.evalLosses.map((e) => e.step), [3, 6]);
  assert.deepEqual(s.evalLosses.map((e) => e.step), whole.evalLosses.map((e) => e.step));
  assert.equal(s.finished, true);
  assert.ok(s.result && s.result.metrics.train_loss > 0);
  for (const f of ["adapter_model.safetensors", "trainer_state.json", "all_results.json", "checkpoint-3"]) {
    await Deno.stat(`${root}/session/${f}`);
  }
  const lines = (t: string) => t.trim().split("\n").map((l) => JSON.parse(l).current_steps);
  assert.deepEqual(
    lines(await Deno.readTextFile(`${root}/session/trainer_log.jsonl`)),
    lines(await Deno.readTextFile(`${root}/train/trainer_log.jsonl`)),
  );
  const kinds = events.map((e) => e.type === "step" ? `step${e.data.current_steps}` : e.type);
  assert.deepEqual(kinds, [
    "step1",
    "step2",
    "done",
    "step3",
    "eval",
    "save",
    "step4",
    "step5",
    "step6",
    "eval",
    // HF's DefaultFlowCallback: save_strategy "steps" also saves at the last step.
    "save",
    "eval",
    "done",
  ]);
  await assert.rejects(s.step(1), SessionFinishedError);
  s.close();
});

Deno.test("session: one operation at a time; generation renders the template; a saved session resumes", async () => {
  const out = `${root}/busy`;
  const s = await TrainSession.create(args(out, { save_steps: 100 }), quiet);
  const running = s.step(2);
  await assert.rejects(s.generate([{ role: "user", content: "Hi" }], { maxNewTokens: 2 }), SessionBusyError);
  await assert.rejects(s.step(1), /busy \(step is running\)/);
  const first = await running;
  const msgs = [{ role: "user", content: "What is Whetstone?" }];
  const g = await s.generate(msgs, { maxNewTokens: 6, doSample: false });
  assert.deepEqual(g.ids, await s.model.generate(s.chat.encode(msgs), { maxNewTokens: 6, stop: s.data.stop }));
  assert.equal(g.promptTokens, s.chat.encode(msgs).length);
  const ev = await s.evaluate();
  assert.ok(ev.eval_loss > 0 && ev.current_steps === 2);
  const saved = await s.save();
  assert.equal(saved.checkpoint, `${out}/checkpoint-2`);
  const next = await s.step(1);
  s.close();

  const r = await TrainSession.create(args(out, { save_steps: 100, resume_from_checkpoint: true }), quiet);
  assert.equal(r.globalStep, 2);
  const again = await r.step(1);
  assert.ok(
    Math.abs(again[0].loss! - next[0].loss!) <= 1e-5 * Math.abs(next[0].loss!),
    `${again[0].loss} vs ${next[0].loss}`,
  );
  assert.ok(first[1].loss! > 0);
  r.close();
  r.close(); // closing twice is harmless
  await assert.rejects(r.step(1), /the session is closed/);
});

Deno.test("session: an aborted signal ends step(n) at the next step boundary; adapter export", async () => {
  const s = await TrainSession.create(args(`${root}/abort`, { max_steps: 12, save_steps: 100 }), quiet);
  const ac = new AbortController();
  const records = await s.step(10, (r) => r.current_steps === 3 && ac.abort(), { signal: ac.signal });
  assert.deepEqual(records.map((r) => r.current_steps), [1, 2, 3]);
  assert.deepEqual([s.globalStep, s.busy, s.finished], [3, undefined, false]);
  assert.deepEqual(await s.step(2, undefined, { signal: ac.signal }), [], "an aborted signal runs no step");
  assert.equal((await s.step(9)).at(-1)!.current_steps, 12);
  const dir = `${root}/abort-adapter`;
  await s.exportAdapter(dir);
  assert.deepEqual(
    await Deno.readFile(`${dir}/adapter_model.safetensors`),
    await Deno.readFile(`${root}/abort/adapter_model.safetensors`),
  );
  s.close();
});

Deno.test({
  name: "session: cleanup",
  fn: async () => {
    await Deno.remove(root, { recursive: true });
  },
});
