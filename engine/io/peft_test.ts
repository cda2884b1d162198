/**
 * PEFT adapter folders: reading the fixtures (made by PEFT), clear errors on what is not supported, atomic
 * writing, and interop: adapters written from Deno load with `PeftModel.from_pretrained` (engine/io/peft_check.py,
 * run with the repository's .venv; skipped with a message when it is absent) and give the same logits.
 */
import assert from "node:assert/strict";
import {
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  loraConfigFromPeft,
  readPeftAdapter,
  writePeftAdapter,
} from "./peft.ts";
import { openSafetensors } from "./safetensors.ts";
import { loadModel, type Model } from "../nn/model.ts";
import { attachAdapter, type LoraConfig, saveAdapter } from "../nn/lora.ts";
import { Rng } from "../nn/lora_init.ts";

const repo = new URL("../../", import.meta.url).pathname;
const models = `${repo}fixtures/models/`;
const python = `${repo}.venv/bin/python`;
const hasPython = await Deno.stat(python).then(() => true, () => false);
if (!hasPython) console.warn(`peft_test: ${python} is absent, so the PEFT interop test is skipped`);

const SEVEN = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"];

Deno.test("reads the PEFT fixtures into LoraConfigs and f32 tensors", async () => {
  const lora = await readPeftAdapter(`${models}llama/lora`);
  assert.deepEqual(
    lora.config,
    {
      r: 4,
      alpha: 8,
      dropout: 0,
      targets: SEVEN,
      exclude: undefined,
      layers: undefined,
      useRslora: false,
      useDora: false,
      init: "gaussian",
    } satisfies LoraConfig,
  );
  assert.equal(lora.baseModel, "fixtures/models/llama");
  assert.equal(lora.tensors.size, 28);
  assert.deepEqual(lora.tensors.get("base_model.model.model.layers.1.mlp.down_proj.lora_B.weight")!.shape, [64, 4]);
  const dora = await readPeftAdapter(`${models}llama/dora`);
  assert.equal(dora.config.useDora, true);
  assert.deepEqual(dora.tensors.get("base_model.model.model.layers.0.self_attn.k_proj.lora_magnitude_vector")!.shape, [
    32,
  ]);
  const rs = await readPeftAdapter(`${models}llama/rslora`);
  assert.deepEqual([rs.config.targets, rs.config.useRslora, rs.config.dropout, rs.config.init], [
    String.raw`model\.layers\.1\..*\.(q_proj|v_proj|o_proj|down_proj)`,
    true,
    0.1,
    true,
  ]);
  assert.equal((await readPeftAdapter(`${models}llama/pissa`)).config.init, "pissa");
});

Deno.test("rejects what it cannot reproduce, saying what and where", async () => {
  const raw = JSON.parse(await Deno.readTextFile(`${models}llama/lora/${ADAPTER_CONFIG_FILE}`));
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ modules_to_save: ["lm_head"] }, /modules_to_save = \["lm_head"\] is not supported/],
    [{ bias: "all" }, /bias "all" is not supported/],
    [{ peft_type: "IA3" }, /peft_type "IA3" is not supported/],
    [{ init_lora_weights: "olora" }, /init_lora_weights "olora" is not supported/],
    [{ rank_pattern: { q_proj: 8 } }, /rank_pattern/],
    [{ fan_in_fan_out: true }, /fan_in_fan_out/],
    [{ target_modules: null }, /target_modules is missing/],
    [{ r: 0 }, /r must be a positive integer, got 0/],
    [{ task_type: "SEQ_CLS" }, /task_type "SEQ_CLS"/],
  ];
  for (const [patch, re] of bad) assert.throws(() => loraConfigFromPeft({ ...raw, ...patch }, "x.json"), re);
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(() => readPeftAdapter(dir), /not a PEFT adapter folder/);
    await Deno.writeTextFile(`${dir}/${ADAPTER_CONFIG_FILE}`, JSON.stringify(raw));
    await Deno.writeFile(`${dir}/adapter_model.bin`, new Uint8Array(8));
    await assert.rejects(() => readPeftAdapter(dir), /adapter_model\.bin is a pickle/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writePeftAdapter writes both files atomically and reads back exactly", async () => {
  const src = await readPeftAdapter(`${models}llama/rslora`);
  const dir = await Deno.makeTempDir();
  try {
    const cfg: LoraConfig = { ...src.config, exclude: ["o_proj"], layers: [1] };
    await writePeftAdapter(`${dir}/a`, { config: cfg, tensors: src.tensors, baseModel: "meta/llama" });
    assert.deepEqual([...Deno.readDirSync(`${dir}/a`)].map((e) => e.name).sort(), [
      ADAPTER_CONFIG_FILE,
      ADAPTER_WEIGHTS_FILE,
    ]);
    const back = await readPeftAdapter(`${dir}/a`);
    assert.deepEqual(back.config, cfg);
    assert.equal(back.baseModel, "meta/llama");
    assert.deepEqual(back.tensors, src.tensors);
    for (const k of ["peft_type", "task_type", "fan_in_fan_out", "inference_mode", "bias", "init_lora_weights"]) {
      assert.ok(k in back.raw, `adapter_config.json lacks ${k}`);
    }
    const f = await openSafetensors(`${dir}/a/${ADAPTER_WEIGHTS_FILE}`);
    assert.deepEqual(f.metadata, { format: "pt" });
    f.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

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
