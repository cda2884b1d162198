/**
 * Stage ppo: TRL's host arithmetic (GAE, whitening, the adaptive KL controller, running score moments) on small cases
 * worked by hand; the traced PPO loss against its formulas at the first update (ratio 1) and the ratio threshold; and
 * end to end on the built-in tiny model with LoRA: a stage rm run's adapter and value head as the reward model on the
 * policy's own base (no second base model in the store), LF's logs and outputs, and the policy's reward rising on a
 * toy reward.
 */
import assert from "node:assert/strict";
import { parseTrainArgs } from "../../config/args.ts";
import type { SftRecord } from "../../data/process.ts";
import { ReferenceExecutor } from "../../exec/reference.ts";
import { attachAdapter } from "../../nn/lora.ts";
import { loadModel } from "../../nn/model.ts";
import { initValueHead } from "../../nn/value_head.ts";
import { AdaptiveKlController, computeTargets, moments, RunningMoments, whiten } from "./ppo_math.ts";
import { trimResponse } from "./ppo.ts";
import { ppoMicroLoss, traceRollout } from "../step/ppo.ts";
import { Graph } from "../../graph/mod.ts";
import { collate } from "../batches.ts";
import { TrainSession } from "../session.ts";
import { train } from "../trainer.ts";

const ROOT = new URL("../../../", import.meta.url).pathname;
const root = await Deno.makeTempDir({ prefix: "whetstone-ppo-" });
const close = (got: number, want: number, tol = 1e-9, what = "") =>
  assert.ok(Math.abs(got - want) <= tol * Math.max(1, Math.abs(want)), `${what}: got ${got}, want ${want}`);

Deno.test("ppo math: per-token rewards, GAE (γ 1, λ 0.95), returns and whitened advantages", () => {
  const r = { logprobs: [-1, -2, -0.5], refLogprobs: [-1.5, -2, -1], values: [0.5, 0.2, -0.1], score: 2 };
  const t = computeTargets([r, { logprobs: [-1], refLogprobs: [-1], values: [1], score: -1 }], 0.2);
  // kl = [0.5, 0, 0.5]; rewards = −0.2·kl, + score at the end.
  t.rewards[0].forEach((x, i) => close(x, [-0.1, 0, -0.1 + 2][i], 1e-12, `reward ${i}`));
  close(t.kls[0], 1);
  close(t.nonScore[0], -0.2);
  // GAE by hand: δ2 = 1.9 − (−0.1) = 2.0; δ1 = 0 + (−0.1) − 0.2 = −0.3; δ0 = −0.1 + 0.2 − 0.5 = −0.4.
  const a2 = 2.0, a1 = -0.3 + 0.95 * a2, a0 = -0.4 + 0.95 * a1;
  [a0, a1, a2].forEach((a, i) => close(t.returns[0][i], a + r.values[i], 1e-12, `return ${i}`));
  // The second sequence: δ = −1 − 1 = −2. Advantages are whitened over all four positions (unbiased variance).
  const raw = [a0, a1, a2, -2], m = raw.reduce((x, y) => x + y) / 4;
  const v = raw.reduce((x, y) => x + (y - m) ** 2, 0) / 3;
  [...t.advantages[0], ...t.advantages[1]].forEach((x, i) => close(x, (raw[i] - m) / Math.sqrt(v + 1e-8), 1e-12));
  // whiten without shifting keeps the mean.
  const w = whiten([[1, 2], [3]], false);
  close(moments(w).mean, 2, 1e-12, "mean kept");
});

Deno.test("ppo math: the adaptive KL controller and the running score moments are TRL's", () => {
  const kl = new AdaptiveKlController(0.2, 6, 10000);
  kl.update(12, 8); // error clipped to 0.2
  close(kl.value, 0.2 * (1 + 0.2 * 8 / 10000), 1e-15);
  kl.update(3, 8); // error −0.5 → −0.2
  close(kl.value, 0.2 * (1 + 0.2 * 8 / 10000) * (1 - 0.2 * 8 / 10000), 1e-15);
  const rm = new RunningMoments();
  const a = [1, 2, 3, 6], b = [0, 4];
  const first = rm.update(a);
  close(first.mean, 3);
  close(first.std, Math.sqrt(14 / 3));
  rm.update(b);
  const all = [...a, ...b], mean = all.reduce((x, y) => x + y) / all.length;
  close(rm.mean, mean, 1e-9, "running mean");
  close(rm.std, Math.sqrt(all.reduce((x, y) => x + (y - mean) ** 2, 0) / (all.length - 1)), 1e-9, "running std");
});

