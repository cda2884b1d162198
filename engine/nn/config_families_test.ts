/**
 * config.json of issue 16's dense families as released checkpoints write it (transformers 4 spellings beside the
 * fixtures' transformers 5 ones): Gemma 3's layer pattern and local RoPE base, SmolLM3's NoPE interval, Phi-3's legacy
 * rope types, Granite's multipliers, GLM-4's partial rotary; and an unknown model_type naming every family.
 */
import assert from "node:assert/strict";
import { decoderConfig, FAMILIES } from "./config.ts";

const dims = { vocab_size: 64, hidden_size: 32, intermediate_size: 64, num_attention_heads: 2, num_hidden_layers: 7 };

Deno.test("gemma3_text v4: sliding_window_pattern, rope_local_base_freq, rope_scaling on the global layers only", () => {
  const c = decoderConfig({
    ...dims,
    model_type: "gemma3_text",
    head_dim: 16,
    sliding_window: 512,
    sliding_window_pattern: 6,
    rope_theta: 1000000,
    rope_local_base_freq: 10000,
    rope_scaling: { rope_type: "linear", factor: 8 },
    query_pre_attn_scalar: 256,
  });
  assert.deepEqual(c.layerWindow, [512, 512, 512, 512, 512, 0, 512]);
  assert.deepEqual(c.layerRope[0], { theta: 10000, scaling: { type: "default" } });
  assert.deepEqual(c.layerRope[5], { theta: 1000000, scaling: { type: "linear", factor: 8 } });
  assert.equal(c.attnScale, 1 / 16);
  assert.ok(c.qkNorm && c.sandwichNorm && c.tieEmbeddings && c.normOffset === 1);
});

Deno.test("smollm3: NoPE every 4th layer by default, or as no_rope_layers says", () => {
  const c = decoderConfig({ ...dims, model_type: "smollm3" });
  assert.deepEqual(c.layerRope.map((r) => r !== null), [true, true, true, false, true, true, true]);
  const d = decoderConfig({ ...dims, model_type: "smollm3", no_rope_layers: [0, 1, 1, 1, 1, 1, 0] });
  assert.deepEqual(d.layerRope.map((r) => r !== null), [false, true, true, true, true, true, false]);
});

Deno.test("phi3: legacy rope types su and yarn are longrope (Phi-3 128k configs), factors sized to the rotary dim", () => {
  for (const type of ["su", "yarn", "longrope"]) {
    const c = decoderConfig({
      ...dims,
      model_type: "phi3",
      max_position_embeddings: 131072,
      original_max_position_embeddings: 4096,
      rope_scaling: { type, short_factor: Array(8).fill(1), long_factor: Array(8).fill(2) },
    });
    assert.equal(c.ropeScaling.type, "longrope");
    assert.equal(c.layerRope[0]!.scaling.type, "longrope");
  }
});

Deno.test("granite multipliers, glm4 partial interleaved rope and its biases, olmo2 post-norms", () => {
  const g = decoderConfig({
    ...dims,
    model_type: "granite",
    embedding_multiplier: 12,
    residual_multiplier: 0.22,
    attention_multiplier: 0.0078125,
    logits_scaling: 8,
  });
  assert.deepEqual([g.embedScale, g.residualScale, g.attnScale, g.logitScale], [12, 0.22, 0.0078125, 8]);
  const z = decoderConfig({ ...dims, model_type: "glm4" });
  assert.deepEqual([z.rotaryDim, z.ropeInterleaved, z.qkvBias, z.oBias, z.fusedGateUp], [8, true, true, false, true]);
  const o = decoderConfig({ ...dims, model_type: "olmo2" });
  assert.deepEqual([o.postNorm, o.qkNormAll, o.qkNorm], [true, true, false]);
});

Deno.test("an unknown model_type names every supported family", () => {
  assert.throws(
    () => decoderConfig({ ...dims, model_type: "falcon_h1" }),
    (e: Error) =>
      FAMILIES.every((f) => e.message.includes(f)) && /model_type "falcon_h1" is not supported/.test(e.message),
  );
});

Deno.test("starcoder2: norm_epsilon, LayerNorm, ungated MLP, use_bias on every linear (or none)", () => {
  const c = decoderConfig({ ...dims, model_type: "starcoder2", norm_epsilon: 1e-5, sliding_window: 4096 });
  assert.deepEqual([c.eps, c.layerNorm, c.plainMlp, c.qkvBias, c.oBias, c.mlpBias], [
    1e-5,
    true,
    true,
    true,
    true,
    true,
  ]);
  assert.ok(c.layerWindow.every((w) => w === 4096) && c.tieEmbeddings && c.act === "gelu_tanh");
  const n = decoderConfig({ ...dims, model_type: "starcoder2", use_bias: false });
  assert.deepEqual([n.qkvBias, n.oBias, n.mlpBias], [false, false, false]);
});

Deno.test("cohere2 v4: sliding_window_pattern, RoPE on the sliding layers only, logit_scale, parallel block", () => {
  const c = decoderConfig({ ...dims, model_type: "cohere2", sliding_window: 4096, logit_scale: 0.125 });
  assert.deepEqual(c.layerWindow, [4096, 4096, 4096, 0, 4096, 4096, 4096]);
  assert.deepEqual(c.layerRope.map((r) => r !== null), [true, true, true, false, true, true, true]);
  assert.deepEqual([c.logitScale, c.parallelBlock, c.layerNorm, c.normBias, c.ropeInterleaved], [
    8,
    true,
    true,
    false,
    true,
  ]);
});
