/**
 * Vocabulary growth through the trainer: a short LoRA run on a random tiny model with a new special token in its
 * responses. The loss falls; the embeddings train next to the adapter (LLaMA-Factory's additional_target); the output
 * has the tokenizer with the new token and the adapter carries embed_tokens / lm_head as PEFT's modules_to_save.
 */
import assert from "node:assert/strict";
import { parseTrainArgs } from "../config/args.ts";
import { ConfigError } from "../config/train_args.ts";
import { loadTokenizer } from "../data/tokenizer.ts";
import { openSafetensors } from "../io/safetensors.ts";
import { makeTinyModel } from "./testing.ts";
import { loadModel } from "../nn/model.ts";
import type { LoraAdapter } from "../nn/lora.ts";
import { train } from "./trainer.ts";

const root = await Deno.makeTempDir({ prefix: "whetstone-vocab-" });
globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));
const base = await makeTinyModel(`${root}/base`, 2);
const data = `${root}/data`;
await Deno.mkdir(data);
const rows = Array.from({ length: 16 }, (_, i) => ({
  instruction: `count to ${i % 4 + 2}`,
  input: "",
  output: `<think>${"ab".repeat(i % 3 + 1)}</think> ${i % 4 + 2}`,
}));
await Deno.writeTextFile(`${data}/think.json`, JSON.stringify(rows));
await Deno.writeTextFile(
  `${data}/dataset_info.json`,
  JSON.stringify({ think: { file_name: "think.json", formatting: "alpaca" } }),
);

async function run(name: string, extra: Record<string, unknown>) {
  const lines: string[] = [];
  const res = await train(
    parseTrainArgs({
      model_name_or_path: base,
      stage: "sft",
      do_train: true,
      finetuning_type: "lora",
      dataset: "think",
      dataset_dir: data,
      template: "qwen",
      cutoff_len: 64,
      output_dir: `${root}/${name}`,
      logging_steps: 1,
      per_device_train_batch_size: 4,
      learning_rate: 1e-2,
      max_steps: 6,
      save_strategy: "no",
      seed: 7,
      ...extra,
    }),
    { progress: false, log: (l: string) => lines.push(l) },
  );
  return { losses: res.losses.map((l) => l.loss), lines };
}

Deno.test("add_special_tokens with LoRA: the loss falls, embeddings train, the output has the token", async () => {
  const out = await run("think", { add_special_tokens: "<think>,</think>" });
  assert.ok(out.losses.at(-1)! < out.losses[0], `loss falls: ${out.losses.join(" ")}`);
  assert.ok(out.lines.some((l) => l.includes("changed `resize_vocab` to True")), "resize_vocab turned on");
  const dir = `${root}/think`;
  const tok = await loadTokenizer(dir);
  const id = tok.tokenToId("<think>")!;
  assert.deepEqual([id, tok.tokenToId("</think>")], [2048, 2049]);
  assert.deepEqual(tok.encode("<think>x</think>", { addSpecialTokens: false }).filter((t) => t >= 2048), [2048, 2049]);
  const cfg = JSON.parse(await Deno.readTextFile(`${dir}/adapter_config.json`));
  assert.deepEqual(cfg.modules_to_save, ["embed_tokens", "lm_head"]);
  assert.equal(cfg.base_model_name_or_path, `${dir}/resized_base`, "a base of the grown vocabulary");
  using f = await openSafetensors(`${dir}/adapter_model.safetensors`);
  assert.deepEqual(f.tensors.get("base_model.model.model.embed_tokens.weight")!.shape, [2112, 32]);
  assert.deepEqual(f.tensors.get("base_model.model.lm_head.weight")!.shape, [2112, 32]);
  assert.ok([...f.tensors.keys()].some((k) => k.endsWith("lora_A.weight")));
  // the embedding trained: the new token's row moved away from its initial value in the grown base
  using g = await openSafetensors(`${dir}/resized_base/model.safetensors`);
  const before = await g.readF32("model.embed_tokens.weight"),
    after = await f.readF32(
      "base_model.model.model.embed_tokens.weight",
    );
  let moved = 0;
  for (let j = 0; j < 32; j++) moved = Math.max(moved, Math.abs(after[id * 32 + j] - before[id * 32 + j]));
  assert.ok(moved > 1e-4, `the <think> row trained (moved ${moved})`);
  // Whetstone loads the adapter back onto the grown base, embeddings included; the original base is refused by shape.
  const m = await loadModel(`${dir}/resized_base`, { executor: "reference", adapter: dir });
  const loaded = await m.executor.getParam(m.prefix + "model.embed_tokens.weight");
  assert.ok(after.every((v, i) => v === loaded[i]), "modules_to_save embed_tokens loaded over the base");
  assert.deepEqual((m.adapter as LoraAdapter).modulesToSave, ["model.embed_tokens.weight"]);
  m.executor.dispose();
  await assert.rejects(
    loadModel(base, { executor: "reference", adapter: dir }),
    /modules_to_save weight model.embed_tokens.weight is \[2112, 32\], the base has \[2048, 32\]/,
  );
});

