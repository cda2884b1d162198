/**
 * The graph tensors of trainable parameters by name: the decoder's (or its adapter's) through the model's weights,
 * the value head's (stages rm and ppo) through engine/nn/value_head.ts.
 * @module
 */
import type { Graph, Tensor } from "../../graph/mod.ts";
import type { Model } from "../../nn/model.ts";
import { isValueHeadParam, valueHeadParams, valueHeadWeight } from "../../nn/value_head.ts";

/** The graph tensors of the trainable parameters `names` of `model`: decoder, adapter or value head. */
export function paramsOf(model: Model, g: Graph, names: readonly string[]): Tensor[] {
  const w = model.weights(g);
  return names.map((n) => (isValueHeadParam(n) ? valueHeadWeight(g, model, n) : w.weight(n)));
}

/** The shape of a trainable parameter (base, adapter or value head). */
export function trainableShape(model: Model, name: string): number[] {
  const p = model.params.get(name) ?? model.adapter?.params.get(name);
  if (p) return p.shape;
  const v = valueHeadParams(model.config.hidden).get(name);
  if (!v) throw new Error(`"${name}" is not a parameter of the model, its adapter or its value head`);
  return v;
}
