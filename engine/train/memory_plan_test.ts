import assert from "node:assert/strict";
import { decoderConfig } from "../nn/config.ts";
import { decoderParams } from "../nn/decoder.ts";
import { planTrainingMemory } from "./memory_plan.ts";

const cfg = decoderConfig({
  model_type: "llama",
  vocab_size: 512,
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
});

Deno.test("planTrainingMemory: weights, AdamW states and arena add up per method, without a device", async () => {
  const full = await planTrainingMemory(cfg, { method: "full", batch: 2, seq: 64 });
  const n = full.modelParams;
  assert.equal(full.trainableParams, n);
  assert.equal(full.optimizer, 8 * n); // exp_avg + exp_avg_sq, f32
  assert.equal(full.weights, 4 * n + 4); // f32 weights + the loss sum
  assert.equal(full.peakBytes, full.weights + full.optimizer + full.arena);
  assert.ok(full.arena >= 4 * n, "the arena holds at least every gradient once");

  const lora = await planTrainingMemory(cfg, { method: "lora", batch: 2, seq: 64, rank: 4 });
  assert.equal(lora.modelParams, n);
  assert.equal(lora.weights, 2 * n + 4 * lora.trainableParams + 4); // bf16 base, f32 adapter
  assert.equal(lora.optimizer, 8 * lora.trainableParams);
  assert.ok(lora.arena < full.arena && lora.peakBytes < full.peakBytes);

  const freeze = await planTrainingMemory(cfg, { method: "freeze", batch: 2, seq: 64, freezeLayers: 1 });
  assert.ok(freeze.trainableParams > 0 && freeze.trainableParams < n);
  assert.equal(freeze.optimizer, 8 * freeze.trainableParams);

  const longer = await planTrainingMemory(cfg, { method: "lora", batch: 2, seq: 128, rank: 4 });
  assert.ok(longer.arena > lora.arena, "activations grow with the sequence");
});

Deno.test("planTrainingMemory: QLoRA stores every linear weight in NF4 (about 0.52 bytes a parameter)", async () => {
  const lora = await planTrainingMemory(cfg, { method: "lora", batch: 2, seq: 64, rank: 4 });
  const qlora = await planTrainingMemory(cfg, { method: "qlora", batch: 2, seq: 64, rank: 4 });
  assert.equal(qlora.arena, lora.arena);
  assert.equal(qlora.optimizer, lora.optimizer);
  // Per layer: q 64×64, k and v 32×64, o 64×64, gate and up 128×64, down 64×128 (bf16 → NF4 words + absmax codes).
  const linear = 2 * (64 * 64 * 2 + 32 * 64 * 2 + 128 * 64 * 3);
  assert.ok(lora.weights - qlora.weights > linear * 2 * 0.7, `${lora.weights} → ${qlora.weights}`);
  assert.ok(qlora.weights < lora.weights);
});

Deno.test("planTrainingMemory: activation checkpointing shrinks the arena; GaLore projects the linear moments", async () => {
  for (const method of ["full", "lora", "qlora", "galore"] as const) {
    const off = await planTrainingMemory(cfg, { method, batch: 2, seq: 64 });
    const on = await planTrainingMemory(cfg, { method, batch: 2, seq: 64, checkpoint: true });
    assert.ok(on.arena < off.arena, `${method}: ${on.arena} >= ${off.arena}`);
    assert.equal(on.weights, off.weights);
    assert.equal(on.optimizer, off.optimizer);
  }
  const full = await planTrainingMemory(cfg, { method: "full", batch: 2, seq: 64 });
  const galore = await planTrainingMemory(cfg, { method: "galore", batch: 2, seq: 64, rank: 8 });
  assert.equal(galore.weights, full.weights);
  assert.equal(galore.trainableParams, full.trainableParams);
  // Per layer and linear [m, n]: m, v of [max, 8] and P [8, min] instead of 2·m·n; embeddings and norms in full.
  const lin = [[64, 64], [32, 64], [32, 64], [64, 64], [128, 64], [128, 64], [64, 128]];
  const projected = 2 * lin.reduce((t, [m, n]) => t + 8 * (2 * Math.max(m, n) + Math.min(m, n)), 0);
  const plain = full.modelParams - 2 * lin.reduce((t, [m, n]) => t + m * n, 0);
  assert.equal(galore.optimizer, 4 * (projected + 2 * plain));
});

