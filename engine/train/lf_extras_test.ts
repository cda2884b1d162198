/**
 * LLaMA-Factory's `examples/extras/{badam,galore,qoft}` YAMLs (copies in fixtures/configs/) run on the built-in tiny
 * model with only the model, data, output, length, sample count and step count put in: BAdam trains one block at a
 * time (ascending from block 0), layer-wise GaLore keeps its projected states, the bnb QOFT one trains OFT on a 4-bit
 * base, the AWQ and GPTQ ones are plain OFT on an unquantized model, and an AWQ or GPTQ checkpoint is refused naming
 * its config.json, the field and the value.
 */
import assert from "node:assert/strict";
import { loadTrainConfig } from "../config/args.ts";
import { predict } from "./predict.ts";
import { TrainSession } from "./session.ts";
import { train } from "./trainer.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const TINY = `${ROOT}fixtures/tiny/model`;
const root = await Deno.makeTempDir({ prefix: "whetstone-lf-extras-" });
globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));
const quiet = { log: () => {} };

/** fixtures/configs/`file` with the tiny model, the demo data, an output folder, short rows and `steps` steps. */
function extras(file: string, out: string, steps: number, model = TINY, extra: string[] = []) {
  return loadTrainConfig(`${ROOT}fixtures/configs/${file}`, [
    `model_name_or_path=${model}`,
    `dataset_dir=${ROOT}fixtures/demo`,
    "dataset=whetstone_demo",
    `output_dir=${root}/${out}`,
    `max_steps=${steps}`,
    "max_samples=16",
    "cutoff_len=64",
    "plot_loss=false",
    ...extra,
  ]);
}

/** The params whose values differ between two snapshots, as "model.layers.N" (else the param name). */
function changedBlocks(before: Map<string, Float32Array>, after: Map<string, Float32Array>): string[] {
  const out = new Set<string>();
  for (const [n, x] of before) {
    const y = after.get(n)!;
    if (x.some((v, i) => v !== y[i])) out.add(/^model\.layers\.\d+/.exec(n)?.[0] ?? n);
  }
  return [...out].sort();
}

async function snapshot(s: TrainSession): Promise<Map<string, Float32Array>> {
  const m = new Map<string, Float32Array>();
  for (const n of s.model.params.keys()) {
    m.set(n, Float32Array.from(await s.model.executor.getParam(s.model.prefix + n)));
  }
  return m;
}

Deno.test("LF's extras/badam llama3_full_sft.yaml: BAdam layer mode, ascending, one block per switch interval", async () => {
  const a = await extras("llama3_full_sft_badam.yaml", "badam", 3);
  assert.deepEqual(
    [a.use_badam, a.badam_mode, a.badam_switch_mode, a.badam_switch_interval, a.finetuning_type],
    [true, "layer", "ascending", 50, "full"],
  );
  const s = await TrainSession.create(a, quiet);
  // The optimizer holds AdamW's two f32 moments for the active block only (block 0 of 4 decoder layers).
  const block0 = [...s.model.params].filter(([n]) => n.startsWith("model.layers.0."))
    .reduce((t, [, p]) => t + p.shape.reduce((x, y) => x * y, 1), 0);
  assert.equal(s.plan.memory!.optimizer, 8 * block0, `optimizer bytes vs block 0's ${block0} params`);
  const before = await snapshot(s);
  const recs = await s.step(3);
  assert.equal(recs.length, 3);
  for (const r of recs) assert.ok(Number.isFinite(r.loss), `loss ${r.loss}`);
  assert.deepEqual(changedBlocks(before, await snapshot(s)), ["model.layers.0"], "only block 0 trained in 3 steps");
  s.close();
  // The same YAML with a switch every 2 steps: block 0 trains step 1 (BAdam's first block gets interval − 1 steps),
  // block 1 steps 2 and 3, block 2 step 4.
  const b = await extras("llama3_full_sft_badam.yaml", "badam-switch", 4, TINY, [
    "badam_switch_interval=2",
    "learning_rate=1e-3",
    "warmup_ratio=0",
  ]);
  const t = await TrainSession.create(b, quiet);
  let prev = await snapshot(t);
  const per: string[][] = [];
  for (let i = 0; i < 4; i++) {
    await t.step(1);
    const now = await snapshot(t);
    per.push(changedBlocks(prev, now));
    prev = now;
  }
  assert.deepEqual(per, [["model.layers.0"], ["model.layers.1"], ["model.layers.1"], ["model.layers.2"]]);
  t.close();
});

Deno.test("LF's extras/galore llama3_full_sft.yaml: layer-wise GaLore (rank 128, scale 2) runs", async () => {
  const a = await extras("llama3_full_sft_galore.yaml", "galore", 3);
  assert.deepEqual([a.use_galore, a.galore_layerwise, a.galore_rank, a.galore_scale], [true, true, 128, 2]);
  const s = await TrainSession.create(a, quiet);
  const recs = await s.step(3);
  assert.equal(recs.length, 3);
  for (const r of recs) assert.ok(Number.isFinite(r.loss), `loss ${r.loss}`);
  s.close();
  const names = await tensorNames(`${root}/galore-ckpt/checkpoint-2/optimizer.safetensors`, async () => {
    await train(await extras("llama3_full_sft_galore.yaml", "galore-ckpt", 2, TINY, ["save_steps=2"]), {
      progress: false,
      ...quiet,
    });
  });
  assert.ok(names.some((n) => n.endsWith(".galore_proj")), `GaLore's projections saved: ${names.slice(0, 8)}`);
});

