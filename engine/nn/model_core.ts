/**
 * What the model's helpers (LoRA, quantization, generation) need of a loaded model, apart from the `Model` class
 * (model.ts) that uses those helpers: they type against {@link ModelCore}, so model.ts imports them and not the
 * other way round.
 * @module
 */
import type { DType, Graph, Tensor } from "../graph/mod.ts";
import type { Executor } from "../exec/executor.ts";
import type { DecoderConfig } from "./config.ts";
import type { DecoderWeights, LinearHook } from "./decoder.ts";

/** Extra parameters and a linear hook a {@link Model} traces with (an adapter such as LoRA); the base stays frozen. */
export interface ModelAdapter {
  /** Adapter parameter name → shape and dtype, stored in the executor under the model's prefix + name. */
  readonly params: ReadonlyMap<string, { shape: number[]; dtype: DType }>;
  /**
   * The hook for one traced graph; `weight` resolves base and adapter parameters alike. `seed` (a u32 scalar
   * input) turns on the adapter's dropout.
   */
  linear(weight: (name: string) => Tensor, opts?: { seed?: Tensor }): LinearHook;
  /** Work on the stored adapter weights before each training step (constrained OFT's projection); usually none. */
  beforeStep?(model: ModelCore): Promise<unknown> | undefined;
}

/** Rounds a length up to the bucket the model compiles for (16s up to 64, then 64s). */
export function bucketLength(n: number): number {
  return n <= 64 ? Math.max(16, Math.ceil(n / 16) * 16) : Math.ceil(n / 64) * 64;
}

/** A loaded decoder as its helpers see it; `Model` (model.ts) implements it. */
export interface ModelCore {
  readonly config: DecoderConfig;
  readonly executor: Executor;
  /** Parameter name → stored dtype on the executor. */
  readonly params: Map<string, { shape: number[]; dtype: DType }>;
  /** Prefix of this model's params in the executor's store. */
  readonly prefix: string;
  /** The attached adapter, if any. */
  readonly adapter: ModelAdapter | undefined;
  /** Attaches an adapter (or detaches it with undefined). */
  setAdapter(adapter: ModelAdapter | undefined): void;
  /** Where a graph traced on `g` gets the parameters (base and adapter) and its linear hook. */
  weights(g: Graph, opts?: { seed?: Tensor }): DecoderWeights;
}