Deno.test("planTrainingMemory: APOLLO projects the linear moments at rank 16; BAdam holds one block's gradients and states", async () => {
  const full = await planTrainingMemory(cfg, { method: "full", batch: 2, seq: 64 });
  const apollo = await planTrainingMemory(cfg, { method: "apollo", batch: 2, seq: 64, rank: 8 });
  const galore = await planTrainingMemory(cfg, { method: "galore", batch: 2, seq: 64, rank: 8 });
  assert.equal(apollo.weights, full.weights);
  assert.equal(apollo.trainableParams, full.trainableParams);
  // APOLLO keeps GaLore's projected moments and projection per linear weight, plus one f32 flag each (7 per layer).
  assert.equal(apollo.optimizer, galore.optimizer + 4 * 7 * 2);
  assert.ok(apollo.optimizer < full.optimizer, `${apollo.optimizer} vs AdamW's ${full.optimizer}`);
  const badam = await planTrainingMemory(cfg, { method: "badam", batch: 2, seq: 64 });
  assert.equal(badam.weights, full.weights, "every weight stays f32: each block trains in turn");
  const layer0 = [...decoderParams(cfg)].filter(([n]) => n.includes("layers.0."))
    .reduce((t, [, shape]) => t + shape.reduce((a, b) => a * b, 1), 0);
  assert.equal(badam.trainableParams, layer0);
  assert.equal(badam.optimizer, 8 * layer0);
  assert.ok(badam.arena < full.arena, `BAdam's arena ${badam.arena} holds one block's gradients (full: ${full.arena})`);
  await assert.rejects(
    planTrainingMemory(cfg, { method: "apollo", batch: 2, seq: 64, optim: "sgd" }),
    /apollo runs with adamw, got sgd/,
  );
});

Deno.test("planTrainingMemory: each optimizer's states (sgd, momentum, lion, adafactor, 8-bit adamw, muon, adam-mini)", async () => {
  const at = (optim: Parameters<typeof planTrainingMemory>[1]["optim"]) =>
    planTrainingMemory(cfg, { method: "full", batch: 2, seq: 64, optim });
  const adamw = await at("adamw"), n = adamw.trainableParams;
  assert.equal((await at("sgd")).optimizer, 0);
  assert.equal((await at("sgd_momentum")).optimizer, 4 * n);
  assert.equal((await at("lion_32bit")).optimizer, 4 * n);
  // Adafactor: a row and a column per matrix, a full second moment per vector.
  let factored = 0;
  for (const [, shape] of decoderParams(cfg)) factored += shape.length === 2 ? shape[0] + shape[1] : shape[0];
  assert.equal((await at("adafactor")).optimizer, 4 * factored);
  // Muon: one buffer for its matrices, two AdamW moments for the embeddings, head and vectors.
  let muonish = 0;
  for (const [name, shape] of decoderParams(cfg)) {
    const k = shape.reduce((a, b) => a * b, 1);
    muonish += shape.length === 2 && !name.includes("embed") && !name.includes("lm_head") ? k : 2 * k;
  }
  assert.equal((await at("muon")).optimizer, 4 * muonish);
  // bitsandbytes' 8-bit AdamW: two uint8 codes and 2 f32 absmax per 256 elements for params of 4096 or more.
  let bnb = 0;
  for (const [, shape] of decoderParams(cfg)) {
    const k = shape.reduce((a, b) => a * b, 1);
    bnb += k >= 4096 ? 2 * 4 * Math.ceil(k / 4) + 8 * Math.ceil(k / 256) : 8 * k;
  }
  assert.equal((await at("adamw_8bit")).optimizer, bnb);
  assert.ok(bnb < adamw.optimizer / 3, `${bnb} vs ${adamw.optimizer}`);
  const mini = await at("adam_mini");
  assert.ok(mini.optimizer < adamw.optimizer && mini.optimizer > adamw.optimizer / 2, `${mini.optimizer}`);
  for (const o of ["sgd", "lion_32bit", "adafactor", "adamw_8bit", "muon", "adam_mini"] as const) {
    assert.ok((await at(o)).peakBytes < adamw.peakBytes, o);
  }
});

Deno.test("planTrainingMemory: LoRA on the routed experts adds r·E·(in + out) per fused parameter and its states", async () => {
  const moe = decoderConfig({
    model_type: "qwen3_moe",
    vocab_size: 256,
    hidden_size: 32,
    intermediate_size: 64,
    moe_intermediate_size: 16,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    head_dim: 8,
    num_experts: 4,
    num_experts_per_tok: 2,
  });
  const opts = { method: "lora", batch: 1, seq: 32, rank: 2, checkpoint: true } as const;
  const lora = await planTrainingMemory(moe, opts);
  const experts = await planTrainingMemory(moe, { ...opts, loraExperts: true });
  // per sparse layer: gate_up_proj (in 32, out 2·16) and down_proj (in 16, out 32), rank 2, 4 experts
  const added = 2 * (2 * 4 * (32 + 32) + 2 * 4 * (16 + 32));
  assert.equal(experts.trainableParams - lora.trainableParams, added);
  assert.equal(experts.optimizer - lora.optimizer, 8 * added);
  assert.ok(experts.arena > lora.arena, "the experts' W + s·ΔW and the adapter's gradients take arena");
});