Deno.test("add_special_tokens with LoRA on the bf16 tiny model: its embedding is upcast and trains", async () => {
  const tiny = new URL("../../fixtures/tiny/model", import.meta.url).pathname;
  const out = await run("bf16", { model_name_or_path: tiny, add_special_tokens: "<think>,</think>" });
  assert.ok(out.losses.at(-1)! < out.losses[0], `loss falls: ${out.losses.join(" ")}`);
  using f = await openSafetensors(`${root}/bf16/adapter_model.safetensors`);
  assert.equal(f.tensors.get("base_model.model.model.embed_tokens.weight")!.dtype, "F32");
});

Deno.test("resize_vocab with LoRA: a resumed run restores the trained embeddings from the checkpoint", async () => {
  const args = { add_tokens: "wonderland", add_special_tokens: "<think>", save_strategy: "steps", save_steps: 3 };
  await run("whole", args);
  await run("resumed", { ...args, resume_from_checkpoint: `${root}/whole/checkpoint-3` });
  const key = "base_model.model.model.embed_tokens.weight";
  using a = await openSafetensors(`${root}/whole/adapter_model.safetensors`);
  using b = await openSafetensors(`${root}/resumed/adapter_model.safetensors`);
  const ea = await a.readF32(key), eb = await b.readF32(key);
  let diff = 0;
  for (let i = 0; i < ea.length; i++) diff = Math.max(diff, Math.abs(ea[i] - eb[i]));
  assert.ok(diff < 1e-5, `resumed embeddings match the uninterrupted run (max diff ${diff})`);
});

Deno.test("add_tokens with full fine-tuning: the saved model has the grown embedding and the tokenizer", async () => {
  const out = await run("full", { finetuning_type: "full", add_tokens: "wonderland", learning_rate: 1e-3 });
  assert.ok(out.losses.at(-1)! < out.losses[0], `loss falls: ${out.losses.join(" ")}`);
  const dir = `${root}/full`;
  assert.equal((await loadTokenizer(dir)).tokenToId("wonderland"), 2048);
  assert.equal(JSON.parse(await Deno.readTextFile(`${dir}/config.json`)).vocab_size, 2112);
  using f = await openSafetensors(`${dir}/model.safetensors`);
  assert.deepEqual(f.tensors.get("model.embed_tokens.weight")!.shape, [2112, 32]);
});

Deno.test("vocabulary keys: quantized resize is refused naming resize_vocab; a bad init names its key", async () => {
  assert.throws(
    () => parseTrainArgs({ model_name_or_path: base, quantization_bit: 4, resize_vocab: true, output_dir: root }),
    /resize_vocab.*Cannot resize embedding layers of a quantized model/s,
  );
  assert.throws(
    () => parseTrainArgs({ model_name_or_path: base, finetuning_type: "oft", add_tokens: "x", output_dir: root }),
    /add_tokens: training the resized embeddings beside an OFT adapter is not supported/,
  );
  assert.throws(
    () => parseTrainArgs({ model_name_or_path: base, init_special_tokens: "zeros", output_dir: root }),
    /init_special_tokens/,
  );
  await Deno.writeTextFile(`${root}/list.yaml`, "- <a>\n- <b>\n");
  await assert.rejects(
    run("bad-config", { new_special_tokens_config: `${root}/list.yaml` }),
    (e) =>
      e instanceof ConfigError && /^new_special_tokens_config: YAML config must be a dictionary/.test(e.problems[0]),
  );
});
