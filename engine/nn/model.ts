/**
 * `loadModel`: a Hugging Face model folder (or hub id) built on the engine, with a `forward` that
 * computes what transformers computes — logits, and the causal-LM loss when labels are given.
 *
 * @example
 * ```ts
 * const model = await loadModel("fixtures/models/llama");
 * const { logits, shape, loss } = await model.forward([[1, 2, 3]], { labels: [[-100, 2, 3]] });
 * ```
 * @module
 */
import { applyLfRopeScaling, type LfRopeScaling } from "./rope_lf.ts";
import { backward, crossEntropy, type DType, Graph, linearCrossEntropy, reshape, type Tensor } from "../graph/mod.ts";
import type { CompiledGraph, Executor, HostArray } from "../exec/executor.ts";
import { createExecutor, type ExecutorKind } from "../exec/pick.ts";
import { type ByteDType, bytesToF32, setParamFromBytes } from "../exec/param_bytes.ts";
import { openModelFolder } from "../io/hf_folder.ts";
import { resolveModel, type ResolveOptions } from "../io/hub.ts";
import { type DecoderConfig, decoderConfig } from "./config.ts";
import { decoderParams, type DecoderWeights, traceDecoder } from "./decoder.ts";
import { attachAdapterFolder } from "./adapters.ts";
import { withRouterLoss } from "./moe.ts";
import { isBuffer } from "./moe_router.ts";
import { QuantizedBase, type QuantizeOptions, quantSpecOf } from "./quantize.ts";
import { readMxfp4 } from "./mxfp4.ts";
import { checkNotPrequantized } from "./prequantized.ts";
import { generate, generateBatch, type GenerateOptions, generateStream } from "./generate.ts";
import { bucketLength, type ModelAdapter, type ModelCore } from "./model_core.ts";

export { bucketLength, type ModelAdapter, type ModelCore } from "./model_core.ts";

/** Options of {@link loadModel}. */
export interface LoadModelOptions {
  /**
   * "auto" (default: WebGPU on a hardware adapter, else ONNX Runtime; see engine/exec/pick.ts), "webgpu",
   * "onnx", "reference", or an executor to share.
   */
  executor?: ExecutorKind | Executor;
  /** "stored" keeps bf16/f16 weights as stored (default); "f32" upcasts them (for training or gradients). */
  dtype?: "stored" | "f32";
  /** Hub revision when `pathOrId` is a hub id (overrides `hub.revision`). */
  revision?: string;
  /** Hub download options when `pathOrId` is a hub id (revision, cache folder, token). */
  hub?: ResolveOptions;
  /** A PEFT adapter folder to attach: LoRA (`attachAdapter` in lora.ts) or OFT (oft.ts), by its peft_type. */
  adapter?: string;
  /** Quantize the base linears as they load (QLoRA; see quantize.ts): their f32 weights never reach the executor. */
  quantization?: QuantizeOptions;
  /** LLaMA-Factory's `rope_scaling` argument, applied to config.json as LF applies it (see rope_lf.ts). */
  ropeScaling?: { type: LfRopeScaling; modelMaxLength?: number; log?: (line: string) => void };
}

/** What {@link Model.forward} takes besides the ids. */
export interface ForwardOptions {
  /** Same shape as the ids; -100 where no loss is taken. Shifted inside, as transformers does. */
  labels?: number[][];
  /** 1 for real tokens, 0 for padding (right padding). */
  attentionMask?: number[][];
}

/** What {@link Model.forward} returns. */
export interface ForwardResult {
  logits: Float32Array;
  shape: [number, number, number];
  loss?: number;
}

const STORED: Record<string, ByteDType> = { F32: "f32", BF16: "bf16", F16: "f16" };

/** A loaded decoder on an executor. */
export class Model implements ModelCore {
  readonly #graphs = new Map<string, Promise<{ compiled: CompiledGraph; names: string[] }>>();
  #adapter?: ModelAdapter;
  #quantized?: QuantizedBase;
  /** The folder's generation_config.json, when it has one. */
  generationConfig?: Record<string, unknown>;

  constructor(
    readonly config: DecoderConfig,
    readonly executor: Executor,
    /** Parameter name → stored dtype on the executor. */
    readonly params: Map<string, { shape: number[]; dtype: DType }>,
    /** Prefix of this model's params in the executor's store. */
    readonly prefix = "",
  ) {}

  /** The attached adapter, if any. */
  get adapter(): ModelAdapter | undefined {
    return this.#adapter;
  }

