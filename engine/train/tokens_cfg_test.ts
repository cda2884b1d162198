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

Deno.test("init_special_tokens: LF's newest names; vocab_mean and noise fill the grown rows as LF's embedding.py", async () => {
  const parse = (v: string) => parseTrainArgs({ model_name_or_path: base, init_special_tokens: v }).init_special_tokens;
  assert.deepEqual(
    ["vocab_mean_noise", "description", "description_noise", "vocab_mean", "noise"].map(parse),
    ["noise_init", "desc_init", "desc_init_w_noise", "vocab_mean", "noise"],
  );
  using b = await openSafetensors(`${base}/model.safetensors`);
  const E = "model.embed_tokens.weight", dim = 32, w0 = await b.readF32(E), n = w0.length;
  const mean = Array.from({ length: dim }, (_, j) => {
    let t = 0;
    for (let r = 0; r < n / dim; r++) t += w0[r * dim + j];
    return t / (n / dim);
  });
  const all = w0.reduce((s, v) => s + v, 0) / n;
  const std = Math.sqrt(w0.reduce((s, v) => s + (v - all) ** 2, 0) / (n - 1));
  for (const init of ["vocab_mean", "noise"]) {
    const out = `${root}/init-${init}`;
    await train(args(out.slice(root.length + 1), { init_special_tokens: init, max_steps: 1 }), {
      progress: false,
      log: () => {},
    });
    using g = await openSafetensors(`${out}/resized_base/model.safetensors`);
    const w = await g.readF32(E), grown = w.subarray(n); // 64 rows: the 16 tokens and the padding
    assert.equal(grown.length, 64 * dim);
    if (init === "vocab_mean") {
      grown.forEach((v, i) => assert.ok(Math.abs(v - mean[i % dim]) < 1e-6, `row ${2048 + i / dim}: ${v}`));
    } else {
      const m = grown.reduce((s, v) => s + v, 0) / grown.length;
      const sd = Math.sqrt(grown.reduce((s, v) => s + (v - m) ** 2, 0) / grown.length);
      // 2048 samples of N(0, σ): the mean within 4 standard errors, the std within 10%
      assert.ok(Math.abs(m) < 4 * std / Math.sqrt(grown.length), `mean ${m}, σ ${std}`);
      assert.ok(Math.abs(sd / std - 1) < 0.1, `std ${sd} vs the old rows' ${std}`);
    }
  }
});

Deno.test("freeze_original_embeddings: false (LF's add_tokens examples) is accepted, true is refused naming it", () => {
  assert.equal(
    parseTrainArgs({ model_name_or_path: base, freeze_original_embeddings: false }).init_special_tokens,
    "noise_init",
  );
  assert.throws(
    () => parseTrainArgs({ model_name_or_path: base, freeze_original_embeddings: true }),
    /freeze_original_embeddings is not supported by Whetstone yet \(training only the new embedding rows\); got true/,
  );
});
