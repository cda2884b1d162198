/**
 * QLoRA's frozen base: the decoder's linear weights quantized in bitsandbytes' formats (engine/quant) on the
 * executor, and a linear hook that computes those linears with `matmul_q` (dequantized inside the kernels), under
 * whatever adapter the model has — so a LoRA adapter on top trains as in QLoRA.
 *
 * What is quantized: every linear of the decoder layers (q/k/v/o, gate/up/down, fused qkv / gate_up), as
 * transformers' bitsandbytes integration does; embeddings, norms, biases and lm_head stay as loaded.
 *
 * @example
 * ```ts
 * const model = await loadModel("fixtures/models/llama", { quantization: { bits: 4, type: "nf4", doubleQuant: true } });
 * // or, on a model already loaded: await quantizeModel(model, { bits: 4 });
 * await attachAdapter(model, { r: 8 });
 * const { loss, grads } = await model.gradients(ids, { labels }); // LoRA gradients through the quantized base
 * ```
 * @module
 */
import { add, cast, type Graph, type Tensor } from "../graph/mod.ts";
import { dequantQ, matmulQ, type QWeight, qweightParams } from "../graph/ops/matmul_q.ts";
import type { Executor } from "../exec/executor.ts";
import { checkSpec, quantBytes, quantizeWeight, quantLayout, quantParams, type QuantSpec } from "../quant/weight.ts";
import type { DecoderConfig } from "./config.ts";
import { decoderParams, type LinearHook } from "./decoder.ts";
import { linearModules } from "./lora.ts";
import type { ModelCore } from "./model_core.ts";

/** How to quantize a model's base (LLaMA-Factory's quantization_bit / quantization_type / double_quantization). */
export interface QuantizeOptions {
  /** 4: NF4 / FP4 blocks (bitsandbytes' load_in_4bit); 8: int8 absmax blocks. */
  bits: 4 | 8;
  /** The 4-bit data type (bnb_4bit_quant_type); default "nf4". Ignored for 8 bits. */
  type?: "nf4" | "fp4";
  /** Quantize the absmax values too (bnb_4bit_use_double_quant); default true, as LLaMA-Factory. 4-bit only. */
  doubleQuant?: boolean;
  /** Elements a block; default 64 (bitsandbytes' 4-bit default). */
  blocksize?: number;
  /** Linear modules left in full precision, matched like LoRA targets (a name or a path suffix). */
  skip?: readonly string[];
}

/** The quantization spec of options; throws on bits other than 4 and 8. */
export function quantSpecOf(o: QuantizeOptions): QuantSpec {
  if (o.bits !== 4 && o.bits !== 8) throw new Error(`quantization bits must be 4 or 8, got ${o.bits}`);
  const spec: QuantSpec = o.bits === 8
    ? { kind: "int8", blocksize: o.blocksize ?? 64, doubleQuant: false }
    : { kind: o.type ?? "nf4", blocksize: o.blocksize ?? 64, doubleQuant: o.doubleQuant ?? true };
  checkSpec(spec);
  return spec;
}

/** LLaMA-Factory's arguments (quantization_bit, quantization_type, double_quantization, quantization_method). */
export interface QuantizationArgs {
  quantization_bit?: number | null;
  quantization_type?: string;
  double_quantization?: boolean;
  quantization_method?: string;
}

/** The options LLaMA-Factory's quantization arguments ask for, or undefined when quantization_bit is unset. */
export function quantizeOptionsFromArgs(a: QuantizationArgs): QuantizeOptions | undefined {
  if (a.quantization_bit === null || a.quantization_bit === undefined) return undefined;
  if ((a.quantization_method ?? "bnb") !== "bnb") {
    throw new Error(`quantization_method ${JSON.stringify(a.quantization_method)} is not supported; use "bnb"`);
  }
  if (a.quantization_bit !== 4 && a.quantization_bit !== 8) {
    throw new Error(`quantization_bit must be 4 or 8 with bitsandbytes, got ${a.quantization_bit}`);
  }
  const type = a.quantization_type ?? "nf4";
  if (type !== "nf4" && type !== "fp4") {
    throw new Error(`quantization_type must be nf4 or fp4, got ${JSON.stringify(type)}`);
  }
  return { bits: a.quantization_bit, type, doubleQuant: a.double_quantization ?? true };
}

const f32 = (t: Tensor) => (t.dtype === "f32" ? t : cast(t, "f32"));

/** A model's quantized base: which linears are quantized, how, and the hook that computes them. */
export class QuantizedBase {
  /** Module path → W shape [out, in]. */
  readonly modules: Map<string, [number, number]>;
  /** Stored tensor name (without the model prefix) → shape and dtype. */
  readonly params = new Map<string, { shape: number[]; dtype: "i32" | "f32" }>();
  readonly #biases: Set<string>;