  /** Attaches an adapter (or detaches it with undefined); compiled graphs are rebuilt on next use. */
  setAdapter(adapter: ModelAdapter | undefined): void {
    this.#adapter = adapter;
    this.#graphs.clear();
  }

  /** The quantized base (QLoRA), if the base linears are quantized. */
  get quantized(): QuantizedBase | undefined {
    return this.#quantized;
  }

  /** Marks the base linears as quantized (see quantize.ts); compiled graphs are rebuilt on next use. */
  setQuantized(q: QuantizedBase | undefined): void {
    this.#quantized = q;
    this.#graphs.clear();
  }

  /** Where a graph traced on `g` gets this model's parameters (base and adapter) and its linear hook. */
  weights(g: Graph, opts: { seed?: Tensor } = {}): DecoderWeights {
    const q = this.#quantized;
    const weight = (name: string): Tensor => {
      const p = this.params.get(name) ?? this.#adapter?.params.get(name);
      if (!p) {
        const m = q?.moduleOf(name);
        if (m) return q!.dequantized(g, this.prefix, m); // a quantized weight asked for itself (e.g. DoRA's norm)
        throw new Error(`model has no parameter "${name}"`);
      }
      return g.param(this.prefix + name, p.shape, p.dtype);
    };
    const adapter = this.#adapter?.linear(weight, opts);
    const expertDelta = this.#adapter?.expertDelta?.(weight);
    return {
      weight,
      linear: q ? q.hook(weight, this.prefix, adapter) : adapter,
      ...(expertDelta ? { expertDelta } : {}),
    };
  }

