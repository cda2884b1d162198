/**
 * gpt_oss against transformers goldens (fixtures/models/gpt_oss, made by fixtures/make_gpt_oss.py) on the reference
 * executor, WebGPU and ONNX Runtime: logits within 1e-4, the loss within 1e-5 relative, every gradient (sinks, router,
 * fused experts and their biases included) within 1e-4 relative norm; the same with the load-balancing term; a PEFT
 * LoRA adapter's loss and gradients; greedy generation token for token (KV-cached, past the sliding window); the same
 * weights in bf16 (gpt_oss_bf16); a released-layout MXFP4 checkpoint (gpt_oss_mxfp4) dequantized exactly as
 * transformers does, its logits, loss and tokens, and its export. Plus the sink identity with its gradients by finite
 * differences, config.json keys and GptOssConfig's defaults, and the refusal of other quantization_configs.
 */
import assert from "node:assert/strict";
import { attention, backward, Graph } from "../graph/mod.ts";
import { openSafetensors } from "../io/safetensors.ts";
import { decoderConfig } from "./config.ts";
import { allLinearTargets } from "./lora.ts";
import { loadModel } from "./model.ts";
import { exportModel } from "./export.ts";
import { growVocab, vocabSpec } from "./vocab.ts";
import { ReferenceExecutor } from "../exec/reference.ts";
import { withSinks } from "./moe_gpt_oss.ts";
import { decoderParams } from "./decoder.ts";
import { dequantizeMxfp4, mxfp4Shape } from "./mxfp4.ts";
import { maskedLogitError } from "./lora_testing.ts";
import { executors } from "./executors_testing.ts";
import { checkGrads, moeGolden, near } from "./moe_testing.ts";

const root = new URL("../../fixtures/models/", import.meta.url).pathname;
const dir = `${root}gpt_oss`;
/** gpt_oss_bf16: the same weights rounded to bf16 (as the dequantized releases are); goldens from them upcast. */
const FIXTURES = ["gpt_oss", "gpt_oss_bf16"];

