/**
 * PEFT adapter folders: reading the fixtures (made by PEFT), clear errors on what is not supported, atomic
 * writing. The interop test (adapters attached and saved by engine/nn load in PEFT) is engine/nn/peft_interop_test.ts.
 */
import assert from "node:assert/strict";
import {
  ADAPTER_CONFIG_FILE,
  ADAPTER_WEIGHTS_FILE,
  type LoraConfig,
  loraConfigFromPeft,
  readPeftAdapter,
  writePeftAdapter,
} from "./peft.ts";
import { openSafetensors } from "./safetensors.ts";

const repo = new URL("../../", import.meta.url).pathname;
const models = `${repo}fixtures/models/`;

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
    [{ modules_to_save: ["score"] }, /modules_to_save = \["score"\] is not supported/],
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
