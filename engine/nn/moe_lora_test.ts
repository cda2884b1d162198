/**
 * LoRA on the routed experts' fused parameters (PEFT's target_parameters, lora_experts.ts) against PEFT 0.21 on
 * transformers 5 (fixtures/models/<each MoE family>/lora_experts and <deepseek_v3|mixtral>/lora_names, made by
 * fixtures/make_moe_lora.py): logits within 1e-4, loss 1e-5 relative, every adapter gradient 1e-4 relative norm on every executor; the merged expert weights
 * as PEFT's merge_and_unload (and generation through the adapter as through the merged weights); saving writes the
 * same keys and target_parameters PEFT wrote; LF-style lora_target; a new adapter starts as the base model; the
 * refusals PEFT makes.
 */
import assert from "node:assert/strict";
import { loraConfigFromPeft, readPeftAdapter } from "../io/peft.ts";
import { decoderConfig } from "./config.ts";
import { mergeAdapter } from "./export.ts";
import { attachAdapter, loraConfig, loraConfigFromArgs, loraParams, saveAdapter } from "./lora.ts";
import { expertTargets } from "./lora_experts.ts";
import { loadModel } from "./model.ts";
import { golden, maskedLogitError, relNorm } from "./lora_testing.ts";
import { executors } from "./executors_testing.ts";

const root = new URL("../../fixtures/models/", import.meta.url).pathname;
// <family>/lora_names: PEFT's rewrite of module names onto the fused experts (rank_pattern 2r; lora_moe_targets.ts)
const CASES = [
  ...["qwen3_moe", "mixtral", "glm4_moe", "qwen2_moe", "deepseek_v3", "gpt_oss"].map((f) => `${f}/lora_experts`),
  "deepseek_v3/lora_names",
  "mixtral/lora_names",
];

const near = (got: number, want: number, what: string) =>
  assert.ok(Math.abs(got - want) <= 1e-5 * Math.abs(want), `${what} ${got} vs ${want}`);

