/**
 * LongLoRA's S²-attention in stage ppo (step/ppo.ts): the rollout's policy log-probs and values and the LoRA reference
 * (the policy without its adapter) are those of S²-attention forwards; a separate reference model keeps plain
 * attention; the PPO update's loss at ratio 1 uses the S² values; without shift_attn nothing changes.
 */
import assert from "node:assert/strict";
import type { SftRecord } from "../../data/process.ts";
import { ReferenceExecutor } from "../../exec/reference.ts";
import { crossEntropy, Graph, neg, reshape } from "../../graph/mod.ts";
import { traceDecoder } from "../../nn/decoder.ts";
import { attachAdapter } from "../../nn/lora.ts";
import { s2AttendHook } from "../../nn/longlora.ts";
import { loadModel, type Model } from "../../nn/model.ts";
import { initValueHead, traceValues } from "../../nn/value_head.ts";
import { collate } from "../batches.ts";
import { loadModelInto } from "../stages/reference.ts";
import { baseWeights } from "./pref.ts";
import { ppoMicroLoss, traceRollout } from "./ppo.ts";

const ROOT = new URL("../../../", import.meta.url).pathname;
const B = 2, L = 16;
const rows: SftRecord[] = [
  {
    input_ids: [1, 5, 9, 12, 7, 30, 31, 2],
    attention_mask: new Array(8).fill(1),
    labels: [-100, -100, -100, 12, 7, 30, 31, 2],
  },
  { input_ids: [1, 3, 4, 8, 11, 40], attention_mask: new Array(6).fill(1), labels: [-100, -100, 4, 8, 11, 40] },
];
const mb = collate(rows, B, L);
const feeds = { ids_0: mb.ids, positions_0: mb.positions, segments_0: mb.segments, labels_0: mb.labels };

/** Log-probs [B·L] and values of one decoder forward of `model`, with S² or not, with the adapter or its base. */
async function forward(model: Model, s2: boolean, base: boolean, values = !base) {
  const g = new Graph(), c = model.config;
  const inp = {
    ids: g.input("ids_0", [B, L], "i32"),
    positions: g.input("positions_0", [B, L], "i32"),
    segments: g.input("segments_0", [B, L], "i32"),
  };
  const labels = g.input("labels_0", [B * L], "i32");
  let w = base ? baseWeights(model, g) : model.weights(g);
  if (s2) w = { ...w, attend: s2AttendHook(c.attnScale) };
  const out = traceDecoder(c, inp, w);
  g.output("logprobs", neg(crossEntropy(reshape(out.logits, [B * L, c.vocab]), labels, { reduction: "none" })));
  if (values) g.output("values", reshape(traceValues(g, model, out.hidden), [B * L]));
  return await (await model.executor.compile(g)).run(feeds);
}

const same = (a: ArrayLike<number>, b: ArrayLike<number>, what: string) =>
  Array.from(b).forEach((x, i) => assert.ok(Math.abs(a[i] - x) <= 1e-9 * (1 + Math.abs(x)), `${what}[${i}]`));
const differs = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(b).some((x, i) => Math.abs(a[i] - x) > 1e-6);

Deno.test("ppo shift_attn: S² in the rollout's policy and LoRA reference, not in a separate reference", async () => {
  const model = await loadModel(`${ROOT}fixtures/models/llama`, { executor: new ReferenceExecutor() });
  await attachAdapter(model, { r: 4, targets: ["q_proj", "v_proj"], init: false }, { seed: 1 });
  initValueHead(model, { seed: 2 });
  const s2 = await (await model.executor.compile(traceRollout(model, "base", B, L, true))).run(feeds);
  const plain = await (await model.executor.compile(traceRollout(model, "base", B, L))).run(feeds);
  const pol = await forward(model, true, false), ref = await forward(model, true, true);
  same(s2.logprobs, pol.logprobs, "policy log-probs");
  same(s2.values, pol.values, "values");
  same(s2.ref_logprobs, ref.logprobs, "LoRA reference log-probs");
  assert.ok(differs(s2.logprobs, plain.logprobs) && differs(s2.ref_logprobs, plain.ref_logprobs), "S² changes them");
  same(plain.logprobs, (await forward(model, false, false)).logprobs, "plain policy");

  // A separate reference model (full / freeze training) is loaded for inference: plain attention.
  const frozen = await loadModelInto(`${ROOT}fixtures/models/llama`, model, "ref.");
  const sep = await (await model.executor.compile(traceRollout(model, frozen, B, L, true))).run(feeds);
  same(sep.ref_logprobs, (await forward(frozen, false, false, false)).logprobs, "separate reference");

  // The update at ratio 1 (old log-probs from the S² rollout): TRL's policy loss, −mean advantage.
  const mask = Array.from(mb.labels, (l): number => (l >= 0 ? 1 : 0)), n = mask.reduce((a, b) => a + b);
  const adv = mask.map((m, i) => m * Math.cos(i));
  const g = new Graph();
  const { stats } = ppoMicroLoss(model, g, 0, B, L, true);
  g.output("stats", stats);
  const o = await (await model.executor.compile(g)).run({
    ...feeds,
    old_logprobs_0: s2.logprobs,
    old_values_0: s2.values,
    advantages_0: adv,
    returns_0: s2.values,
  });
  assert.ok(Math.abs(o.stats[3] - 1) < 1e-12, `ratio ${o.stats[3]}`);
  const pg = -adv.reduce((s, a) => s + a, 0) / n;
  assert.ok(Math.abs(o.stats[1] - pg) < 1e-9, `policy loss ${o.stats[1]} vs ${pg}`);
  model.executor.dispose();
});