  constructor(readonly spec: QuantSpec, readonly decoder: DecoderConfig, skip: readonly string[] = []) {
    const skipped = (m: string) => skip.some((s) => m === s || m.endsWith(`.${s}`));
    this.modules = new Map([...linearModules(decoder)].filter(([m]) => !skipped(m)));
    for (const [m, shape] of this.modules) {
      for (const p of quantLayout(spec, shape)) {
        this.params.set(`${m}.weight${p.suffix}`, { shape: p.shape, dtype: p.dtype });
      }
    }
    this.#biases = new Set([...decoderParams(decoder).keys()].filter((k) => k.endsWith(".bias")));
  }

  /** The module of a weight name this base quantizes (`model.layers.0.mlp.up_proj.weight` → its module), if any. */
  moduleOf(weightName: string): string | undefined {
    if (!weightName.endsWith(".weight")) return undefined;
    const m = weightName.slice(0, -".weight".length);
    return this.modules.has(m) ? m : undefined;
  }

  /** Quantizes one weight (f32 values; bf16/f16 widened) and stores its tensors on `ex` under `prefix`. */
  store(ex: Executor, prefix: string, weightName: string, data: ArrayLike<number>): void {
    const m = this.moduleOf(weightName);
    if (!m) throw new Error(`"${weightName}" is not a weight this quantized base holds`);
    const qw = quantizeWeight(data, this.modules.get(m)!, this.spec);
    for (const p of quantParams(qw)) ex.setParam(`${prefix}${weightName}${p.suffix}`, p.data, p.shape, p.dtype);
  }

  /** The graph handle of a quantized weight (its stored tensors as params of `g`). */
  qweight(g: Graph, prefix: string, module: string): QWeight {
    return qweightParams(g, `${prefix}${module}.weight`, this.spec, this.modules.get(module)!);
  }

  /**
   * The linear hook: quantized modules compute `matmulQ(x, W) (+ bias)`, handed to `inner` (an adapter's hook) as
   * their base; other modules keep the decoder's base. `weight` resolves the other params (biases).
   */
  hook(weight: (name: string) => Tensor, prefix: string, inner?: LinearHook): LinearHook {
    return (x, name, base) => {
      const q = this.modules.has(name)
        ? (xx: Tensor) => {
          const y = matmulQ(xx, this.qweight(xx.graph, prefix, name));
          return this.#biases.has(`${name}.bias`) ? add(y, f32(weight(`${name}.bias`))) : y;
        }
        : base;
      return inner ? inner(x, name, q) : q(x);
    };
  }

  /**
   * The dequantized f32 weight [out, in] as a graph value, for code that asks for the weight itself (DoRA's norm, a
   * graph traced without {@link hook}); it materialises W, so training graphs use the hook.
   */
  dequantized(g: Graph, prefix: string, module: string): Tensor {
    return dequantQ(this.qweight(g, prefix, module));
  }

  /** Bytes of the quantized tensors and of the f32 weights they replace. */
  bytes(): { quantized: number; f32: number } {
    let q = 0, full = 0;
    for (const shape of this.modules.values()) {
      q += quantBytes(this.spec, shape);
      full += 4 * shape[0] * shape[1];
    }
    return { quantized: q, f32: full };
  }
}

/**
 * Removes a param from an executor: the Executor interface has no delete, so the stores of the three executors are
 * reached directly (WebGPU buffers destroyed); another executor gets an empty tensor in its place.
 */
function dropParam(ex: Executor, name: string): void {
  const store = (ex as unknown as { store?: unknown }).store;
  if (store instanceof Map) {
    (store.get(name) as { buffer?: { destroy?: () => void } } | undefined)?.buffer?.destroy?.();
    store.delete(name);
  } else ex.setParam(name, [], [0]);
}

/** A loaded model that can carry a quantized base (`Model` in model.ts). */
export interface QuantizableModel extends ModelCore {
  readonly quantized: QuantizedBase | undefined;
  setQuantized(q: QuantizedBase | undefined): void;
}

/**
 * Quantizes the base linears of a loaded model on its executor: each weight is read, quantized, stored as its packed
 * tensors, and removed (with its entry in `model.params`); the model's linears then run through `matmul_q`. Loading
 * with `loadModel(path, { quantization })` does the same without ever uploading the full-precision weights.
 */
export async function quantizeModel(model: QuantizableModel, opts: QuantizeOptions): Promise<QuantizedBase> {
  if (model.quantized) throw new Error("quantizeModel: the model's base is already quantized");
  const q = new QuantizedBase(quantSpecOf(opts), model.config, opts.skip);
  const ex = model.executor;
  for (const m of q.modules.keys()) {
    const name = `${m}.weight`;
    q.store(ex, model.prefix, name, await ex.getParam(model.prefix + name));
    dropParam(ex, model.prefix + name);
    model.params.delete(name);
  }
  model.setQuantized(q);
  return q;
}
