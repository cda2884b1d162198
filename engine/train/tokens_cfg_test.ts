/**
 * LLaMA-Factory's `examples/extras/multi_tokens/tokens_cfg.yaml` (a copy in fixtures/configs/) as
 * `new_special_tokens_config` with `resize_vocab` and `init_special_tokens: desc_init`, as LF's examples use it: an SFT
 * on a random tiny model and a text-to-SVG toy set whose answers use the new tokens. The 16 tokens are added as special
 * tokens after the vocabulary, the embedding grows to a multiple of 64, each token's row starts as the mean input
 * embedding of its description's tokens (LF's `_description_based_initialization`, recomputed here from the base's
 * weights and tokenizer), the rows train, and the output carries the grown tokenizer.
 */
import assert from "node:assert/strict";
import { parseYaml } from "../../deps.ts";
import { parseTrainArgs } from "../config/args.ts";
import { loadTokenizer } from "../data/tokenizer.ts";
import { openSafetensors } from "../io/safetensors.ts";
import { makeTinyModel } from "./testing.ts";
import { train } from "./trainer.ts";

const CFG = new URL("../../fixtures/configs/multi_tokens_tokens_cfg.yaml", import.meta.url).pathname;
const root = await Deno.makeTempDir({ prefix: "whetstone-tokens-cfg-" });
globalThis.addEventListener("unload", () => Deno.removeSync(root, { recursive: true }));
const base = await makeTinyModel(`${root}/base`, 3);
const descriptions = parseYaml(await Deno.readTextFile(CFG)) as Record<string, string>;
const tokens = Object.keys(descriptions);

// Text-to-SVG rows whose answers use the new tokens (as LF's add_tokens_demo set does).
const shapes = ["rect", "circle", "ellipse", "path"];
const rows = Array.from({ length: 16 }, (_, i) => {
  const s = shapes[i % 4];
  return {
    instruction: `draw a ${s}`,
    input: "",
    output: `<|START_OF_SVG|><|start_of_g|><|start_of_${s}|>x=${i}<|end_of_${s}|><|end_of_g|><|END_OF_SVG|>`,
  };
});
await Deno.mkdir(`${root}/data`);
await Deno.writeTextFile(`${root}/data/svg.json`, JSON.stringify(rows));
await Deno.writeTextFile(
  `${root}/data/dataset_info.json`,
  JSON.stringify({ svg: { file_name: "svg.json", formatting: "alpaca" } }),
);

function args(out: string, extra: Record<string, unknown>) {
  return parseTrainArgs({
    model_name_or_path: base,
    resize_vocab: true,
    new_special_tokens_config: CFG,
    init_special_tokens: "desc_init",
    stage: "sft",
    do_train: true,
    finetuning_type: "lora",
    dataset: "svg",
    dataset_dir: `${root}/data`,
    template: "qwen",
    cutoff_len: 64,
    output_dir: `${root}/${out}`,
    logging_steps: 1,
    per_device_train_batch_size: 4,
    learning_rate: 1e-2,
    max_steps: 6,
    save_strategy: "no",
    seed: 7,
    ...extra,
  });
}

Deno.test("tokens_cfg.yaml with LoRA: tokens added, embedding grown, rows from their descriptions, then trained", async () => {
  assert.equal(tokens.length, 16);
  const res = await train(args("lora", {}), { progress: false, log: () => {} });
  const l = res.losses.map((x) => x.loss);
  assert.ok(l.at(-1)! < l[0], `loss falls: ${l}`);
  const dir = `${root}/lora`;
  // The output's tokenizer has the tokens as special tokens, in the config's order after the 2048 ids.
  const tok = await loadTokenizer(dir), old = await loadTokenizer(base);
  assert.deepEqual(tokens.map((t) => tok.tokenToId(t)), tokens.map((_, i) => 2048 + i));
  assert.equal(old.tokenToId(tokens[0]), undefined);
  const svg = tok.encode(rows[1].output, { addSpecialTokens: false });
  assert.deepEqual(svg.slice(0, 3), [2048, 2050, 2054], "<|START_OF_SVG|><|start_of_g|><|start_of_circle|>");
  const tcfg = JSON.parse(await Deno.readTextFile(`${dir}/tokenizer_config.json`));
  const extra = tcfg.extra_special_tokens ?? tcfg.additional_special_tokens;
  assert.deepEqual(extra.slice(-16), tokens);
  // The grown base: 2048 + 16 rows padded to 2112 (LF's pad_to_multiple_of=64); description init from the base.
  using b = await openSafetensors(`${base}/model.safetensors`);
  using g = await openSafetensors(`${dir}/resized_base/model.safetensors`);
  const E = "model.embed_tokens.weight", dim = 32;
  assert.deepEqual(g.tensors.get(E)!.shape, [2112, dim]);
  assert.equal(JSON.parse(await Deno.readTextFile(`${dir}/resized_base/config.json`)).vocab_size, 2112);
  const w0 = await b.readF32(E), w = await g.readF32(E);
  assert.deepEqual(w.subarray(0, w0.length), w0, "old rows unchanged");
  for (const [i, t] of tokens.entries()) {
    const ids = old.encode(descriptions[t], { addSpecialTokens: false });
    assert.ok(ids.length > 3, t);
    for (let j = 0; j < dim; j++) {
      const mean = ids.reduce((s, id) => s + w0[id * dim + j], 0) / ids.length;
      const got = w[(2048 + i) * dim + j];
      assert.ok(Math.abs(got - mean) < 1e-6, `${t}[${j}]: ${got} vs the description mean ${mean}`);
    }
  }
  // LF: modules_to_save embed_tokens (tied head); the new rows used in the answers trained.
  const cfg = JSON.parse(await Deno.readTextFile(`${dir}/adapter_config.json`));
  assert.deepEqual(cfg.modules_to_save, ["embed_tokens", "lm_head"]);
  using f = await openSafetensors(`${dir}/adapter_model.safetensors`);
  const trained = await f.readF32("base_model.model.model.embed_tokens.weight");
  for (const t of ["<|START_OF_SVG|>", "<|end_of_circle|>"]) {
    const id = tok.tokenToId(t)!;
    let moved = 0;
    for (let j = 0; j < dim; j++) moved = Math.max(moved, Math.abs(trained[id * dim + j] - w[id * dim + j]));
    assert.ok(moved > 1e-4, `${t} trained (moved ${moved})`);
  }
});

Deno.test("tokens_cfg.yaml with full fine-tuning: the saved model and tokenizer have the 16 tokens", async () => {
  const res = await train(args("full", { finetuning_type: "full", learning_rate: 1e-3, max_steps: 2 }), {
    progress: false,
    log: () => {},
  });
  assert.equal(res.globalStep, 2);
  const dir = `${root}/full`;
  const tok = await loadTokenizer(dir);
  assert.deepEqual(tokens.map((t) => tok.tokenToId(t)), tokens.map((_, i) => 2048 + i));
  assert.equal(JSON.parse(await Deno.readTextFile(`${dir}/config.json`)).vocab_size, 2112);
  using f = await openSafetensors(`${dir}/model.safetensors`);
  assert.deepEqual(f.tensors.get("model.embed_tokens.weight")!.shape, [2112, 32]);
});