Deno.test("ppo: responses are trimmed as LF trims them", () => {
  assert.deepEqual(trimResponse([5, 6, 2, 0, 0], 0, 2), [5, 6, 2]);
  assert.deepEqual(trimResponse([5, 6, 0, 0], 0, 0), [5, 6, 0]); // pad is eos: the eos after the text is kept
  assert.deepEqual(trimResponse([0, 0], 0, 2), [0]); // an empty response keeps one token
  assert.deepEqual(trimResponse([7, 8], 0, 2), [7, 8]);
});

Deno.test("ppo step: at the first update (ratio 1) the loss is TRL's; a ratio over the threshold zeroes it", async () => {
  const model = await loadModel(`${ROOT}fixtures/models/llama`, { executor: new ReferenceExecutor() });
  await attachAdapter(model, { r: 4, targets: ["q_proj", "v_proj"], init: false }, { seed: 1 });
  initValueHead(model, { seed: 2 });
  const B = 2, L = 8;
  const rows: SftRecord[] = [
    { input_ids: [1, 5, 9, 12, 7], attention_mask: [1, 1, 1, 1, 1], labels: [-100, -100, -100, 12, 7] },
    { input_ids: [1, 3, 4, 8], attention_mask: [1, 1, 1, 1], labels: [-100, -100, 4, 8] },
  ];
  const mb = collate(rows, B, L);
  const feeds = { ids_0: mb.ids, positions_0: mb.positions, segments_0: mb.segments, labels_0: mb.labels };
  const ro = await (await model.executor.compile(traceRollout(model, "base", B, L))).run(feeds);
  const mask: number[] = Array.from(mb.labels, (l) => (l >= 0 ? 1 : 0));
  assert.equal(mask.reduce((a, b) => a + b), 4);
  const adv = mask.map((m, i) => m * Math.sin(i + 1)), ret = mask.map((m, i) => m * (0.3 * i - 1));
  const run = async (shift: number) => {
    const g = new Graph();
    const { loss, stats } = ppoMicroLoss(model, g, 0, B, L);
    g.output("loss", loss);
    g.output("stats", stats);
    return await (await model.executor.compile(g)).run({
      ...feeds,
      old_logprobs_0: Array.from(ro.logprobs, (x) => x - shift),
      old_values_0: ro.values,
      advantages_0: adv,
      returns_0: ret,
    });
  };
  const o = await run(0);
  const n = 4, mm = (f: (i: number) => number) => mask.reduce((s, m, i) => s + m * f(i), 0) / n;
  const pg = mm((i) => -adv[i]);
  const vf = 0.5 * mm((i) => (ro.values[i] - ret[i]) ** 2);
  close(o.stats[1], pg, 1e-9, "policy loss");
  close(o.stats[2], vf, 1e-9, "value loss");
  close(o.stats[0], pg + 0.1 * vf, 1e-9, "total");
  close(o.loss[0], pg + 0.1 * vf, 1e-9, "loss");
  close(o.stats[3], 1, 1e-12, "ratio");
  assert.equal(o.stats[4], 0);
  const far = await run(3); // ratio e³ ≈ 20 > 10: skipped
  assert.equal(far.loss[0], 0);
  close(far.stats[3], Math.exp(3), 1e-9, "mean ratio");
  model.executor.dispose();
});

function args(out: string, extra: Record<string, unknown> = {}) {
  return parseTrainArgs({
    model_name_or_path: `${ROOT}fixtures/tiny/model`,
    do_train: true,
    finetuning_type: "lora",
    lora_target: "all",
    dataset_dir: `${ROOT}fixtures/demo`,
    template: "qwen",
    default_system: "You are a helpful assistant.",
    cutoff_len: 64,
    output_dir: out,
    logging_steps: 1,
    lr_scheduler_type: "constant",
    save_strategy: "no",
    seed: 3,
    ...extra,
  });
}