  #feeds(inputIds: number[][], opts: ForwardOptions, Lb: number) {
    const B = inputIds.length;
    const ids = new Int32Array(B * Lb), pos = new Int32Array(B * Lb), seg = new Int32Array(B * Lb);
    const labels = new Int32Array(B * Lb).fill(-100);
    inputIds.forEach((row, b) => {
      for (let i = 0; i < Lb; i++) {
        ids[b * Lb + i] = i < row.length ? row[i] : 0;
        pos[b * Lb + i] = i;
        seg[b * Lb + i] = i < row.length ? (opts.attentionMask?.[b]?.[i] ?? 1) : 0;
        // transformers shifts: the logits at i predict labels[i + 1].
        const next = opts.labels?.[b]?.[i + 1];
        if (next !== undefined && i + 1 < row.length) labels[b * Lb + i] = next;
      }
    });
    return { ids, positions: pos, segments: seg, labels };
  }

  #check(inputIds: number[][], opts: ForwardOptions) {
    if (!inputIds.length) throw new Error("forward: inputIds is empty");
    inputIds.forEach((row, b) => {
      if (!row.length) throw new Error(`forward: inputIds[${b}] is empty`);
      row.forEach((t, i) => {
        if (!Number.isInteger(t) || t < 0 || t >= this.config.vocab) {
          throw new Error(`forward: inputIds[${b}][${i}] = ${t} is not a token id in [0, ${this.config.vocab})`);
        }
      });
      for (const [key, m] of [["labels", opts.labels], ["attentionMask", opts.attentionMask]] as const) {
        if (m && m[b]?.length !== row.length) {
          throw new Error(`forward: ${key}[${b}] has ${m[b]?.length ?? 0} entries, inputIds[${b}] has ${row.length}`);
        }
      }
    });
  }

  /**
   * Compiles the graph `build` traces for B rows of Lb tokens, once per key; with its sizes and the way to trace it
   * at others, so ONNX Runtime serves every batch and length with one session (exec/onnx/symbolic.ts).
   */
  #compile(key: string, B: number, Lb: number, build: (g: Graph, B: number, Lb: number) => string[]) {
    let p = this.#graphs.get(key);
    if (!p) {
      p = (async () => {
        const g = new Graph();
        const names = build(g, B, Lb);
        const trace = (s: Record<string, number>) => {
          const t = new Graph();
          build(t, s.B, s.L);
          return t;
        };
        return { compiled: await this.executor.compile(g, { symbolic: { sizes: { B, L: Lb }, trace } }), names };
      })();
      this.#graphs.set(key, p);
    }
    return p;
  }

  #inputs(g: Graph, B: number, Lb: number) {
    return {
      ids: g.input("ids", [B, Lb], "i32"),
      positions: g.input("positions", [B, Lb], "i32"),
      segments: g.input("segments", [B, Lb], "i32"),
    };
  }

  /** The mean cross-entropy: fused with the LM head (no [N, V] logits) unless the family soft-caps logits. */
  #loss(out: ReturnType<typeof traceDecoder>, labels: Tensor, n: number, segments: Tensor): Tensor {
    const ce = this.config.finalSoftcap
      ? crossEntropy(reshape(out.logits, [n, this.config.vocab]), labels)
      : linearCrossEntropy(reshape(out.hidden, [n, this.config.hidden]), out.head, labels);
    return withRouterLoss(this.config.moe, out.routes, ce, segments); // MoE: + coef · load balancing, when on
  }

  /** The mean shifted cross-entropy only (no logits are read back or kept). */
  async loss(inputIds: number[][], opts: ForwardOptions & { labels: number[][] }): Promise<number> {
    this.#check(inputIds, opts);
    const B = inputIds.length, L = Math.max(...inputIds.map((r) => r.length)), Lb = bucketLength(L);
    const { compiled } = await this.#compile(`loss:${B}:${Lb}`, B, Lb, (g, B, Lb) => {
      const labels = g.input("labels", [B * Lb], "i32");
      const inp = this.#inputs(g, B, Lb);
      g.output("loss", this.#loss(traceDecoder(this.config, inp, this.weights(g)), labels, B * Lb, inp.segments));
      return [];
    });
    const out = await compiled.run(this.#feeds(inputIds, opts, Lb) as Record<string, ArrayLike<number>>, ["loss"]);
    return out.loss[0];
  }

  /** Logits [B, L, V] (and the mean shifted cross-entropy when labels are given). */
  async forward(inputIds: number[][], opts: ForwardOptions = {}): Promise<ForwardResult> {
    this.#check(inputIds, opts);
    const B = inputIds.length, L = Math.max(...inputIds.map((r) => r.length)), Lb = bucketLength(L);
    const V = this.config.vocab;
    const withLoss = !!opts.labels;
    const { compiled } = await this.#compile(`fwd:${B}:${Lb}:${withLoss}`, B, Lb, (g, B, Lb) => {
      const inp = this.#inputs(g, B, Lb);
      const { logits, routes } = traceDecoder(this.config, inp, this.weights(g));
      g.output("logits", logits);
      if (withLoss) {
        const labels = g.input("labels", [B * Lb], "i32");
        const ce = crossEntropy(reshape(logits, [B * Lb, V]), labels);
        g.output("loss", withRouterLoss(this.config.moe, routes, ce, inp.segments));
      }
      return [];
    });
    const feeds = this.#feeds(inputIds, opts, Lb);
    const out = await compiled.run(
      feeds as Record<string, ArrayLike<number>>,
      withLoss ? ["logits", "loss"] : ["logits"],
    );
    const logits = new Float32Array(B * L * V);
    for (let b = 0; b < B; b++) logits.set(out.logits.subarray(b * Lb * V, (b * Lb + L) * V), b * L * V);
    return { logits, shape: [B, L, V], loss: withLoss ? out.loss[0] : undefined };
  }

  /**
   * The loss (as {@link forward}) and its gradient w.r.t. each named parameter (when omitted: the adapter's
   * params if one is attached, else all f32 params but buffers). Base gradients need f32 parameters: load with
   * `dtype: "f32"`.
   */
  async gradients(
    inputIds: number[][],
    opts: ForwardOptions & { labels: number[][] },
    wrt?: string[],
  ): Promise<{ loss: number; grads: Map<string, HostArray> }> {
    this.#check(inputIds, opts);
    const B = inputIds.length, L = Math.max(...inputIds.map((r) => r.length)), Lb = bucketLength(L);
    const names = wrt ??
      (this.#adapter
        ? [...this.#adapter.params.keys()]
        : [...this.params.keys()].filter((n) => this.params.get(n)!.dtype === "f32" && !isBuffer(n)));
    const { compiled } = await this.#compile(`grad:${B}:${Lb}:${names.join(",")}`, B, Lb, (g, B, Lb) => {
      const inp = this.#inputs(g, B, Lb);
      const w = this.weights(g);
      const labels = g.input("labels", [B * Lb], "i32");
      const loss = this.#loss(traceDecoder(this.config, inp, w), labels, B * Lb, inp.segments);
      g.output("loss", loss);
      const ps: Tensor[] = names.map((n) => w.weight(n));
      backward(loss, ps).forEach((gr, i) => g.output(`grad:${names[i]}`, gr));
      return names;
    });
    const out = await compiled.run(this.#feeds(inputIds, opts, Lb) as Record<string, ArrayLike<number>>);
    const grads = new Map<string, HostArray>();
    for (const n of names) grads.set(n, out[`grad:${n}`]);
    return { loss: out.loss[0], grads };
  }

  /**
   * The ids generation stops at: `extra` (e.g. a template's eos and stop words) and generation_config.json's
   * `eos_token_id` (one id or a list), as transformers' `generate` merges them.
   */
  stopIds(extra: readonly number[] = []): number[] {
    const eos = this.generationConfig?.eos_token_id;
    const ids = new Set(extra);
    for (const id of Array.isArray(eos) ? eos : eos === undefined || eos === null ? [] : [eos]) {
      if (Number.isInteger(id) && id >= 0 && id < this.config.vocab) ids.add(id as number);
    }
    return [...ids].sort((a, b) => a - b);
  }

  /** New token ids after `inputIds` (KV-cached; see {@link generate}). */
  generate(inputIds: number[], opts: GenerateOptions): Promise<number[]> {
    return generate(this, inputIds, opts);
  }

  /**
   * New token ids after each of `prompts`, all decoded at once (KV-cached; see {@link generateBatch}).
   *
   * @example
   * ```ts
   * const model = await loadModel("fixtures/models/llama");
   * const [a, b] = await model.generateBatch([[1, 5, 9], [1, 7]], { maxNewTokens: 8, stop: [2] });
   * ```
   */
  generateBatch(prompts: number[][], opts: GenerateOptions): Promise<number[][]> {
    return generateBatch(this, prompts, opts);
  }

  /**
   * New token ids after `inputIds`, yielded as they are chosen (see {@link generateStream}).
   *
   * @example
   * ```ts
   * const model = await loadModel("fixtures/models/llama");
   * for await (const id of model.generateStream([1, 5, 9], { maxNewTokens: 10 })) console.log(id);
   * ```
   */
  generateStream(inputIds: number[], opts: GenerateOptions): AsyncGenerator<number> {
    return generateStream(this, inputIds, opts);
  }
}

