/**
 * Runs an export of {@link exportOnnx} (`<dir>/onnx/model.onnx` beside `<dir>/config.json`) with onnxruntime-node
 * alone, as any Optimum-layout consumer does: a batch of prompts left-padded, `attention_mask` 0 on the padding,
 * `position_ids` counting real tokens only (padding at 1, as transformers fills it), an empty past on the first run
 * and the `present.*` outputs fed back as the past after it. Sampling is the engine's ({@link chooseToken}).
 *
 * @example
 * ```ts
 * const dec = await OnnxDecoder.load("out/merged"); // holds config.json and onnx/model.onnx
 * const [ids] = await dec.generate([[1, 5, 9]], { maxNewTokens: 10, stop: [2] });
 * ```
 * @module
 */
import { loadOrt, type Ort } from "../../deps.ts";
import { decoderConfig } from "./config.ts";
import { chooseToken, type GenerateOptions, longropeReprefill, seededRandom } from "./generate.ts";

/** The past key/values of a batch: `past_key_values.N.key|value` → tensor. */
export type OnnxCache = Record<string, Ort.Tensor>;

/** An Optimum-layout decoder export loaded into one onnxruntime session. */
export class OnnxDecoder {
  private constructor(
    private readonly ort: Awaited<ReturnType<typeof loadOrt>>,
    private readonly session: Ort.InferenceSession,
    readonly layers: number,
    readonly kvHeads: number,
    readonly headDim: number,
    readonly vocab: number,
    /** Phi-3 longrope: the length at which generation runs the whole sequences again ({@link longropeReprefill}). */
    readonly reprefillAt = -1,
  ) {}

  /** Loads `dir/onnx/model.onnx` with the sizes of `dir/config.json`. */
  static async load(dir: string, opts: { threads?: number } = {}): Promise<OnnxDecoder> {
    const c = decoderConfig(JSON.parse(await Deno.readTextFile(`${dir}/config.json`)));
    const ort = await loadOrt();
    const so = { executionProviders: ["cpu"], ...(opts.threads ? { intraOpNumThreads: opts.threads } : {}) };
    const session = await ort.InferenceSession.create(`${dir}/onnx/model.onnx`, so);
    return new OnnxDecoder(ort, session, c.layers, c.kvHeads, c.headDim, c.vocab, longropeReprefill(c));
  }

  private i64(values: number[], dims: number[]): Ort.Tensor {
    return new this.ort.Tensor("int64", BigInt64Array.from(values, (v) => BigInt(v)), dims);
  }

  /**
   * One run: `ids` [B][S] new tokens (equal lengths), `mask` [B][past + S] (1 real, 0 padding), `positions`
   * [B][S], and the past (none: empty). Returns logits [B, S, V] and the present as the next past.
   */
  async step(
    ids: number[][],
    mask: number[][],
    positions: number[][],
    past?: OnnxCache,
  ): Promise<{ logits: Float32Array; cache: OnnxCache }> {
    const B = ids.length, S = ids[0].length;
    const feeds: Record<string, Ort.Tensor> = {
      input_ids: this.i64(ids.flat(), [B, S]),
      attention_mask: this.i64(mask.flat(), [B, mask[0].length]),
      position_ids: this.i64(positions.flat(), [B, S]),
    };
    for (let i = 0; i < this.layers; i++) {
      for (const kind of ["key", "value"]) {
        const name = `past_key_values.${i}.${kind}`;
        feeds[name] = past?.[name] ??
          new this.ort.Tensor("float32", new Float32Array(0), [B, this.kvHeads, 0, this.headDim]);
      }
    }
    const res = await this.session.run(feeds);
    const cache: OnnxCache = {};
    for (const [name, t] of Object.entries(res)) {
      if (name.startsWith("present.")) cache[`past_key_values.${name.slice(8)}`] = t;
    }
    return { logits: res.logits.data as Float32Array, cache };
  }

  /** Prompts left-padded to one length: ids (pad 0), mask and positions as transformers builds them. */
  static leftPad(prompts: number[][]): { ids: number[][]; mask: number[][]; positions: number[][] } {
    const L = Math.max(...prompts.map((p) => p.length));
    const pad = (p: number[]) => L - p.length;
    return {
      ids: prompts.map((p) => [...new Array(pad(p)).fill(0), ...p]),
      mask: prompts.map((p) => [...new Array(pad(p)).fill(0), ...new Array(p.length).fill(1)]),
      positions: prompts.map((p) => [...new Array(pad(p)).fill(1), ...p.map((_, i) => i)]),
    };
  }

  /** Generation after a batch of prompts (greedy or sampled, see {@link GenerateOptions}); the new ids per prompt. */
  async generate(prompts: number[][], opts: GenerateOptions): Promise<number[][]> {
    if (!prompts.length || prompts.some((p) => !p.length)) throw new Error("generate: every prompt needs tokens");
    const V = this.vocab, B = prompts.length, stop = new Set(opts.stop ?? []);
    const random = seededRandom(opts.seed ?? 0);
    const out: number[][] = prompts.map(() => []), seen = prompts.map((p) => [...p]), fed = prompts.map((p) => [...p]);
    const done = prompts.map(() => !opts.maxNewTokens);
    const first = OnnxDecoder.leftPad(prompts);
    const mask = first.mask;
    let next = await this.step(first.ids, mask, first.positions);
    let S = first.ids[0].length, pos = prompts.map((p) => p.length);
    while (!done.every(Boolean)) {
      const tokens: number[] = [];
      for (let b = 0; b < B; b++) {
        const row = next.logits.subarray(((b + 1) * S - 1) * V, (b + 1) * S * V);
        if (done[b]) {
          tokens.push(0);
          continue;
        }
        opts.onLogits?.(row, b);
        const t = chooseToken(row, seen[b], opts, random);
        out[b].push(t);
        seen[b].push(t);
        opts.onToken?.(t, b);
        if (stop.has(t) || out[b].length >= opts.maxNewTokens) done[b] = true;
        tokens.push(t);
      }
      if (done.every(Boolean)) break;
      tokens.forEach((t, b) => fed[b].push(t));
      if (mask[0].length === this.reprefillAt) {
        // Phi-3 longrope: the batch reaches original_max_position_embeddings + 1 tokens with at most that many cached;
        // transformers drops the cache there, and every key is computed again with the long factors.
        const all = OnnxDecoder.leftPad(fed);
        next = await this.step(all.ids, all.mask, all.positions);
        mask.splice(0, mask.length, ...all.mask);
        S = all.ids[0].length;
        pos = pos.map((p) => p + 1);
        continue;
      }
      mask.forEach((m) => m.push(1));
      next = await this.step(tokens.map((t) => [t]), mask, pos.map((p) => [p]), next.cache);
      pos = pos.map((p) => p + 1);
      S = 1;
    }
    return out;
  }
}