for (const c of CASES) {
  const family = c.split("/")[0], dir = `${root}${c}`;
  for (const [exName, make] of executors()) {
    Deno.test(`${c} on ${exName}: loss, logits and adapter gradients match PEFT's ParamWrapper`, async () => {
      const g = await golden(dir);
      const model = await loadModel(`${root}${family}`, { executor: await make(), adapter: dir });
      assert.ok([...model.adapter!.params.keys()].some((k) => k.includes(".mlp.experts.")));
      const opts = { labels: g.labels, attentionMask: g.mask };
      const res = await model.forward(g.ids, opts);
      assert.ok(maskedLogitError(res.logits, g.logits, g.mask, model.config.vocab) <= 1e-4, "logits");
      near(res.loss!, g.loss, "loss");
      const { loss, grads } = await model.gradients(g.ids, opts);
      near(loss, g.loss, "gradient-graph loss");
      assert.deepEqual([...grads.keys()].sort(), [...g.grads.keys()].sort());
      for (const [name, w] of g.grads) {
        const rel = relNorm(grads.get(name)!, w);
        assert.ok(rel <= 1e-4, `${name}: relative error ${rel.toExponential(2)}`);
      }
    });
  }

  Deno.test(`${c}: merged expert weights as PEFT's merge_and_unload; saved as PEFT saved it`, async () => {
    const g = await golden(dir);
    const model = await loadModel(`${root}${family}`, { executor: "reference", adapter: dir });
    const merged = await mergeAdapter(model);
    const want = [...g.tensors].filter(([k]) => k.startsWith("merged."));
    assert.ok(want.length > 0);
    for (const [k, w] of want) {
      const got = merged.get(k.slice("merged.".length))!;
      let worst = 0;
      for (let i = 0; i < w.length; i++) worst = Math.max(worst, Math.abs(got[i] - w[i]));
      assert.ok(worst <= 1e-6, `${k}: max error ${worst}`);
    }
    // the merged weights give the adapter's logits
    const withAdapter = (await model.forward(g.ids, { attentionMask: g.mask })).logits;
    const plain = await loadModel(`${root}${family}`, { executor: "reference" });
    for (const [name, w] of merged) plain.executor.setParam(plain.prefix + name, w, plain.params.get(name)!.shape);
    const fromMerged = (await plain.forward(g.ids, { attentionMask: g.mask })).logits;
    assert.ok(maskedLogitError(fromMerged, withAdapter, g.mask, model.config.vocab) <= 1e-5, "merged logits");
    // KV-cached generation goes through the adapter's expert deltas too
    const prompt = g.ids[0].slice(0, 6);
    assert.deepEqual(
      await model.generate(prompt, { maxNewTokens: 6 }),
      await plain.generate(prompt, { maxNewTokens: 6 }),
    );
    // save: the keys, shapes and target_parameters PEFT wrote
    const out = await Deno.makeTempDir();
    try {
      await saveAdapter(model, out);
      const [ours, peft] = [await readPeftAdapter(out), await readPeftAdapter(dir)];
      for (const k of ["target_parameters", "target_modules", "rank_pattern", "alpha_pattern"]) {
        assert.deepEqual(ours.raw[k], peft.raw[k], k);
      }
      assert.deepEqual([...ours.tensors.keys()].sort(), [...peft.tensors.keys()].sort());
      for (const [k, t] of peft.tensors) assert.deepEqual(ours.tensors.get(k)!.data, t.data, k);
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  });
}

Deno.test("LoRA on experts: lora_target names, PEFT's nesting of keys, a new adapter starts at the base", async () => {
  const c = decoderConfig(JSON.parse(await Deno.readTextFile(`${root}qwen3_moe/config.json`)));
  const a = loraConfigFromArgs({ lora_target: "q_proj, mlp.experts.gate_up_proj,experts.down_proj", lora_rank: 2 });
  assert.deepEqual([a.targets, a.targetParameters], [["q_proj"], ["mlp.experts.gate_up_proj", "experts.down_proj"]]);
  assert.equal(loraConfigFromArgs({ lora_target: "all" }).targetParameters, undefined);
  // qwen3_moe: layer 1 is its only sparse layer (decoder_sparse_step 2); 8 experts, I 16, H 32.
  const p = loraParams(a, c);
  assert.deepEqual(p.get("base_model.model.model.layers.1.mlp.experts.base_layer.lora_A.weight"), [16, 32]);
  assert.deepEqual(p.get("base_model.model.model.layers.1.mlp.experts.base_layer.lora_B.weight"), [32, 16]);
  assert.deepEqual(p.get("base_model.model.model.layers.1.mlp.experts.lora_A.weight"), [16, 16]);
  assert.deepEqual(p.get("base_model.model.model.layers.1.mlp.experts.lora_B.weight"), [32, 16]);
  const lone = loraParams(loraConfig({ targets: [], targetParameters: ["down_proj"], r: 2 }), c);
  assert.deepEqual([...lone.keys()], [
    "base_model.model.model.layers.1.mlp.experts.lora_A.weight",
    "base_model.model.model.layers.1.mlp.experts.lora_B.weight",
  ]);
  assert.deepEqual(lone.get("base_model.model.model.layers.1.mlp.experts.lora_A.weight"), [16, 16]);
  assert.throws(() => expertTargets(c, ["experts.up_proj"]), /experts\.up_proj.*match no fused expert parameter/);
  const dense = decoderConfig(JSON.parse(await Deno.readTextFile(`${root}qwen3/config.json`)));
  assert.throws(() => expertTargets(dense, ["experts.down_proj"]), /no fused expert parameters/);
  // gpt_oss stores its experts (E, in, out): PEFT takes in/out unswapped — gate_up_proj [4, 32, 32], down_proj
  // [4, 16, 32] (E 4, I 16, H 32), every layer sparse
  const gptOss = decoderConfig(JSON.parse(await Deno.readTextFile(`${root}gpt_oss/config.json`)));
  const gt = expertTargets(gptOss, ["experts.gate_up_proj", "experts.down_proj"]);
  assert.deepEqual(gt.map((t) => [t.layer, t.param, t.in, t.out, t.transposed]), [
    [0, "gate_up_proj", 32, 32, true],
    [0, "down_proj", 16, 32, true],
    [1, "gate_up_proj", 32, 32, true],
    [1, "down_proj", 16, 32, true],
  ]);
  assert.deepEqual(
    loraParams(loraConfig({ targets: [], targetParameters: ["down_proj"], r: 2 }), gptOss).get(
      "base_model.model.model.layers.0.mlp.experts.lora_A.weight",
    ),
    [8, 16],
  );
  assert.throws(() => expertTargets(gptOss, ["experts.gate_up_proj_bias"]), /match no fused expert parameter/);
  assert.throws(() => loraConfigFromArgs({ lora_target: "experts.down_proj", lora_dropout: 0.1 }), /lora_dropout/);
  assert.throws(() => loraConfig({ targetParameters: ["experts.down_proj"], useDora: true }), /use_dora/);
  assert.throws(() => loraConfigFromArgs({ lora_target: "experts.down_proj", pissa_init: true }), /pissa_init/);
  // adapter_config.json: target_modules may be absent beside target_parameters; dropout is refused there, as in PEFT
  const only = { peft_type: "LORA", r: 2, target_parameters: ["mlp.experts.gate_up_proj"] };
  assert.deepEqual(loraConfigFromPeft(only).targets, []);
  assert.deepEqual(loraConfigFromPeft(only).targetParameters, ["mlp.experts.gate_up_proj"]);
  assert.throws(() => loraConfigFromPeft({ ...only, lora_dropout: 0.05 }), /target_parameters.*lora_dropout/);
  assert.throws(() => loraConfigFromPeft({ ...only, target_parameters: "gate_up_proj" }), /target_parameters must be/);

  const model = await loadModel(`${root}mixtral`, { executor: "reference" });
  const ids = [[3, 9, 27, 81, 115, 2, 6, 18]];
  const base = (await model.forward(ids)).logits;
  await attachAdapter(model, { targets: [], targetParameters: ["experts.gate_up_proj", "experts.down_proj"], r: 2 });
  const fresh = (await model.forward(ids)).logits;
  assert.deepEqual(Array.from(fresh), Array.from(base)); // lora_B starts at zero, as in PEFT
  const { grads } = await model.gradients(ids, { labels: ids });
  const gB = grads.get("base_model.model.model.layers.0.mlp.experts.lora_B.weight")!;
  assert.ok(gB.some((v) => v !== 0), "lora_B of down_proj gets a gradient");
});
