/**
 * The one step builder: a training step is an objective (objective.ts: what loss) × an optimizer (optimizer.ts,
 * galore.ts: what update) × a precision (precision.ts: f32, or fp16 with loss scaling), composed here into one
 * traced graph — G micro-batches traced one after another (each one's activations die before the next one's
 * forward; only the summed gradients live across them), the backward of each, the step's loss and metrics, the
 * global-norm clipping and the update of every trainable parameter — replayed with one submit per optimizer step.
 *
 * Inputs: the objective's (per micro-batch k and step-wide), `lr` and `step` (1-based, the optimizer's count).
 * Outputs: `loss` (the step's, the sum of its normalised micro-batch losses), `loss_sum` (running sum of step losses
 * in {@link LOSS_SUM}, so no step reads anything back), `grad_norm`, and when the objective has them `metrics` [M] and
 * `metric_sums` [M] (running, in {@link METRIC_SUMS}) and `stats` [G, S]; fp16 adds `loss_scale`.
 *
 * @example
 * ```ts
 * const g = buildStep({
 *   G: 2,
 *   names: ["model.layers.0.self_attn.q_proj.lora_A.weight"],
 *   objective: lmObjective(model, { B: 4, L: 64 }),
 *   optimizer: adamwOptimizer(model.prefix, { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 }),
 *   precision: f32Precision,
 *   maxGradNorm: 1,
 * });
 * ```
 * @module
 */
import { add, assign, backward, concat, Graph, mul, reshape, type Tensor } from "../../graph/mod.ts";
import type { Objective } from "./objective.ts";
import type { Optimizer } from "./optimizer.ts";
import { f32Precision, type Precision } from "./precision.ts";

/** Running loss sum between logging steps (a param of the store). */
export const LOSS_SUM = "train.loss_sum";
/** Running sums of the objective's metric vector between logging steps (a param of the store). */
export const METRIC_SUMS = "train.pref_metric_sums";

/** What one optimizer step is made of. */
export interface StepSpec {
  /** Micro-batches per optimizer step (gradient_accumulation_steps). */
  G: number;
  /** Names of the parameters that train (without the model prefix). */
  names: readonly string[];
  objective: Objective;
  optimizer: Optimizer;
  /** Default f32. */
  precision?: Precision;
  /** 0: no clipping. */
  maxGradNorm: number;
}

/** The step's loss, its gradients, and the objective's metric and statistics outputs, over G micro-batches. */
export function accumulate(
  g: Graph,
  objective: Objective,
  params: readonly Tensor[],
  G: number,
  lossScale?: Tensor,
): { loss: Tensor; grads: Tensor[]; metrics?: Tensor; stats?: Tensor } {
  const micro = objective.begin(g);
  let loss: Tensor | undefined, grads: Tensor[] | undefined, metrics: Tensor | undefined;
  const stats: Tensor[] = [];
  for (let k = 0; k < G; k++) {
    const mo = micro(k);
    const gk = backward(lossScale ? mul(mo.loss, reshape(lossScale, [])) : mo.loss, [...params]);
    loss = loss ? add(loss, mo.loss) : mo.loss;
    grads = grads ? grads.map((x, i) => add(x, gk[i])) : gk;
    if (mo.metrics) {
      const mk = concat(mo.metrics.map((x) => reshape(x, [1])), 0);
      metrics = metrics ? add(metrics, mk) : mk;
    }
    if (mo.stats) stats.push(reshape(mo.stats, [1, mo.stats.shape.at(-1)!]));
  }
  return {
    loss: loss!,
    grads: grads!,
    metrics,
    stats: stats.length ? (stats.length === 1 ? stats[0] : concat(stats, 0)) : undefined,
  };
}

/** Outputs `name` (this step's value) and `name_sum` style running sum kept in the store param `param`. */
function running(g: Graph, value: Tensor, param: string, out: string): void {
  const acc = g.param(param, value.shape);
  const next = add(acc, value);
  g.output(out, next);
  assign(acc, next);
}

/** Traces one whole optimizer step (see the module doc). */
export function buildStep(s: StepSpec): Graph {
  const precision = s.precision ?? f32Precision;
  if (precision.f16 && !s.optimizer.gated) {
    throw new Error(`${precision.key}: the ${s.optimizer.key} optimizer has no gated update to skip overflowed steps`);
  }
  const g = new Graph();
  const lr = g.input("lr", []), step = g.input("step", []);
  const params = s.objective.params(g, s.names);
  const { loss, grads, metrics, stats } = accumulate(g, s.objective, params, s.G, precision.lossScale(g));
  g.output("loss", loss);
  running(g, reshape(loss, [1]), LOSS_SUM, "loss_sum");
  if (metrics) {
    g.output("metrics", metrics);
    running(g, metrics, METRIC_SUMS, "metric_sums");
  }
  if (stats) g.output("stats", stats);
  const kept = s.optimizer.gradients ? s.optimizer.gradients(g, s.names, grads) : grads;
  const clipped = precision.clip(g, kept, s.maxGradNorm);
  s.optimizer.update(g, { names: s.names, params, grads: kept, lr, step, ...clipped });
  return g;
}

/** The loss and the gradients of `names` only (outputs `loss` and `grad:<name>`): what GaLore's refresh reads. */
export function buildGradStep(objective: Objective, names: readonly string[], G: number): Graph {
  const g = new Graph();
  const { loss, grads } = accumulate(g, objective, objective.params(g, names), G);
  g.output("loss", loss);
  grads.forEach((gr, i) => g.output(`grad:${names[i]}`, gr));
  return g;
}
