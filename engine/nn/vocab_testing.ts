/**
 * Test helper: a model folder whose vocabulary (embedding and LM-head rows) is larger than its tokenizer's, as
 * released models pad theirs (Qwen2.5: 151,936 rows, 151,665 tokens), with padded rows that win every argmax.
 * @module
 */
import { openSafetensors, writeSafetensors } from "../io/safetensors.ts";

/**
 * Copies the model folder `src` into `dst` with `extra` rows appended to its embedding (and untied LM head):
 * row `V + i` is `scale` × row `i`, so its logit is `scale` × token i's logit and the padded rows hold the largest
 * logit wherever the largest real logit is positive. `config.json`'s `vocab_size` grows by `extra`; the tokenizer
 * files are copied unchanged. Resolves with `dst` and the original vocabulary size.
 */
export async function writePaddedVocabModel(
  src: string,
  dst: string,
  extra: number,
  scale = 10,
): Promise<{ dir: string; vocab: number }> {
  await Deno.mkdir(dst, { recursive: true });
  const config = JSON.parse(await Deno.readTextFile(`${src}/config.json`));
  const V: number = config.vocab_size;
  if (!(Number.isInteger(extra) && extra > 0 && extra <= V)) {
    throw new Error(`writePaddedVocabModel: extra must be an integer in [1, ${V}], got ${extra}`);
  }
  const f = await openSafetensors(`${src}/model.safetensors`);
  const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
  for (const [name, info] of f.tensors) {
    let data = await f.readF32(name), shape = [...info.shape];
    if (/(^|\.)(embed_tokens|lm_head)\.weight$/.test(name) && shape[0] === V) {
      const H = shape[1], padded = new Float32Array((V + extra) * H);
      padded.set(data);
      for (let i = 0; i < extra * H; i++) padded[V * H + i] = scale * data[i];
      [data, shape] = [padded, [V + extra, H]];
    }
    tensors[name] = { dtype: "F32", shape, data };
  }
  f.close();
  await writeSafetensors(`${dst}/model.safetensors`, tensors);
  await Deno.writeTextFile(`${dst}/config.json`, JSON.stringify({ ...config, vocab_size: V + extra }, null, 2));
  for await (const e of Deno.readDir(src)) {
    if (e.isFile && e.name !== "model.safetensors" && e.name !== "config.json") {
      await Deno.copyFile(`${src}/${e.name}`, `${dst}/${e.name}`);
    }
  }
  return { dir: dst, vocab: V };
}
