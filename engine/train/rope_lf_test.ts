/**
 * LLaMA-Factory's `rope_scaling` argument (configure_rope in its model/model_utils/rope.py): the config.json it makes
 * from cutoff_len, and a training run's model built from it.
 */
import assert from "node:assert/strict";
import { applyLfRopeScaling } from "../nn/rope_lf.ts";
import { decoderConfig } from "../nn/config.ts";
import { parseTrainArgs } from "../config/args.ts";
import { loadTrainModel } from "./run_inputs.ts";
import { ReferenceExecutor } from "../exec/reference.ts";
import { loadModel } from "../nn/model.ts";
import { loadModelInto } from "./stages/reference.ts";

const v4 = {
  model_type: "llama",
  vocab_size: 64,
  hidden_size: 32,
  intermediate_size: 64,
  num_attention_heads: 2,
  num_hidden_layers: 1,
  max_position_embeddings: 4096,
  rope_theta: 500000,
};

Deno.test("rope_scaling: LF's factor from model_max_length, its extra keys per type, 2 without a length", () => {
  const y = applyLfRopeScaling(v4, "yarn", 10000).config;
  assert.equal(y.max_position_embeddings, 12288);
  assert.deepEqual(y.rope_scaling, { rope_type: "yarn", factor: 3, original_max_position_embeddings: 4096 });
  const c = decoderConfig(y);
  assert.equal(c.ropeScaling.type, "yarn");
  assert.equal(c.ropeTheta, 500000);
  const l3 = applyLfRopeScaling(v4, "llama3", 8193).config.rope_scaling;
  assert.deepEqual(l3, {
    rope_type: "llama3",
    factor: 3,
    original_max_position_embeddings: 4096,
    low_freq_factor: 1,
    high_freq_factor: 4,
  });
  assert.deepEqual(applyLfRopeScaling(v4, "linear").config.rope_scaling, { rope_type: "linear", factor: 2 });
  const d = decoderConfig(applyLfRopeScaling(v4, "dynamic").config).ropeScaling;
  assert.deepEqual(d, { type: "dynamic", factor: 2, maxPositionEmbeddings: 8192 });
  // Not longer than the model's length: LF disables the scaling.
  const off = applyLfRopeScaling(v4, "yarn", 4096);
  assert.equal(off.config, v4);
  assert.match(off.message, /Disabling rope scaling/);
  // transformers 5 layout: merged into rope_parameters (Gemma 3: into full_attention's).
  const v5 = { ...v4, rope_theta: undefined, rope_parameters: { rope_type: "default", rope_theta: 1e6 } };
  const c5 = decoderConfig(applyLfRopeScaling(v5, "linear", 5000).config);
  assert.deepEqual([c5.ropeTheta, c5.ropeScaling], [1e6, { type: "linear", factor: 2 }]);
  assert.throws(() => applyLfRopeScaling(v4, "ntk" as "yarn"), /rope_scaling: "ntk" is not one of/);
});

Deno.test("rope_scaling: a training run's model gets LF's scaling from cutoff_len", async () => {
  const model = new URL("../../fixtures/models/smollm3", import.meta.url).pathname; // max_position_embeddings 64
  const a = parseTrainArgs({
    model_name_or_path: model,
    stage: "sft",
    do_train: true,
    finetuning_type: "lora",
    dataset: "x",
    template: "empty",
    output_dir: "/tmp/unused",
    cutoff_len: 100,
    rope_scaling: "yarn",
  });
  const { model: m } = await loadTrainModel(a, new ReferenceExecutor());
  assert.deepEqual(m.config.ropeScaling, {
    type: "yarn",
    factor: 2,
    originalMaxPositionEmbeddings: 64,
    attentionFactor: 0.1 * Math.log(2) + 1,
    betaFast: 32,
    betaSlow: 1,
    truncate: true,
  });
  assert.deepEqual(m.config.layerRope[0]?.scaling, m.config.ropeScaling);
  assert.equal(m.config.layerRope[1], null); // smollm3's NoPE layer stays without rope
});

Deno.test("rope_scaling: a reference model loaded beside the policy gets the same scaling", async () => {
  const dir = new URL("../../fixtures/models/smollm3", import.meta.url).pathname;
  const policy = await loadModel(dir, { executor: "reference", ropeScaling: { type: "linear", modelMaxLength: 100 } });
  const ref = await loadModelInto(dir, policy, "ref.", { type: "linear", modelMaxLength: 100 });
  assert.deepEqual(policy.config.ropeScaling, { type: "linear", factor: 2 });
  assert.deepEqual(ref.config.ropeScaling, policy.config.ropeScaling);
  const plain = await loadModelInto(dir, policy, "plain.");
  assert.deepEqual(plain.config.ropeScaling, { type: "default" });
});
