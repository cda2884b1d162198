/**
 * The "noaux_tc" router of deepseek_v3 and glm4_moe (transformers' `DeepseekV3TopkRouter`): sigmoid scores, a
 * score-correction bias that only steers the choice, grouped top-k.
 *
 * For tokens x [..., H] and router weight Wg [E, H] (an nn.Parameter, not an nn.Linear: no adapter targets it):
 * - s = sigmoid(x · Wgᵀ) in f32 [..., E]; c = s + e_score_correction_bias (the bias, a buffer, is never trained);
 * - the E experts form `nGroup` groups of E / nGroup; a group's score is the sum of its two largest c;
 * - the `topkGroup` best groups stay eligible, the rest are masked out (transformers: -inf);
 * - the `topK` largest c among the eligible experts are chosen; their weights are the scores s (without the bias),
 *   divided by their sum + 1e-20 when `normTopK`, times `routedScale` (routed_scaling_factor).
 * Every choice is the engine's `topk` op (engine/graph/ops/topk.ts: largest first, ties to the lower index), which
 * carries no gradient through the choice; the gradient flows through the chosen s, as in transformers.
 *
 * transformers' DeepseekV3ForCausalLM / Glm4MoeForCausalLM add no load-balancing loss, and LLaMA-Factory's
 * `configure_moe` leaves these model types alone: `moe_aux_loss_coef` changes nothing for them (see moe.ts).
 * @module
 */
import {
  add,
  div,
  expand,
  gatherLast,
  matmul,
  mul,
  reshape,
  scatterLast,
  sigmoid,
  sum,
  type Tensor,
  topk,
} from "../graph/mod.ts";

/** Ones shaped like t: one constant 1 expanded (a constant of t's size would tie the graph to its sizes). */
function onesLike(t: Tensor): Tensor {
  return expand(t.graph.constant([1], t.shape.map(() => 1)), t.shape);
}

/** The 0/1 mask [..., E] of the entries at idx [..., k] (i32, distinct per row); no gradient. */
export function indexMask(idx: Tensor, E: number): Tensor {
  return scatterLast(onesLike(idx), idx, E);
}

/** The 0/1 mask of the k largest entries along the last axis of p [..., E] (ties to the lower index); no gradient. */
export function topkMask(p: Tensor, k: number): Tensor {
  return indexMask(topk(p, k).indices, p.shape[p.rank - 1]);
}

/**
 * The top-k of scores p [..., E] as indices [..., k] i32 (largest first, ties to the lower index) and the entries of
 * `w` [..., E] at them [..., k] (w carries the gradient; the choice carries none).
 */
export function topkSelect(p: Tensor, w: Tensor, k: number): { idx: Tensor; weight: Tensor } {
  const idx = topk(p, k).indices;
  return { idx, weight: gatherLast(w, idx) };
}

/** The noaux_tc router settings of a config.json. */
export interface NoauxRouter {
  /** Expert groups (n_group). */
  nGroup: number;
  /** Groups kept per token (topk_group). */
  topkGroup: number;
  /** routed_scaling_factor: multiplies the routing weights. */
  routedScale: number;
}

/** The model types routed by {@link noauxRoute}. */
export const NOAUX_FAMILIES = ["deepseek_v3", "glm4_moe"] as const;

/** Parameters that transformers keeps as buffers: loaded, never trained, no gradient (the score-correction bias). */
export function isBuffer(name: string): boolean {
  return name.endsWith(".gate.e_score_correction_bias");
}

function count(cfg: Record<string, unknown>, key: string, dflt: number): number {
  const v = cfg[key] ?? dflt;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
    throw new Error(`config.json: "${key}" must be a positive integer, got ${JSON.stringify(cfg[key])}`);
  }
  return v;
}

/** Reads n_group, topk_group and routed_scaling_factor, checked against the expert count and top-k. */
export function noauxRouter(cfg: Record<string, unknown>, experts: number, topK: number, family: string): NoauxRouter {
  const nGroup = count(cfg, "n_group", 1), topkGroup = count(cfg, "topk_group", 1);
  const scale = cfg.routed_scaling_factor ?? (family === "deepseek_v3" ? 2.5 : 1);
  if (typeof scale !== "number" || !Number.isFinite(scale)) {
    throw new Error(`config.json: "routed_scaling_factor" must be a number, got ${JSON.stringify(scale)}`);
  }
  if (experts % nGroup) throw new Error(`config.json: n_group ${nGroup} must divide the ${experts} routed experts`);
  if (topkGroup > nGroup) throw new Error(`config.json: topk_group ${topkGroup} must be at most n_group ${nGroup}`);
  const per = experts / nGroup;
  if (per < 2 && nGroup > 1) throw new Error(`config.json: each of the n_group ${nGroup} groups needs 2 experts`);
  if (topK > topkGroup * per) {
    throw new Error(
      `config.json: num_experts_per_tok ${topK} exceeds the ${
        topkGroup * per
      } experts of topk_group ${topkGroup} groups`,
    );
  }
  return { nGroup, topkGroup, routedScale: scale };
}

/**
 * Routes x [..., H] (f32) with router weight [E, H] and correction bias [E] (both f32): each token's chosen experts
 * `idx` [..., k] (i32, best first) and their routing weights `weight` [..., k]; the same weights spread over the
 * experts `weights` [..., E] (zero outside the top-k), the sigmoid scores and the 0/1 choice [..., E].
 */
export function noauxRoute(
  r: NoauxRouter,
  topK: number,
  normTopK: boolean,
  x: Tensor,
  weight: Tensor,
  bias: Tensor,
): { idx: Tensor; weight: Tensor; weights: Tensor; scores: Tensor; topk: Tensor } {
  const E = weight.shape[0], lead = x.shape.slice(0, -1), G = r.nGroup, per = E / G;
  const scores = sigmoid(matmul(x, weight, { transB: true })); // [..., E]
  const choice = add(scores, bias);
  let eligible = choice;
  if (G > 1) {
    const grouped = reshape(choice, [...lead, G, per]);
    const groupScore = sum(topk(grouped, 2).values, -1); // [..., G]: the two best of each group
    const keep = indexMask(topk(groupScore, r.topkGroup).indices, G); // [..., G]
    const allowed = reshape(expand(reshape(keep, [...lead, G, 1]), [...lead, G, per]), [...lead, E]);
    // Masked experts sit far below every eligible one (transformers: -inf); topk then never picks them, as
    // num_experts_per_tok <= the eligible count (noauxRouter checks it).
    eligible = add(mul(choice, allowed), mul(add(allowed, -1), 1e30));
  }
  const idx = topk(eligible, topK).indices;
  let w = gatherLast(scores, idx); // [..., k]: the scores without the bias
  if (normTopK) w = div(w, add(sum(w, -1, true), 1e-20));
  if (r.routedScale !== 1) w = mul(w, r.routedScale);
  return { idx, weight: w, weights: scatterLast(w, idx, E), scores, topk: indexMask(idx, E) };
}