Deno.test("ppo: an rm run's adapter and value head score on the policy's base; LF's logs and outputs", async () => {
  const rm = `${root}/rm`;
  await train(
    args(rm, {
      stage: "rm",
      dataset: "whetstone_pref",
      per_device_train_batch_size: 4,
      learning_rate: 2e-3,
      max_steps: 4,
    }),
    { progress: false, log: () => {} },
  );
  const out = `${root}/ppo`;
  const lines: string[] = [];
  const s = await TrainSession.create(
    args(out, {
      stage: "ppo",
      dataset: "whetstone_demo",
      reward_model: rm,
      per_device_train_batch_size: 2,
      gradient_accumulation_steps: 2,
      ppo_epochs: 2,
      max_steps: 2,
      max_new_tokens: 6,
      learning_rate: 1e-3,
      save_steps: 1,
      save_strategy: "steps",
      plot_loss: true,
    }),
    { log: (l) => lines.push(l) },
  );
  assert.ok(
    lines.some((l) => /reward model: adapter and value head of .* on the policy's base/.test(l)),
    lines.join("\n"),
  );
  const ex = s.model.executor;
  // Model sharing: the reward model adds an adapter and a head, never a second base; the reference is the base.
  assert.ok(ex.hasParam("reward.v_head.summary.weight") && ex.hasParam("v_head.summary.weight"));
  assert.ok(!ex.hasParam("reward.model.embed_tokens.weight") && !ex.hasParam("ref.model.embed_tokens.weight"));
  assert.equal(s.plan.total_steps, 2);
  const recs = await s.step(2);
  for (const r of recs) {
    for (const k of ["loss", "reward", "grad_norm", "objective/kl", "objective/kl_coef", "ppo/loss/value"]) {
      assert.ok(Number.isFinite(r[k as keyof typeof r] as number), `step ${r.current_steps} lacks ${k}`);
    }
  }
  close(recs[0]["objective/kl"] as number, 0, 1e-4, "the policy starts as the reference (LoRA B = 0)");
  assert.ok(s.finished);
  for (const f of ["adapter_model.safetensors", "value_head.safetensors", "trainer_state.json", "checkpoint-1"]) {
    await Deno.stat(`${out}/${f}`);
  }
  await assert.rejects(Deno.stat(`${out}/train_results.json`), Deno.errors.NotFound); // LF's run_ppo writes none
  await Deno.stat(`${out}/training_reward.svg`);
  const log = (await Deno.readTextFile(`${out}/trainer_log.jsonl`)).trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(log.map((l) => l.current_steps), [1, 2]);
  assert.ok(log.every((l) => Number.isFinite(l.reward) && Number.isFinite(l.loss)), JSON.stringify(log));
  const hist = s.logHistory;
  assert.deepEqual(hist.map((h) => h.step), [0, 1]); // LF logs its 0-based loop index
  assert.deepEqual(Object.keys(hist[0]), ["loss", "reward", "learning_rate", "epoch", "step"]);
  s.close();
});

Deno.test("ppo: the policy's reward rises on a toy reward (the share of common tokens in its answers)", async () => {
  const common = new Set([262, 484, 257, 283]); // " the", "The", " a", " of" in the tiny tokenizer
  const score = (r: number[]) => (5 * r.filter((t) => common.has(t)).length) / r.length;
  const s = await TrainSession.create(
    args(`${root}/ppo-toy`, {
      stage: "ppo",
      dataset: "whetstone_demo",
      reward_model: "(a function)",
      per_device_train_batch_size: 8,
      max_steps: 8,
      max_new_tokens: 8,
      learning_rate: 2e-3,
      top_k: 0,
      top_p: 1,
      temperature: 1,
    }),
    { log: () => {}, reward: (_q, rs) => rs.map(score), planMemory: false },
  );
  const prompts = (s.data.train.records as SftRecord[]).slice(0, 16).map((r) => r.input_ids);
  const probe = async () => {
    let sum = 0;
    for (const seed of [101, 202]) {
      const rs = await s.model.generateBatch(prompts, { maxNewTokens: 8, doSample: true, seed, stop: s.data.stop });
      sum += rs.reduce((x, r) => x + score(r), 0);
    }
    return sum / (2 * prompts.length);
  };
  const before = await probe();
  const recs = await s.step(8);
  const after = await probe();
  const rewards = recs.map((r) => r.reward!);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  assert.ok(mean(rewards.slice(-3)) > mean(rewards.slice(0, 3)), `rewards by step ${rewards}`);
  assert.ok(after > before + 0.2, `probe reward ${before} → ${after}`);
  s.close();
});

Deno.test({
  name: "ppo: cleanup",
  fn: async () => {
    await Deno.remove(root, { recursive: true });
  },
});