for (const [exName, make] of executors()) {
  for (const name of FIXTURES) {
    Deno.test(`${name} on ${exName}: logits, loss, gradients (with and without the router loss) match transformers`, async () => {
      const g = await moeGolden(`${root}${name}`);
      const model = await loadModel(`${root}${name}`, { executor: await make(), dtype: "f32" });
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
      model.config.moe!.outputRouterLogits = true;
      model.config.moe!.auxCoef = 0.25;
      model.setAdapter(undefined); // drops compiled graphs
      near((await model.forward(g.ids, opts)).loss!, g.auxLoss!, "loss with the router loss");
      const aux = await model.gradients(g.ids, opts);
      near(aux.loss, g.auxLoss!, "gradient-graph loss with the router loss");
      checkGrads(aux.grads, g.auxGrads);
    });

    // With the stored dtype (bf16 for gpt_oss_bf16: sinks, router and experts are widened where they are read).
    Deno.test(`generate ${name} on ${exName}: greedy tokens match transformers`, async () => {
      const gold = JSON.parse(await Deno.readTextFile(`${root}${name}/generate.json`));
      const model = await loadModel(`${root}${name}`, { executor: await make() });
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

  Deno.test(`gpt_oss_mxfp4 on ${exName}: MXFP4 experts dequantized as transformers does; logits, loss, tokens`, async () => {
    const d = `${root}gpt_oss_mxfp4`;
    const f = await openSafetensors(`${d}/golden.safetensors`);
    const model = await loadModel(d, { executor: await make(), dtype: "f32" });
    assert.equal(model.config.raw.quantization_config, undefined); // as transformers' remove_quantization_config
    for (const n of f.tensors.keys()) {
      if (!n.startsWith("dequant.")) continue;
      const name = n.slice("dequant.".length);
      assert.deepEqual(Array.from(await model.executor.getParam(name)), Array.from(await f.readF32(n)), name);
    }
    const g = await moeGolden(d);
    f.close();
    const res = await model.forward(g.ids, { labels: g.labels, attentionMask: g.mask });
    assert.ok(maskedLogitError(res.logits, g.logits, g.mask, model.config.vocab) <= 1e-4, "logits");
    near(res.loss!, g.loss, "loss");
    const gold = JSON.parse(await Deno.readTextFile(`${d}/generate.json`));
    const stored = await loadModel(d, { executor: await make() }); // experts kept in bf16, as dequantized
    assert.equal(stored.params.get("model.layers.0.mlp.experts.gate_up_proj")!.dtype, "bf16");
    for (const run of gold.runs) {
      const got = await stored.generate(run.prompt, { maxNewTokens: gold.max_new_tokens, stop: gold.eos });
      assert.deepEqual(got, run.new_tokens, `prompt [${run.prompt}]`);
    }
  });

  Deno.test(`gpt_oss/lora on ${exName}: loss, logits and adapter gradients match PEFT`, async () => {
    const g = await moeGolden(`${dir}/lora`);
    const model = await loadModel(dir, { executor: await make(), adapter: `${dir}/lora` });
    const res = await model.forward(g.ids, { labels: g.labels, attentionMask: g.mask });
    assert.ok(maskedLogitError(res.logits, g.logits, g.mask, model.config.vocab) <= 1e-4, "logits");
    near(res.loss!, g.loss, "loss");
    const { loss, grads } = await model.gradients(g.ids, { labels: g.labels, attentionMask: g.mask });
    near(loss, g.loss, "gradient-graph loss");
    checkGrads(grads, g.grads);
  });
}

Deno.test("gpt_oss_mxfp4 exported: dequantized bf16 experts, no quantization_config; loads back to the same logits", async () => {
  const d = `${root}gpt_oss_mxfp4`;
  const tmp = await Deno.makeTempDir({ prefix: "whetstone-gpt-oss-" });
  try {
    const model = await loadModel(d, { executor: new ReferenceExecutor() });
    await exportModel(model, `${tmp}/out`, { source: d, dtype: "bf16" });
    const cfg = JSON.parse(await Deno.readTextFile(`${tmp}/out/config.json`));
    assert.equal(cfg.quantization_config, undefined);
    const back = await loadModel(`${tmp}/out`, { executor: new ReferenceExecutor() });
    const name = "model.layers.1.mlp.experts.down_proj";
    assert.deepEqual(Array.from(await back.executor.getParam(name)), Array.from(await model.executor.getParam(name)));
    const ids = [[1, 5, 9, 13, 2, 7, 11]];
    assert.deepEqual(Array.from((await back.forward(ids)).logits), Array.from((await model.forward(ids)).logits));
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("gpt_oss_mxfp4: growVocab resizes it (dequantized at load, as LF resizes it), MXFP4 experts copied", async () => {
  const d = `${root}gpt_oss_mxfp4`, steps = new URL("../../fixtures/steps/tokenizer/", import.meta.url).pathname;
  const tmp = await Deno.makeTempDir({ prefix: "whetstone-gpt-oss-" });
  try {
    for (const f of ["config.json", "model.safetensors"]) await Deno.copyFile(`${d}/${f}`, `${tmp}/${f}`);
    for (const f of ["tokenizer.json", "tokenizer_config.json"]) await Deno.copyFile(`${steps}${f}`, `${tmp}/${f}`);
    const spec = await vocabSpec({ add_special_tokens: Array.from({ length: 24 }, (_, i) => `<extra_${i}>`).join() });
    const r = await growVocab(tmp, `${tmp}/grown`, spec);
    assert.deepEqual([r.oldRows, r.newRows], [128, 192]);
    const grown = await loadModel(`${tmp}/grown`, { executor: new ReferenceExecutor(), dtype: "f32" });
    const base = await loadModel(d, { executor: new ReferenceExecutor(), dtype: "f32" });
    const name = "model.layers.0.mlp.experts.gate_up_proj";
    assert.deepEqual(Array.from(await grown.executor.getParam(name)), Array.from(await base.executor.getParam(name)));
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("withSinks: o · sigmoid(lse − sink) is the softmax with a sink column; its gradients by finite differences", async () => {
  const [L, Hq, Hkv, D, W] = [5, 4, 2, 3, 3];
  const rnd = (n: number, s: number) => Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + s) * 1.3);
  const feeds = { q: rnd(L * Hq * D, 1), k: rnd(L * Hkv * D, 2), v: rnd(L * Hkv * D, 3), s: rnd(Hq, 4) };
  const dO = rnd(L * Hq * D, 5);
  // f64 by hand: scores within the causal window, exp(sink) added to each row's denominator; objective Σ dO·o.
  const objective = (f: typeof feeds) => {
    const o = new Float64Array(L * Hq * D);
    for (let h = 0; h < Hq; h++) {
      const hk = Math.floor(h / (Hq / Hkv));
      for (let i = 0; i < L; i++) {
        const js = [...Array(L).keys()].filter((j) => j <= i && i - j < W);
        const e = js.map((j) => {
          let d = 0;
          for (let x = 0; x < D; x++) d += f.q[(i * Hq + h) * D + x] * f.k[(j * Hkv + hk) * D + x];
          return Math.exp(d / Math.sqrt(D));
        });
        const z = e.reduce((a, b) => a + b, 0) + Math.exp(f.s[h]);
        js.forEach((j, n) => {
          for (let x = 0; x < D; x++) o[(i * Hq + h) * D + x] += (e[n] / z) * f.v[(j * Hkv + hk) * D + x];
        });
      }
    }
    return { o, y: o.reduce((a, b, n) => a + b * dO[n], 0) };
  };
  const want = objective(feeds).o;
  const fd = (key: keyof typeof feeds, n: number) => {
    const h = 1e-6, up = structuredClone(feeds), dn = structuredClone(feeds);
    up[key][n] += h;
    dn[key][n] -= h;
    return (objective(up).y - objective(dn).y) / (2 * h);
  };
  for (const [name, make] of executors()) {
    const g = new Graph();
    const q = g.input("q", [1, L, Hq, D]), k = g.input("k", [1, L, Hkv, D]), v = g.input("v", [1, L, Hkv, D]);
    const s = g.input("s", [Hq]);
    const { o, lse } = attention(q, k, v, { window: W });
    const got = withSinks(o, lse, s);
    g.output("o", got);
    const seed = g.constant(Float32Array.from(dO), [1, L, Hq, D]);
    backward(got, [q, k, v, s], seed).forEach((t, i) => g.output(["dq", "dk", "dv", "ds"][i], t));
    const out = await (await (await make()).compile(g)).run(feeds);
    let err = 0;
    for (let n = 0; n < want.length; n++) err = Math.max(err, Math.abs(out.o[n] - want[n]));
    assert.ok(err < 1e-5, `${name}: max error ${err}`);
    for (const [key, grad] of [["q", "dq"], ["k", "dk"], ["v", "dv"], ["s", "ds"]] as const) {
      for (let n = 0; n < feeds[key].length; n++) {
        const e = fd(key, n);
        assert.ok(
          Math.abs(out[grad][n] - e) < 1e-4 * Math.max(1, Math.abs(e)),
          `${name} ${grad}[${n}]: ${out[grad][n]} vs ${e}`,
        );
      }
    }
  }
});

Deno.test("gpt_oss config.json: GptOssConfig's defaults, v4/v5 rope, LF's lora_target all, refusals", async () => {
  const raw = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
  const c = decoderConfig(raw);
  assert.deepEqual([c.attnSinks, c.qkvBias, c.oBias, c.layerWindow, c.eps], [true, true, true, [4, 0], 1e-5]);
  assert.deepEqual([c.moe!.experts, c.moe!.topK, c.moe!.intermediate, c.moe!.sparse], [4, 2, 16, [true, true]]);
  assert.equal(c.ropeScaling.type, "yarn");
  assert.equal((c.ropeScaling as { truncate: boolean }).truncate, false);
  // The routers and experts are not nn.Linear in transformers: "all" is the attention projections.
  assert.deepEqual(allLinearTargets(c).sort(), ["k_proj", "o_proj", "q_proj", "v_proj"]);
  // Released-checkpoint defaults: no layer_types (sliding on even layers), no rope (yarn ×32 over 4096), theta 150000.
  const bare = { ...raw, num_hidden_layers: 4 };
  for (const k of ["layer_types", "rope_scaling", "rope_theta", "sliding_window", "attention_bias", "rms_norm_eps"]) {
    delete bare[k];
  }
  const d = decoderConfig(bare);
  assert.deepEqual([d.layerWindow, d.ropeTheta, d.ropeScaling.type, d.qkvBias], [
    [128, 0, 128, 0],
    150000,
    "yarn",
    true,
  ]);
  assert.equal((d.ropeScaling as { factor: number }).factor, 32);
  // A v4 config.json with rope_scaling null still gets the yarn default (GptOssConfig.__post_init__), with its theta.
  const nul = decoderConfig({ ...bare, rope_scaling: null, rope_theta: 1000 });
  assert.deepEqual([nul.ropeTheta, nul.ropeScaling.type], [1000, "yarn"]);
  assert.equal(decoderConfig({ ...bare, num_local_experts: undefined, num_experts: 4 }).moe!.experts, 4);
  const v5 = decoderConfig({
    ...bare,
    rope_parameters: { rope_type: "yarn", rope_theta: 100, factor: 4, original_max_position_embeddings: 32 },
  });
  assert.deepEqual([v5.ropeTheta, (v5.ropeScaling as { factor: number }).factor], [100, 4]);
  assert.throws(
    () => decoderConfig({ ...raw, quantization_config: { quant_method: "fp8" } }),
    /"quantization_config" \(quant_method "fp8"\) is not supported for gpt_oss: only the released checkpoints' "mxfp4"/,
  );
  assert.equal(
    decoderConfig({ ...raw, quantization_config: { quant_method: "mxfp4" } }).raw.quantization_config,
    undefined,
  );
  assert.throws(() => decoderConfig({ ...raw, num_experts_per_tok: 5 }), /num_experts_per_tok 5 must be in \[1, 4\]/);
});

Deno.test("gpt-oss-20b's released config.json: MXFP4 blocks map onto the expert shapes the decoder expects", () => {
  const layerTypes = Array.from({ length: 24 }, (_, i) => (i % 2 ? "full_attention" : "sliding_attention"));
  const c = decoderConfig({
    architectures: ["GptOssForCausalLM"],
    attention_bias: true,
    experts_per_token: 4,
    head_dim: 64,
    hidden_act: "silu",
    hidden_size: 2880,
    intermediate_size: 2880,
    layer_types: layerTypes,
    max_position_embeddings: 131072,
    model_type: "gpt_oss",
    num_attention_heads: 64,
    num_experts_per_tok: 4,
    num_hidden_layers: 24,
    num_key_value_heads: 8,
    num_local_experts: 32,
    quantization_config: { modules_to_not_convert: ["model.layers.*.self_attn"], quant_method: "mxfp4" },
    rms_norm_eps: 1e-05,
    rope_scaling: {
      beta_fast: 32.0,
      beta_slow: 1.0,
      factor: 32.0,
      original_max_position_embeddings: 4096,
      rope_type: "yarn",
      truncate: false,
    },
    rope_theta: 150000,
    router_aux_loss_coef: 0.9,
    sliding_window: 128,
    swiglu_limit: 7.0,
    tie_word_embeddings: false,
    vocab_size: 201088,
  });
  assert.deepEqual([c.layerWindow.slice(0, 3), c.moe!.experts, c.moe!.topK, c.moe!.auxCoef], [
    [128, 0, 128],
    32,
    4,
    0.9,
  ]);
  assert.deepEqual([c.ropeTheta, (c.ropeScaling as { factor: number }).factor], [150000, 32]);
  const params = decoderParams(c);
  // gate_up_proj_blocks [32, 5760, 90, 16] and down_proj_blocks [32, 2880, 90, 16] as released.
  assert.deepEqual(mxfp4Shape([32, 5760, 90, 16]), params.get("model.layers.0.mlp.experts.gate_up_proj"));
  assert.deepEqual(mxfp4Shape([32, 2880, 90, 16]), params.get("model.layers.0.mlp.experts.down_proj"));
  assert.deepEqual(params.get("model.layers.0.self_attn.sinks"), [64]);
});

Deno.test("dequantizeMxfp4: low nibble first, E8M0 scale 2^(s − 127), rows transposed", () => {
  // blocks [E 1, R 2, G 1, 16]: row 0 bytes 0x21 then 0xF8 (codes 1, 2, then 8 = −0, 15 = −6), row 1 all 0x77.
  const blocks = new Uint8Array(32);
  blocks[0] = 0x21;
  blocks[1] = 0xf8;
  blocks.fill(0x77, 16);
  const bits = dequantizeMxfp4(blocks, Uint8Array.from([128, 125]), [1, 2, 1, 16]); // [1, 32, 2]
  const f = new Float32Array(bits.length), u = new Uint32Array(f.buffer);
  bits.forEach((b, i) => (u[i] = b << 16));
  // out[c, r]: row 0 (×2): 0.5·2, 1·2, −0, −6·2, then zeros; row 1 (×1/4): code 7 (6) everywhere.
  assert.deepEqual([f[0], f[2], f[4], f[6], f[8]], [1, 2, -0, -12, 0]);
  assert.ok([1, 3, 5, 63].every((i) => f[i] === 1.5));
  assert.throws(() => mxfp4Shape([1, 2, 3]), /MXFP4 blocks must be \[experts, rows, groups, 16\]/);
});
