/**
 * RoPE scaling against transformers (fixtures/rope/rope.json, made by fixtures/rope/make_rope.py): every config.json
 * there, read by {@link decoderConfig} (transformers 4 and 5 layouts), gives transformers' inverse frequencies (it
 * computes them in float32, hence 2e-6 relative) and attention scaling at each sequence length.
 */
import assert from "node:assert/strict";
import { decoderConfig } from "./config.ts";
import { ropeAttentionScaling, ropeInvFreq, ropeScalingFromHf } from "../graph/ops/rope_scaling.ts";

interface Case {
  name: string;
  config: Record<string, unknown>;
  seq_len: number | null;
  rope_type: string;
  inv_freq: number[];
  attention_scaling: number;
}
const { cases } = JSON.parse(
  await Deno.readTextFile(new URL("../../fixtures/rope/rope.json", import.meta.url)),
) as { cases: Case[] };

Deno.test("rope scaling: transformers' inv_freq and attention scaling for every type, both config layouts", () => {
  const types = new Set<string>();
  for (const c of cases) {
    const dc = decoderConfig(c.config);
    assert.equal(dc.ropeScaling.type, c.rope_type, c.name);
    types.add(c.rope_type);
    const inv = ropeInvFreq(dc.rotaryDim, dc.ropeTheta, dc.ropeScaling, c.seq_len ?? 0);
    assert.equal(inv.length, c.inv_freq.length, c.name);
    inv.forEach((f, i) => {
      const want = c.inv_freq[i];
      assert.ok(Math.abs(f - want) <= 2e-6 * want, `${c.name} @ ${c.seq_len}: inv_freq[${i}] ${f} vs ${want}`);
    });
    const att = ropeAttentionScaling(dc.ropeScaling);
    assert.ok(Math.abs(att - c.attention_scaling) <= 1e-12, `${c.name}: attention scaling ${att}`);
  }
  assert.deepEqual([...types].sort(), ["dynamic", "linear", "llama3", "longrope", "yarn"]);
});

Deno.test("rope scaling: missing or wrong fields are named", () => {
  assert.throws(() => ropeScalingFromHf({ rope_type: "dynamic", factor: 2 }), /"max_position_embeddings"/);
  assert.throws(() => ropeScalingFromHf({ rope_type: "yarn", factor: 2 }), /"original_max_position_embeddings"/);
  assert.throws(
    () =>
      ropeScalingFromHf({ rope_type: "longrope", short_factor: [1], factor: 2, original_max_position_embeddings: 4 }),
    /"long_factor"/,
  );
  assert.throws(() => ropeScalingFromHf({ rope_type: "linear", factor: "4" }), /"factor" must be a number/);
  const lr = ropeScalingFromHf({
    type: "su", // the legacy name of longrope
    short_factor: [1, 1],
    long_factor: [2, 2],
    original_max_position_embeddings: 8,
  }, { maxPositionEmbeddings: 32 });
  assert.equal(lr.type, "longrope");
  assert.throws(() => ropeInvFreq(8, 10000, lr), /2 entries; the rotary dim 8 needs 4/);
});
