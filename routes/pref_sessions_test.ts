/**
 * Preference sessions over HTTP: `POST /sessions` with stage dpo (examples/demo_dpo.yaml), steps whose records carry
 * LLaMA-Factory's rewards metrics, evaluations with eval_rewards/…, the trainer log's `accuracy`; stage rm's
 * eval_accuracy; and stage ppo without a reward model is a 400 naming the key.
 */
import assert from "node:assert/strict";
import { startServer } from "./testing.ts";

const REWARDS = ["rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins"];

Deno.test("sessions: stage dpo steps carry the rewards metrics; evaluate gives eval_rewards; rm gives eval_accuracy", async () => {
  const t = await startServer();
  try {
    const out = `${t.tmp}/dpo`;
    const created = await t.call("POST", "/sessions", {
      config: "examples/demo_dpo.yaml",
      output_dir: out,
      max_steps: 4,
      logging_steps: 2,
      save_steps: 100,
      eval_steps: 100,
      cutoff_len: 128,
    });
    assert.equal(created.status, 201, created.text);
    const { id, plan } = created.json;
    assert.deepEqual([plan.stage, plan.finetuning_type, plan.total_steps], ["dpo", "lora", 4]);

    const step = await t.call("POST", `/sessions/${id}/step`, { steps: 4 });
    assert.equal(step.status, 200, step.text);
    const records = step.json.steps;
    assert.equal(records.length, 4);
    for (const r of records) {
      for (const k of [...REWARDS, "logps/chosen", "logps/rejected", "loss", "grad_norm", "accuracy"]) {
        assert.ok(Number.isFinite(r[k]), `step ${r.current_steps} lacks ${k}: ${JSON.stringify(r)}`);
      }
      assert.equal(r.accuracy, r["rewards/accuracies"]);
    }
    assert.ok(records[3]["rewards/margins"] > records[0]["rewards/margins"], "the margin grows");

    const ev = await t.call("POST", `/sessions/${id}/evaluate`);
    assert.equal(ev.status, 200, ev.text);
    for (const k of ["eval_loss", "eval_rewards/accuracies", "eval_rewards/margins", "eval_logps/chosen"]) {
      assert.ok(Number.isFinite(ev.json[k]), `evaluate lacks ${k}: ${ev.text}`);
    }
    assert.equal(ev.json.perplexity, undefined);

    // trainer_log.jsonl as LF writes it: `accuracy` (from rewards/accuracies) on the logging steps.
    const log = (await t.call("GET", `/sessions/${id}/log`)).json.entries;
    const train = log.filter((l: { loss?: number }) => l.loss !== undefined);
    assert.deepEqual(train.map((l: { current_steps: number }) => l.current_steps), [2, 4]);
    assert.ok(train.every((l: { accuracy?: number }) => l.accuracy! >= 0 && l.accuracy! <= 1), JSON.stringify(train));
    await Deno.stat(`${out}/adapter_model.safetensors`);

    const rm = await t.call("POST", "/sessions", {
      config: "examples/demo_rm.yaml",
      output_dir: `${t.tmp}/rm`,
      max_steps: 2,
      cutoff_len: 128,
    });
    assert.equal(rm.status, 201, rm.text);
    const rmEval = await t.call("POST", `/sessions/${rm.json.id}/evaluate`);
    assert.ok(rmEval.json.eval_accuracy >= 0 && rmEval.json.eval_accuracy <= 1, rmEval.text);
    const rmStep = await t.call("POST", `/sessions/${rm.json.id}/step`, { steps: 2 });
    assert.ok(rmStep.json.steps.every((r: { accuracy?: number }) => r.accuracy !== undefined), rmStep.text);
    await Deno.stat(`${t.tmp}/rm/value_head.safetensors`);

    const ppo = await t.call("POST", "/sessions", {
      config: "examples/demo_dpo.yaml",
      stage: "ppo",
      output_dir: `${t.tmp}/ppo`,
    });
    assert.deepEqual([ppo.status, ppo.json.field], [400, "reward_model"], ppo.text);
    assert.match(ppo.json.error, /`reward_model` is necessary for PPO training/);
  } finally {
    await t.close();
  }
});