/** The tensor names of a safetensors file `path`, after `make` wrote it. */
async function tensorNames(path: string, make: () => Promise<void>): Promise<string[]> {
  await make();
  const bytes = await Deno.readFile(path);
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  return Object.keys(JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)))).filter((k) =>
    k !== "__metadata__"
  );
}

Deno.test("LF's extras/qoft YAMLs: bnb 4-bit QOFT trains; the AWQ and GPTQ ones are OFT on an unquantized model", async () => {
  const losses: Record<string, number[]> = {};
  for (const file of ["llama3_oft_sft_bnb_npu.yaml", "llama3_oft_sft_awq.yaml", "llama3_oft_sft_gptq.yaml"]) {
    const a = await extras(file, file, 2);
    assert.deepEqual([a.finetuning_type, a.oft_block_size], ["oft", 32], file);
    const res = await train(a, { progress: false, ...quiet });
    losses[file] = res.losses.map((l) => l.loss);
    assert.equal(res.globalStep, 2, file);
    const cfg = JSON.parse(await Deno.readTextFile(`${root}/${file}/adapter_config.json`));
    assert.deepEqual([cfg.peft_type, cfg.oft_block_size, cfg.r], ["OFT", 32, 0], file);
  }
  const q = await extras("llama3_oft_sft_bnb_npu.yaml", "q", 1);
  assert.deepEqual([q.quantization_bit, q.quantization_method, q.double_quantization], [4, "bnb", false]);
  assert.deepEqual(losses["llama3_oft_sft_awq.yaml"], losses["llama3_oft_sft_gptq.yaml"], "the same plain OFT run");
  assert.notDeepEqual(losses["llama3_oft_sft_bnb_npu.yaml"], losses["llama3_oft_sft_awq.yaml"], "the 4-bit base");
});

Deno.test("an AWQ or GPTQ checkpoint is refused naming its config.json, quant_method and what is supported", async () => {
  for (const method of ["awq", "gptq"]) {
    const dir = `${root}/tiny-${method}`;
    await Deno.mkdir(dir);
    for await (const e of Deno.readDir(TINY)) {
      if (e.isFile) await Deno.copyFile(`${TINY}/${e.name}`, `${dir}/${e.name}`);
    }
    const cfg = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
    cfg.quantization_config = { quant_method: method, bits: 4, group_size: 128 };
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(cfg));
    const file = `llama3_oft_sft_${method}.yaml`;
    await assert.rejects(
      async () => await train(await extras(file, `refused-${method}`, 1, dir), { progress: false, ...quiet }),
      (e: Error) => {
        assert.ok(
          e.message.includes(`${dir}/config.json: quantization_config.quant_method "${method}" is not supported`),
        );
        assert.match(e.message, /unquantized checkpoints .* quantization_bit 4 or 8/);
        return true;
      },
    );
  }
});

Deno.test("LF's extras loraplus, pissa, dft and fsdp_qlora YAMLs run two steps on the tiny model; nlg_eval predicts", async () => {
  const runs: [string, (a: Awaited<ReturnType<typeof extras>>) => unknown[], unknown[]][] = [
    ["llama3_lora_sft_loraplus.yaml", (a) => [a.finetuning_type, a.loraplus_lr_ratio], ["lora", 16]],
    ["llama3_lora_sft_pissa.yaml", (a) => [a.pissa_init, a.pissa_iter, a.pissa_convert], [true, 16, true]],
    ["qwen2_full_sft_dft.yaml", (a) => [a.finetuning_type, a.use_dft_loss], ["full", true]],
    ["llama3_lora_sft_fsdp_qlora.yaml", (a) => [a.finetuning_type, a.quantization_bit], ["lora", 4]],
  ];
  for (const [file, keys, want] of runs) {
    const a = await extras(file, file, 2);
    assert.deepEqual(keys(a), want, file);
    const res = await train(a, { progress: false, ...quiet });
    assert.equal(res.globalStep, 2, file);
    assert.ok(res.losses.every((l) => Number.isFinite(l.loss)), `${file}: ${res.losses.map((l) => l.loss)}`);
  }
  // nlg_eval/llama3_lora_predict.yaml with the LoRA+ run's adapter; the tiny model's own template (llama3's
  // <|eot_id|> is no token of its vocabulary) and 16 new tokens (LF's default 1024 is past its 512 positions).
  const p = await extras("llama3_lora_predict_nlg_eval.yaml", "nlg", -1, TINY, [
    `adapter_name_or_path=${root}/llama3_lora_sft_loraplus.yaml`,
    "eval_dataset=whetstone_demo",
    "max_samples=4",
    "template=qwen",
    "max_new_tokens=16",
  ]);
  assert.deepEqual([p.do_predict, p.predict_with_generate], [true, true]);
  const res = await predict(p, { progress: false, ...quiet });
  assert.equal(res.predictions.length, 4);
  const lines = (await Deno.readTextFile(`${root}/nlg/generated_predictions.jsonl`)).trim().split("\n");
  assert.deepEqual(lines.map((l) => Object.keys(JSON.parse(l))), Array(4).fill(["prompt", "predict", "label"]));
  assert.ok(Number.isFinite(res.metrics["predict_bleu-4"]), JSON.stringify(res.metrics));
});
