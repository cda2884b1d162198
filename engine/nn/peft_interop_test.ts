/**
 * PEFT interop: adapters attached, perturbed and saved here load with `PeftModel.from_pretrained`
 * (engine/io/peft_check.py, run with the repository's .venv; skipped with a message when it is absent) and give the
 * same logits (LoRA on fused expert parameters included, gpt_oss's and PEFT's rewrite of module names too).
 */
import assert from "node:assert/strict";
import { openSafetensors } from "../io/safetensors.ts";
import { loadModel, type Model } from "./model.ts";
import { attachAdapter, type LoraConfig, saveAdapter } from "./lora.ts";
import { Rng } from "../util/rng.ts";

const repo = new URL("../../", import.meta.url).pathname;
const models = `${repo}fixtures/models/`;
const python = `${repo}.venv/bin/python`;
const hasPython = await Deno.stat(python).then(() => true, () => false);
if (!hasPython) console.warn(`peft_interop_test: ${python} is absent, so the PEFT interop test is skipped`);

/** Moves every adapter parameter by N(0, std²) (a stand-in for training). */
async function perturb(model: Model, std: number, seed: number) {
  const rng = new Rng(seed);
  for (const [k, p] of model.adapter!.params) {
    const v = await model.executor.getParam(k);
    model.executor.setParam(k, v.map((x) => x + std * rng.normal()), p.shape);
  }
}

Deno.test({
  name: "interop: adapters written here load in PEFT (PeftModel.from_pretrained) with the same logits",
  ignore: !hasPython,
  fn: async () => {
    const ids = [[5, 17, 99, 3, 64, 127, 8, 42, 77, 1, 30, 66]];
    const dir = await Deno.makeTempDir();
    try {
      const cases: { base: string; dir: string; logits: Float32Array }[] = [];
      const add = async (
        base: string,
        name: string,
        cfg: Partial<LoraConfig>,
        opts: { convertPissa?: boolean } = {},
      ) => {
        const model = await loadModel(`${models}${base}`, { executor: "reference" });
        await attachAdapter(model, cfg, { seed: 9 });
        await perturb(model, 0.05, cases.length + 1);
        await saveAdapter(model, `${dir}/${name}`, opts);
        cases.push({ base, dir: `${dir}/${name}`, logits: (await model.forward(ids)).logits });
      };
      await add("llama", "dora_rslora_all", { r: 4, targets: "all", useRslora: true, useDora: true, dropout: 0.05 });
      await add("qwen2", "lora_some", {
        r: 2,
        alpha: 5,
        targets: ["q_proj", "v_proj", "down_proj"],
        exclude: ["model.layers.0.mlp.down_proj"],
      });
      await add("llama", "regex_gaussian", { r: 3, targets: String.raw`.*\.(k_proj|up_proj)`, init: "gaussian" });
      await add("llama", "pissa", { r: 4, targets: ["q_proj", "o_proj", "up_proj"], init: "pissa" });
      await add("llama", "pissa_converted", { r: 4, targets: ["q_proj", "o_proj", "up_proj"], init: "pissa" }, {
        convertPissa: true,
      });
      // LoRA on the fused expert parameters (PEFT's target_parameters) beside attention, both and one of them.
      await add("qwen3_moe", "experts_both", {
        r: 2,
        targets: ["k_proj"],
        targetParameters: ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"],
      });
      await add("mixtral", "experts_down_rslora", {
        r: 3,
        alpha: 5,
        targets: [],
        targetParameters: ["experts.down_proj"],
        useRslora: true,
        init: "gaussian",
      });
      // gpt_oss's transposed experts; module names PEFT rewrites onto deepseek_v3's fused experts (rank_pattern 2r)
      await add("gpt_oss", "experts_gpt_oss", {
        r: 2,
        targets: ["q_proj"],
        targetParameters: ["experts.gate_up_proj", "experts.down_proj"],
      });
      await add("deepseek_v3", "names_rslora", {
        r: 2,
        alpha: 3,
        targets: ["kv_b_proj", "gate_proj", "up_proj", "down_proj"],
        useRslora: true,
      });
      const out = `${dir}/logits.safetensors`;
      const cmd = new Deno.Command(python, {
        args: [
          `${repo}engine/io/peft_check.py`,
          out,
          JSON.stringify(ids),
          ...cases.map((c) => `${models}${c.base}::${c.dir}`),
        ],
        cwd: repo,
        stdout: "piped",
        stderr: "piped",
      });
      const res = await cmd.output();
      assert.equal(res.code, 0, new TextDecoder().decode(res.stderr).slice(-3000));
      const f = await openSafetensors(out);
      for (const [i, c] of cases.entries()) {
        const want = await f.readF32(`logits.${i}`);
        assert.equal(want.length, c.logits.length);
        let worst = 0;
        for (let k = 0; k < want.length; k++) worst = Math.max(worst, Math.abs(want[k] - c.logits[k]));
        assert.ok(worst <= 1e-4, `${c.dir.slice(dir.length + 1)}: max |Δlogit| ${worst} vs PEFT`);
      }
      f.close();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
