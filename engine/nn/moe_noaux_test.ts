/**
 * deepseek_v3 (multi-head latent attention; noaux_tc routing) and glm4_moe against transformers goldens
 * (fixtures/models/<deepseek_v3|deepseek_v3_plain|glm4_moe>, made by fixtures/make_models_noaux.py), on the reference
 * executor, WebGPU and ONNX Runtime: logits within 1e-4, the loss within 1e-5 relative, every gradient within 1e-4
 * relative norm (the e_score_correction_bias buffer has none, as in transformers), a PEFT LoRA adapter's loss and
 * gradients, greedy generation token for token. Plus the config keys, the grouped router against a plain loop, and
 * LLaMA-Factory's moe_aux_loss_coef leaving these families' loss unchanged.
 */
import assert from "node:assert/strict";
import { Graph } from "../graph/mod.ts";
import { ReferenceExecutor } from "../exec/reference.ts";
import { decoderConfig } from "./config.ts";
import { allLinearTargets } from "./lora.ts";
import { loadModel } from "./model.ts";
import { configureMoe } from "./moe.ts";
import { noauxRoute } from "./moe_router.ts";
import { onnxUnsupported } from "./onnx_support.ts";
import { maskedLogitError } from "./lora_testing.ts";
import { executors } from "./executors_testing.ts";
import { checkGrads, moeGolden, near } from "./moe_testing.ts";

const root = new URL("../../fixtures/models/", import.meta.url).pathname;
const FAMILIES = ["deepseek_v3", "deepseek_v3_plain", "glm4_moe"];

