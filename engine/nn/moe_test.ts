/**
 * Mixture-of-experts families against transformers goldens (fixtures/models/<mixtral|qwen2_moe|qwen3_moe>, made by
 * the MoE block of fixtures/make_models.py), on the reference executor, WebGPU and ONNX Runtime: logits within 1e-4,
 * the loss within 1e-5 relative, every gradient within 1e-4 relative norm; the loss and gradients with the
 * load-balancing term (output_router_logits, router_aux_loss_coef); a PEFT LoRA adapter's loss and gradients; greedy
 * generation token for token (mixtral_bf16: bf16 weights, as released, kept in bf16). Plus the top-k mask and the
 * config keys.
 */
import assert from "node:assert/strict";
import { Graph } from "../graph/mod.ts";
import { decoderConfig } from "./config.ts";
import { allLinearTargets, resolveTargets } from "./lora.ts";
import { loadModel } from "./model.ts";
import { topkMask } from "./moe.ts";
import { maskedLogitError } from "./lora_testing.ts";
import { executors } from "./executors_testing.ts";
import { checkGrads, moeGolden, near } from "./moe_testing.ts";

const root = new URL("../../fixtures/models/", import.meta.url).pathname;
const FAMILIES = ["mixtral", "qwen2_moe", "qwen3_moe", "mixtral_bf16"];
const WITH_LORA = new Set(["mixtral", "qwen2_moe", "qwen3_moe"]);

for (const family of FAMILIES) {
  for (const [exName, make] of executors()) {
    Deno.test(`${family} on ${exName}: logits, loss, gradients (with and without the router loss) match transformers`, async () => {
      const g = await moeGolden(`${root}${family}`);
      const model = await loadModel(`${root}${family}`, { executor: await make(), dtype: "f32" });
      const V = model.config.vocab;
      const opts = { labels: g.labels, attentionMask: g.mask };
      const res = await model.forward(g.ids, opts);
      assert.ok(maskedLogitError(res.logits, g.logits, g.mask, V) <= 1e-4, "logits");
      near(res.loss!, g.loss, "loss");
      const plain = await model.forward([g.ids[0]]);
      let w2 = 0;
      for (let k = 0; k < plain.logits.length; k++) w2 = Math.max(w2, Math.abs(plain.logits[k] - g.logitsNoMask![k]));
      assert.ok(w2 <= 1e-4, `max logit error without a mask ${w2}`);
      near(await model.loss(g.ids, opts), g.loss, "fused-head loss");
      const { loss, grads } = await model.gradients(g.ids, opts);
      near(loss, g.loss, "gradient-graph loss");
      checkGrads(grads, g.grads);
      // output_router_logits with router_aux_loss_coef 0.25, as the golden was made.
      model.config.moe!.outputRouterLogits = true;
      model.config.moe!.auxCoef = 0.25;
      model.setAdapter(undefined); // drops compiled graphs
      near((await model.forward(g.ids, opts)).loss!, g.auxLoss!, "loss with the router loss");
      const aux = await model.gradients(g.ids, opts);
      near(aux.loss, g.auxLoss!, "gradient-graph loss with the router loss");
      checkGrads(aux.grads, g.auxGrads);
    });

    Deno.test({
      name: `${family}/lora on ${exName}: loss, logits and adapter gradients match PEFT`,
      ignore: !WITH_LORA.has(family),
    }, async () => {
      const dir = `${root}${family}/lora`;
      const g = await moeGolden(dir);
      const model = await loadModel(`${root}${family}`, { executor: await make(), adapter: dir });
      const res = await model.forward(g.ids, { labels: g.labels, attentionMask: g.mask });
      assert.ok(maskedLogitError(res.logits, g.logits, g.mask, model.config.vocab) <= 1e-4, "logits");
      near(res.loss!, g.loss, "loss");
      const { loss, grads } = await model.gradients(g.ids, { labels: g.labels, attentionMask: g.mask });
      near(loss, g.loss, "gradient-graph loss");
      checkGrads(grads, g.grads);
    });

    // With the stored dtype (bf16 for mixtral_bf16: its experts are widened before they are stacked).
    Deno.test(`generate ${family} on ${exName}: greedy tokens match transformers`, async () => {
      const gold = JSON.parse(await Deno.readTextFile(`${root}${family}/generate.json`));
      const model = await loadModel(`${root}${family}`, { executor: await make() });
      for (const run of gold.runs) {
        const got = await model.generate(run.prompt, { maxNewTokens: gold.max_new_tokens, stop: gold.eos });
        assert.deepEqual(got, run.new_tokens, `prompt [${run.prompt}]`);
      }
      const batch = await model.generateBatch(gold.runs.map((r: { prompt: number[] }) => r.prompt), {
        maxNewTokens: gold.max_new_tokens,
        stop: gold.eos,
      });
      assert.deepEqual(batch, gold.runs.map((r: { new_tokens: number[] }) => r.new_tokens));
    });
  }
}

Deno.test("topkMask: the k largest per row, ties to the lower index, on every executor", async () => {
  const rows = [[0.1, 0.5, 0.2, 0.5], [3, 1, 2, 0], [-1, -1, -1, -1]];
  const want = [[0, 1, 0, 1], [1, 0, 1, 0], [1, 1, 0, 0]];
  for (const [name, make] of executors()) {
    const g = new Graph();
    const x = g.input("x", [3, 4]);
    g.output("m", topkMask(x, 2));
    const out = await (await (await make()).compile(g)).run({ x: rows.flat() });
    assert.deepEqual(Array.from(out.m), want.flat(), name);
  }
});

Deno.test("MoE config.json keys: v4 and v5 spellings, sparse layers, and LF's lora_target all", async () => {
  const cfg = async (f: string) => decoderConfig(JSON.parse(await Deno.readTextFile(`${root}${f}/config.json`)));
  const mixtral = await cfg("mixtral"), q2 = await cfg("qwen2_moe"), q3 = await cfg("qwen3_moe");
  assert.deepEqual([mixtral.moe!.experts, mixtral.moe!.topK, mixtral.moe!.normTopK], [4, 2, true]);
  assert.deepEqual([q2.moe!.experts, q2.moe!.sharedIntermediate, q2.moe!.sparse, q2.qkvBias], [
    6,
    40,
    [false, true],
    true,
  ]);
  assert.deepEqual([q3.moe!.experts, q3.moe!.topK, q3.moe!.sparse, q3.qkNorm], [8, 3, [false, true, false], true]);
  // "all" is what PEFT finds on transformers 5: routers and routed experts are not nn.Linear there.
  assert.deepEqual(allLinearTargets(mixtral).sort(), ["k_proj", "o_proj", "q_proj", "v_proj"]);
  assert.deepEqual(
    allLinearTargets(q2).sort(),
    ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "shared_expert_gate", "up_proj", "v_proj"],
  );
  assert.ok(!resolveTargets(q2, { targets: ["gate_proj"] }).some((m) => m.includes(".experts.")));
  assert.throws(
    () => decoderConfig({ ...q3.raw, num_experts_per_tok: 9 }),
    /num_experts_per_tok 9 must be in \[1, 8\]/,
  );
});
