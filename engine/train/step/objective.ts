/**
 * What a training objective gives the step builder (builder.ts): the graph tensors of the parameters it trains,
 * and, once its step-wide inputs are declared, the loss of each micro-batch. An objective is a stage's loss
 * (lm.ts: pt / sft; pref.ts: rm, dpo, kto; ppo.ts: PPO's policy and value losses); the optimizer (optimizer.ts) and
 * the precision (precision.ts) are chosen independently of it.
 * @module
 */
import type { Graph, Tensor } from "../../graph/mod.ts";

/** One micro-batch's share of the step. */
export interface MicroResult {
  /**
   * The micro-batch's loss already normalised for the whole step (e.g. its token sum × 1 / the step's targets, or its
   * mean × 1 / micro-batches), so that the step's loss is the sum over its micro-batches.
   */
  loss: Tensor;
  /** Metric scalars of the micro-batch (summed over the step, output as `metrics` [M]); see {@link Objective.metrics}. */
  metrics?: Tensor[];
  /** A row of statistics of this micro-batch (output per micro-batch as `stats` [G, S]); see {@link Objective.stats}. */
  stats?: Tensor;
}

/** A training objective (see the module doc). */
export interface Objective {
  /** Distinguishes compiled graphs (e.g. "lm", "pref:dpo", "ppo"). */
  readonly key: string;
  /** Names of the metric vector (`metrics` / `metric_sums` outputs); none: the objective has no metrics. */
  readonly metrics?: readonly string[];
  /** Width S of the per-micro-batch statistics row (`stats` output [G, S]); none: no statistics. */
  readonly stats?: number;
  /** Whether the objective can compute its linears in f16 (fp16 mixed precision). */
  readonly f16?: boolean;
  /** The graph tensors of the trainable parameters `names` (decoder, adapter or value head). */
  params(g: Graph, names: readonly string[]): Tensor[];
  /** Declares the step-wide inputs on `g` (e.g. `inv_targets`, `seed`) and returns the tracer of micro-batch k. */
  begin(g: Graph): (k: number) => MicroResult;
}
