/**
 * Test helpers for the trainer: a random tiny qwen2 model folder with the built-in tokenizer, made in a
 * temp dir with Whetstone's own safetensors writer; the ONNX Runtime sessions a run creates, with symbolic sessions on
 * or off.
 * @module
 */
import { OnnxExecutor } from "../exec/onnx/executor.ts";
import { writeSafetensors } from "../io/safetensors.ts";
import { decoderConfig } from "../nn/config.ts";
import { decoderParams } from "../nn/decoder.ts";
import { mulberry32 as rng } from "../util/rng.ts";

/** A tiny llama decoder config (hidden 32, 2 layers, GQA 4/2, tied embeddings) for graph-level tests. */
export const TINY_LLAMA = decoderConfig({
  model_type: "llama",
  vocab_size: 96,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: true,
});

const TOKENIZER = new URL("../../fixtures/tiny/model/", import.meta.url).pathname;

/**
 * Writes a random qwen2 model (hidden 32, 2 layers) with the fixture tokenizer into `dir`; `config` overrides
 * config.json keys (e.g. `{ model_type: "llama" }`).
 */
export async function makeTinyModel(dir: string, seed = 1, config: Record<string, unknown> = {}): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const vocab = Object.keys(JSON.parse(await Deno.readTextFile(`${TOKENIZER}tokenizer.json`)).model.vocab).length + 3;
  const raw = {
    model_type: "qwen2",
    architectures: ["Qwen2ForCausalLM"],
    vocab_size: vocab,
    hidden_size: 32,
    intermediate_size: 64,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    tie_word_embeddings: true,
    max_position_embeddings: 512,
    torch_dtype: "float32",
    ...config,
  };
  const cfg = decoderConfig(raw);
  const r = rng(seed);
  const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
  for (const [name, shape] of decoderParams(cfg)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = name.endsWith("norm.weight")
      ? new Float32Array(n).fill(1)
      : Float32Array.from({ length: n }, () => (r() - 0.5) * 0.2);
    tensors[name] = { dtype: "F32", shape, data };
  }
  await writeSafetensors(`${dir}/model.safetensors`, tensors);
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(raw, null, 2));
  for (const f of ["tokenizer.json", "tokenizer_config.json"]) await Deno.copyFile(`${TOKENIZER}${f}`, `${dir}/${f}`);
  return dir;
}

/**
 * Runs `fn` with ONNX Runtime's symbolic sessions on or off (`WHETSTONE_ONNX_SYMBOLIC`) and counts the sessions every
 * ONNX executor created and reused meanwhile, and the reasons of the symbolic fallbacks.
 */
export async function countOnnxSessions<T>(
  symbolic: boolean,
  fn: () => Promise<T>,
): Promise<{ result: T; created: number; reused: number; fallbacks: string[] }> {
  const all = OnnxExecutor.allSessions;
  const before = { created: all.created, reused: all.reused, fallbacks: all.fallbacks.length };
  if (!symbolic) Deno.env.set("WHETSTONE_ONNX_SYMBOLIC", "off");
  try {
    const result = await fn();
    return {
      result,
      created: all.created - before.created,
      reused: all.reused - before.reused,
      fallbacks: all.fallbacks.slice(before.fallbacks),
    };
  } finally {
    Deno.env.delete("WHETSTONE_ONNX_SYMBOLIC");
  }
}