for (const family of FAMILIES) {
  for (const [exName, make] of executors()) {
    Deno.test(`${family} on ${exName}: logits, loss and gradients match transformers; moe_aux_loss_coef changes nothing`, async () => {
      const g = await moeGolden(`${root}${family}`);
      const model = await loadModel(`${root}${family}`, { executor: await make(), dtype: "f32" });
      const opts = { labels: g.labels, attentionMask: g.mask };
      const res = await model.forward(g.ids, opts);
      assert.ok(maskedLogitError(res.logits, g.logits, g.mask, model.config.vocab) <= 1e-4, "logits");
      near(res.loss!, g.loss, "loss");
      const plain = await model.forward([g.ids[0]]);
      let w2 = 0;
      for (let k = 0; k < plain.logits.length; k++) w2 = Math.max(w2, Math.abs(plain.logits[k] - g.logitsNoMask![k]));
      assert.ok(w2 <= 1e-4, `max logit error without a mask ${w2}`);
      near(await model.loss(g.ids, opts), g.loss, "fused-head loss");
      const { loss, grads } = await model.gradients(g.ids, opts);
      near(loss, g.loss, "gradient-graph loss");
      checkGrads(grads, g.grads);
      // LF's configure_moe sets nothing for these model types and transformers adds no router loss.
      configureMoe(model.config.moe, 0.25);
      assert.deepEqual([model.config.moe!.outputRouterLogits, model.config.moe!.auxCoef], [false, 0]);
      model.setAdapter(undefined); // drops compiled graphs
      near((await model.gradients(g.ids, opts)).loss, g.loss, "loss with moe_aux_loss_coef");
    });

    Deno.test(`${family}/lora on ${exName}: loss, logits and adapter gradients match PEFT`, async () => {
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

Deno.test("noauxRoute: grouped top-k on the biased scores, weights from the unbiased ones, against a loop", async () => {
  const E = 8, G = 4, H = 3, N = 5, k = 3, kg = 2, scale = 2.5;
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
  const x = Array.from({ length: N * H }, rnd), w = Array.from({ length: E * H }, rnd);
  const bias = Array.from({ length: E }, () => 0.3 * rnd());
  const g = new Graph();
  const out = noauxRoute(
    { nGroup: G, topkGroup: kg, routedScale: scale },
    k,
    true,
    g.input("x", [N, H]),
    g.input("w", [E, H]),
    g.input("b", [E]),
  );
  g.output("weights", out.weights);
  const got = (await (await new ReferenceExecutor().compile(g)).run({ x, w, b: bias })).weights;
  const per = E / G;
  for (let t = 0; t < N; t++) {
    const s = Array.from({ length: E }, (_, e) => {
      let z = 0;
      for (let h = 0; h < H; h++) z += x[t * H + h] * w[e * H + h];
      return 1 / (1 + Math.exp(-z));
    });
    const c = s.map((v, e) => v + bias[e]);
    const groupScore = Array.from({ length: G }, (_, q) => {
      const top = c.slice(q * per, (q + 1) * per).sort((a, b) => b - a);
      return top[0] + top[1];
    });
    const groups = [...groupScore.keys()].sort((a, b) => groupScore[b] - groupScore[a]).slice(0, kg);
    const chosen = [...c.keys()].filter((e) => groups.includes(Math.floor(e / per))).sort((a, b) => c[b] - c[a])
      .slice(0, k);
    const sum = chosen.reduce((acc, e) => acc + s[e], 0);
    for (let e = 0; e < E; e++) {
      const want = chosen.includes(e) ? (s[e] / (sum + 1e-20)) * scale : 0;
      assert.ok(Math.abs(got[t * E + e] - want) < 1e-6, `token ${t} expert ${e}: ${got[t * E + e]} vs ${want}`);
    }
  }
});

Deno.test("deepseek_v3 / glm4_moe config.json: MLA, routers, dense layers, v4 and v5 spellings; errors name the key", async () => {
  const cfg = async (f: string) => decoderConfig(JSON.parse(await Deno.readTextFile(`${root}${f}/config.json`)));
  const ds = await cfg("deepseek_v3"), plain = await cfg("deepseek_v3_plain"), glm = await cfg("glm4_moe");
  assert.deepEqual(ds.mla, {
    qLoraRank: 16,
    kvLoraRank: 12,
    qkNope: 8,
    qkRope: 8,
    vHead: 12,
    interleave: true,
    bias: false,
  });
  assert.deepEqual([ds.headDim, ds.kvHeads, ds.rotaryDim, ds.ropeScaling.type], [16, 4, 8, "yarn"]);
  const mscale = 0.1 * 0.8 * Math.log(4) + 1;
  assert.ok(Math.abs(ds.attnScale - 16 ** -0.5 * mscale * mscale) < 1e-12, `${ds.attnScale}`);
  assert.deepEqual(ds.moe!.noaux, { nGroup: 4, topkGroup: 2, routedScale: 2.5 });
  assert.deepEqual([ds.moe!.experts, ds.moe!.topK, ds.moe!.sharedIntermediate, ds.moe!.sparse], [8, 3, 32, [
    false,
    true,
    true,
  ]]);
  assert.deepEqual([plain.mla!.qLoraRank, plain.mla!.interleave, plain.mla!.bias, plain.headDim], [0, false, true, 14]);
  assert.equal(plain.moe!.normTopK, false);
  assert.deepEqual([glm.qkNorm, glm.qkvBias, glm.oBias, glm.rotaryDim, glm.ropeInterleaved], [
    true,
    true,
    false,
    8,
    false,
  ]);
  assert.deepEqual(glm.moe!.noaux, { nGroup: 2, topkGroup: 1, routedScale: 1.5 });
  // LF's lora_target all: PEFT's nn.Linear names; routers and routed experts are not nn.Linear on transformers 5.
  assert.deepEqual(allLinearTargets(ds).sort(), [
    "down_proj",
    "gate_proj",
    "kv_a_proj_with_mqa",
    "kv_b_proj",
    "o_proj",
    "q_a_proj",
    "q_b_proj",
    "up_proj",
  ]);
  assert.throws(() => decoderConfig({ ...ds.raw, n_group: 3 }), /n_group 3 must divide the 8 routed experts/);
  assert.throws(() => decoderConfig({ ...ds.raw, num_experts_per_tok: 5 }), /num_experts_per_tok 5 exceeds/);
  assert.throws(() => decoderConfig({ ...ds.raw, num_key_value_heads: 2 }), /num_key_value_heads/);
  assert.throws(() => decoderConfig({ ...ds.raw, kv_lora_rank: 0 }), /"kv_lora_rank" must be a positive integer/);
  // The ONNX exporter refuses what it does not compute.
  assert.equal(onnxUnsupported(ds).length, 2);
  assert.deepEqual(onnxUnsupported(glm), [
    "noaux_tc routing (sigmoid scores, e_score_correction_bias, grouped top-k, shared experts)",
  ]);
});

Deno.test("released config.json shapes: DeepSeek-V3 (transformers 4 keys, yarn) and GLM-4.5", () => {
  const ds = decoderConfig({
    model_type: "deepseek_v3",
    vocab_size: 129280,
    hidden_size: 7168,
    intermediate_size: 18432,
    moe_intermediate_size: 2048,
    num_hidden_layers: 61,
    num_attention_heads: 128,
    num_key_value_heads: 128,
    n_shared_experts: 1,
    n_routed_experts: 256,
    routed_scaling_factor: 2.5,
    kv_lora_rank: 512,
    q_lora_rank: 1536,
    qk_rope_head_dim: 64,
    v_head_dim: 128,
    qk_nope_head_dim: 128,
    topk_method: "noaux_tc",
    scoring_func: "sigmoid",
    n_group: 8,
    topk_group: 4,
    num_experts_per_tok: 8,
    moe_layer_freq: 1,
    first_k_dense_replace: 3,
    norm_topk_prob: true,
    max_position_embeddings: 163840,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    rope_scaling: {
      beta_fast: 32,
      beta_slow: 1,
      factor: 40,
      mscale: 1.0,
      mscale_all_dim: 1.0,
      original_max_position_embeddings: 4096,
      type: "yarn",
    },
    tie_word_embeddings: false,
  });
  const m = 0.1 * Math.log(40) + 1;
  assert.ok(Math.abs(ds.attnScale - 192 ** -0.5 * m * m) < 1e-12);
  assert.deepEqual([ds.headDim, ds.rotaryDim, ds.ropeScaling.type, ds.mla!.interleave], [192, 64, "yarn", true]);
  assert.deepEqual([ds.moe!.sparse.indexOf(true), ds.moe!.sharedIntermediate, ds.moe!.noaux], [3, 2048, {
    nGroup: 8,
    topkGroup: 4,
    routedScale: 2.5,
  }]);
  const glm = decoderConfig({
    model_type: "glm4_moe",
    vocab_size: 151552,
    hidden_size: 5120,
    intermediate_size: 12288,
    moe_intermediate_size: 1536,
    num_hidden_layers: 92,
    num_attention_heads: 96,
    num_key_value_heads: 8,
    head_dim: 128,
    partial_rotary_factor: 0.5,
    attention_bias: true,
    use_qk_norm: true,
    n_routed_experts: 160,
    n_shared_experts: 1,
    num_experts_per_tok: 8,
    n_group: 1,
    topk_group: 1,
    first_k_dense_replace: 3,
    routed_scaling_factor: 2.5,
    norm_topk_prob: true,
    rms_norm_eps: 1e-5,
    rope_theta: 1000000,
    max_position_embeddings: 131072,
  });
  assert.deepEqual([glm.rotaryDim, glm.qkNorm, glm.qkvBias, glm.oBias, glm.attnScale], [
    64,
    true,
    true,
    false,
    128 ** -0.5,
  ]);
  assert.deepEqual([glm.moe!.experts, glm.moe!.sparse.indexOf(true), glm.moe!.noaux!.routedScale], [160, 3, 2.5]);
});
