/**
 * Runs a decoder exported by {@link exportOnnx} with onnxruntime-node alone (no engine graphs): prefill,
 * then one decode-step run per token, with the KV cache passed in and taken back each run. Sampling is the
 * engine's ({@link chooseToken}), so the same options give the same tokens as `model.generate`.
 *
 * @example
 * ```ts
 * const dec = await OnnxDecoder.load("out/llama-onnx");
 * const ids = await dec.generate([1, 5, 9], { maxNewTokens: 10, stop: [2] });
 * ```
 * @module
 */
import { loadOrt, type Ort } from "../../deps.ts";
import { chooseToken, type GenerateOptions, seededRandom } from "./generate.ts";
import { decodeMask } from "./kv_decoder.ts";
import type { OnnxDecoderConfig } from "./onnx_export.ts";

type Cache = Map<string, Ort.Tensor>;

/** An exported decoder loaded into two onnxruntime sessions. */
export class OnnxDecoder {
  private constructor(
    private readonly ort: Awaited<ReturnType<typeof loadOrt>>,
    readonly config: OnnxDecoderConfig,
    private readonly prefill: Ort.InferenceSession,
    private readonly decode: Ort.InferenceSession,
  ) {}

  /** Loads `dir` (onnx_config.json, prefill.onnx, decode.onnx, weights.onnx_data). */
  static async load(dir: string, opts: { threads?: number } = {}): Promise<OnnxDecoder> {
    const config: OnnxDecoderConfig = JSON.parse(await Deno.readTextFile(`${dir}/onnx_config.json`));
    if (config.format !== "whetstone-onnx-decoder" || config.version !== 1) {
      throw new Error(`${dir}/onnx_config.json: not a Whetstone ONNX decoder export (format ${config.format})`);
    }
    const ort = await loadOrt();
    const so = { executionProviders: ["cpu"], ...(opts.threads ? { intraOpNumThreads: opts.threads } : {}) };
    const prefill = await ort.InferenceSession.create(`${dir}/${config.prefill.file}`, so);
    const decode = await ort.InferenceSession.create(`${dir}/${config.decode.file}`, so);
    return new OnnxDecoder(ort, config, prefill, decode);
  }

  /** Logits [B, V] of each prompt's last token after prefill, and the cache it leaves. */
  async prefillRun(prompts: number[][]): Promise<{ logits: Float32Array; cache: Cache }> {
    const { batch: B, prefillLength: P } = this.config;
    if (!prompts.length || prompts.length > B) {
      throw new Error(`this export takes 1 to ${B} prompts at once, got ${prompts.length}`);
    }
    const ids = new Int32Array(B * P), positions = new Int32Array(B * P), segments = new Int32Array(B * P);
    const last = new Int32Array(B);
    for (let b = 0; b < B; b++) {
      const p = prompts[b] ?? [];
      if (p.length > P) throw new Error(`prompts[${b}] has ${p.length} tokens; this export's prefill takes ${P}`);
      for (let i = 0; i < P; i++) {
        ids[b * P + i] = p[i] ?? 0;
        positions[b * P + i] = i;
        segments[b * P + i] = i < p.length ? 1 : 0;
      }
      last[b] = b * P + Math.max(p.length, 1) - 1;
    }
    const t = (a: Int32Array, dims: number[]) => new this.ort.Tensor("int32", a, dims);
    const feeds: Record<string, Ort.Tensor> = {
      ids: t(ids, [B, P]),
      positions: t(positions, [B, P]),
      segments: t(segments, [B, P]),
      last: t(last, [B]),
    };
    const zeros = this.emptyCache();
    for (const [k, v] of zeros) feeds[`past_key_values.${k}`] = v;
    const res = await this.prefill.run(feeds);
    return { logits: res.logits.data as Float32Array, cache: this.takeCache(res) };
  }

  /** One decode step: tokens [B] at positions [B] → logits [B, V] and the updated cache. */
  async decodeRun(
    tokens: number[],
    positions: number[],
    cache: Cache,
  ): Promise<{ logits: Float32Array; cache: Cache }> {
    const { batch: B, cacheLength: C, windows } = this.config;
    const feeds: Record<string, Ort.Tensor> = {
      ids: new this.ort.Tensor("int32", Int32Array.from({ length: B }, (_, b) => tokens[b] ?? 0), [B, 1]),
      positions: new this.ort.Tensor("int32", Int32Array.from({ length: B }, (_, b) => positions[b] ?? 0), [B, 1]),
    };
    for (const w of windows) {
      const m = new Float32Array(B * (C + 1));
      for (let b = 0; b < B; b++) m.set(decodeMask(C, positions[b] ?? 0, w), b * (C + 1));
      feeds[`mask${w}`] = new this.ort.Tensor("float32", m, [B, 1, 1, C + 1]);
    }
    for (const [k, v] of cache) feeds[`past_key_values.${k}`] = v;
    const res = await this.decode.run(feeds);
    return { logits: res.logits.data as Float32Array, cache: this.takeCache(res) };
  }

  /** Greedy or sampled generation after one prompt (see {@link GenerateOptions}); resolves to the new ids. */
  async generate(inputIds: number[], opts: GenerateOptions): Promise<number[]> {
    const { cacheLength: C, vocab: V } = this.config;
    if (!inputIds.length) throw new Error("generate: inputIds is empty");
    if (inputIds.length + opts.maxNewTokens > C) {
      throw new Error(`generate: ${inputIds.length} prompt + ${opts.maxNewTokens} new tokens exceed the cache (${C})`);
    }
    const out: number[] = [], seen = [...inputIds];
    if (!opts.maxNewTokens) return out;
    const random = seededRandom(opts.seed ?? 0), stop = new Set(opts.stop ?? []);
    let { logits, cache } = await this.prefillRun([inputIds]);
    for (;;) {
      const row = logits.subarray(0, V);
      opts.onLogits?.(row, 0);
      const t = chooseToken(row, seen, opts, random);
      out.push(t);
      seen.push(t);
      opts.onToken?.(t, 0);
      if (stop.has(t) || out.length >= opts.maxNewTokens) return out;
      ({ logits, cache } = await this.decodeRun([t], [inputIds.length + out.length - 1], cache));
    }
  }

  private emptyCache(): Cache {
    const { layers, cacheShape } = this.config;
    const n = cacheShape.reduce((a, b) => a * b, 1);
    const m: Cache = new Map();
    for (let i = 0; i < layers; i++) {
      for (const kind of ["key", "value"]) {
        m.set(`${i}.${kind}`, new this.ort.Tensor("float32", new Float32Array(n), cacheShape));
      }
    }
    return m;
  }

  private takeCache(res: Record<string, Ort.Tensor>): Cache {
    const m: Cache = new Map();
    for (const [name, t] of Object.entries(res)) if (name.startsWith("present.")) m.set(name.slice(8), t);
    return m;
  }
}