/** Loads a model folder (or a hub id, downloaded into the cache) onto an executor. */
export async function loadModel(pathOrId: string, opts: LoadModelOptions = {}): Promise<Model> {
  const dir = await resolveModel(pathOrId, { ...opts.hub, revision: opts.revision ?? opts.hub?.revision });
  const folder = await openModelFolder(dir);
  try {
    checkNotPrequantized(dir, folder.config);
    let raw = folder.config;
    if (opts.ropeScaling) {
      const r = applyLfRopeScaling(raw, opts.ropeScaling.type, opts.ropeScaling.modelMaxLength);
      opts.ropeScaling.log?.(r.message);
      raw = r.config;
    }
    const config = decoderConfig(raw);
    const executor = typeof opts.executor === "object" ? opts.executor : await createExecutor(opts.executor ?? "auto");
    const params = new Map<string, { shape: number[]; dtype: DType }>();
    const quant = opts.quantization &&
      new QuantizedBase(quantSpecOf(opts.quantization), config, opts.quantization.skip);
    for (const [name, shape] of decoderParams(config)) {
      const t = folder.tensors.get(name);
      // gpt-oss releases: MXFP4 experts (<name>_blocks, <name>_scales), dequantized to bf16 as transformers does.
      const mx = !t && config.family === "gpt_oss" ? await readMxfp4(folder, name, shape) : undefined;
      if (mx) {
        setParamFromBytes(executor, name, mx, shape, "bf16", opts.dtype === "f32" ? "f32" : "bf16");
        params.set(name, { shape, dtype: opts.dtype === "f32" ? "f32" : "bf16" });
        continue;
      }
      if (!t) throw new Error(`${dir}: the weights have no tensor "${name}" that ${config.family} needs`);
      if (t.shape.join() !== shape.join()) {
        throw new Error(
          `${dir}: tensor "${name}" is [${t.shape.join(", ")}], config.json implies [${shape.join(", ")}]`,
        );
      }
      const stored = STORED[t.dtype];
      if (!stored) throw new Error(`${dir}: tensor "${name}" has dtype ${t.dtype}; expected F32, BF16 or F16`);
      const dtype = opts.dtype === "f32" ? "f32" : stored;
      if (quant?.moduleOf(name)) {
        quant.store(executor, "", name, bytesToF32(await folder.read(name), stored));
        continue;
      }
      // One tensor's bytes at a time, handed to the executor and dropped: the checkpoint is never held twice.
      setParamFromBytes(executor, name, await folder.read(name), shape, stored, dtype);
      params.set(name, { shape, dtype });
    }
    const model = new Model(config, executor, params);
    if (quant) model.setQuantized(quant);
    model.generationConfig = folder.generationConfig;
    if (opts.adapter) await attachAdapterFolder(model, opts.adapter, { baseModel: pathOrId });
    return model;
  } finally {
    folder.close();
  }
}
