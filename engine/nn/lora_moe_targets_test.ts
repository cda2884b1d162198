/**
 * PEFT 0.21's rewrite of LoRA targets onto transformers 5's fused experts (lora_moe_targets.ts), as observed with
 * get_peft_model on the tiny fixtures: what LLaMA-Factory's lora_target (names and "all") adapts per MoE family.
 * The numbers behind the rewritten adapters are checked against PEFT in moe_lora_test.ts (<family>/lora_names).
 */
import assert from "node:assert/strict";
import { readPeftAdapter } from "../io/peft.ts";
import { type DecoderConfig, decoderConfig } from "./config.ts";
import { allLinearTargets, attachAdapter, loraConfig, loraConfigFromArgs, saveAdapter } from "./lora.ts";
import { peftMoeTargets } from "./lora_moe_targets.ts";
import { loadModel } from "./model.ts";

const root = new URL("../../fixtures/models/", import.meta.url).pathname;
const cfgOf = async (f: string) => decoderConfig(JSON.parse(await Deno.readTextFile(`${root}${f}/config.json`)));
const convert = (c: DecoderConfig, lora_target: string, extra: Record<string, unknown> = {}) =>
  peftMoeTargets(
    c,
    loraConfigFromArgs({ lora_target, lora_rank: 4, lora_alpha: 8, ...extra }),
    () => allLinearTargets(c),
  );

Deno.test("MoE LoRA targets: names become the fused experts where PEFT converts them (dense MLPs get none)", async () => {
  for (const f of ["qwen3_moe", "deepseek_v3", "glm4_moe"]) {
    const c = await cfgOf(f);
    const got = convert(c, "q_proj, gate_proj,up_proj,down_proj");
    assert.deepEqual(got.targets, ["q_proj"], f);
    assert.deepEqual(got.targetParameters, ["down_proj", "gate_up_proj"], f);
    assert.deepEqual(got.gateUp, { r: 8, alpha: 16 }, f);
    const down = convert(c, "q_proj,mlp.down_proj");
    assert.deepEqual([down.targets, down.targetParameters, down.gateUp], [["q_proj"], ["down_proj"], undefined]);
    assert.throws(() => convert(c, "gate_proj"), /gate_proj.*without also targeting up_proj/);
    assert.throws(() => convert(c, "q_proj,gate"), /router.*gate\.weight/);
    assert.throws(() => peftMoeTargets(c, loraConfig({ targets: "all-linear" }), () => []), /all-linear/);
    assert.throws(() => peftMoeTargets(c, loraConfig({ targets: ".*mlp.*_proj" }), () => []), /regex/);
  }
  // LLaMA-Factory's "all" (every linear's leaf name) loses the dense and shared-expert MLPs to the fused experts
  const ds = await cfgOf("deepseek_v3");
  assert.ok(allLinearTargets(ds).includes("gate_proj")); // layer 0 is dense; the sparse layers have shared experts
  const all = convert(ds, "all");
  assert.deepEqual([...all.targets].sort(), ["kv_a_proj_with_mqa", "kv_b_proj", "o_proj", "q_a_proj", "q_b_proj"]);
  assert.deepEqual([all.targetParameters, all.gateUp], [["down_proj", "gate_up_proj"], { r: 8, alpha: 16 }]);
  // mixtral: w1 / w3 / w2 (gate_proj is no module of it); "all" is attention only, as in PEFT
  const mx = await cfgOf("mixtral");
  assert.deepEqual(convert(mx, "w1,w3,w2").targetParameters, ["down_proj", "gate_up_proj"]);
  assert.throws(() => convert(mx, "w1"), /without also targeting w3/);
  assert.deepEqual([...convert(mx, "all").targets].sort(), ["k_proj", "o_proj", "q_proj", "v_proj"]);
  // qwen2_moe and gpt_oss: PEFT converts nothing (dense and shared-expert MLPs keep their LoRA)
  for (const f of ["qwen2_moe", "gpt_oss"]) {
    const c = await cfgOf(f);
    const cfg = loraConfigFromArgs({ lora_target: "q_proj,down_proj" });
    assert.equal(peftMoeTargets(c, cfg, () => allLinearTargets(c)), cfg, f);
  }
  // dropout is refused once names became fused parameters, as PEFT's ParamWrapper refuses it
  const model = await loadModel(`${root}qwen3_moe`, { executor: "reference" });
  await assert.rejects(
    attachAdapter(model, loraConfigFromArgs({ lora_target: "down_proj", lora_dropout: 0.1 })),
    /lora_dropout/,
  );
});

Deno.test("MoE LoRA targets: a new adapter from LF names has PEFT's keys, shapes and adapter_config", async () => {
  const peft = await readPeftAdapter(`${root}deepseek_v3/lora_names`);
  const model = await loadModel(`${root}deepseek_v3`, { executor: "reference" });
  const args = { lora_target: "kv_b_proj,gate_proj,up_proj,down_proj", lora_rank: 4, lora_alpha: 8 };
  await attachAdapter(model, loraConfigFromArgs(args));
  const want = new Map([...peft.tensors].map(([k, t]) => [k, t.shape]));
  assert.deepEqual(new Map([...model.adapter!.params].map(([k, p]) => [k, p.shape])), want);
  const ids = [[3, 9, 27, 81, 115, 2, 6, 18]];
  const { grads } = await model.gradients(ids, { labels: ids });
  assert.ok(grads.get("base_model.model.model.layers.1.mlp.experts.base_layer.lora_B.weight")!.some((v) => v !== 0));
  const out = await Deno.makeTempDir();
  try {
    await saveAdapter(model, out);
    const ours = await readPeftAdapter(out);
    for (const k of ["target_modules", "target_parameters", "rank_pattern", "alpha_pattern", "r", "lora_alpha"]) {
      assert.deepEqual(ours.raw[k], peft.raw[k], k);
    }
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
