/**
 * Mixture-of-experts feed-forward blocks (mixtral, qwen2_moe, qwen3_moe; deepseek_v3 and glm4_moe route with
 * moe_router.ts): the config keys, the parameters in the released checkpoints' naming (one 2-D weight per expert, as
 * transformers 5 still saves them) and the traced block.
 *
 * Routing as transformers computes it: router logits `x · Wgᵀ` [N, E] → softmax in f32 → the top-k experts of each
 * token → their probabilities, renormalised to sum 1 (mixtral always; qwen when `norm_topk_prob`). The top-k choice
 * is the `topk` op (engine/graph/ops/topk.ts: largest first, ties to the lower index; O(N·E·k), not the N·E² of a
 * pairwise comparison) and carries no gradient; the gradient flows through the selected probabilities (its values)
 * as in transformers.
 *
 * Dispatch is sparse ({@link routedExperts}): the N·k (token, expert) assignments are sorted by expert in the graph
 * (`expert_sort`, a stable counting sort), the tokens' rows gathered in that order [N·k, H] (`embedding`, whose
 * gradient is the scatter-add `embedding_bwd`), and each projection is one `grouped_matmul` over the sorted rows with
 * the experts' weights stacked [E, out, in]: row r meets only its expert's weight, so a layer costs N·k·3·H·I
 * multiply-adds instead of the dense N·E·3·H·I, forward and backward (dx is a grouped matmul with Wᵀ, dW[e] a
 * segmented sum over e's rows). The rows come back in assignment order through the inverse permutation (a gather,
 * not a scatter), are weighted by the routing weights and summed over the k picks. Shapes stay static (N·k rows; the
 * split among experts is data), so one graph runs on every executor (engine/graph/ops/grouped.ts). The sort and the
 * gathers cost O(N·k·H), against the dense dispatch's E / k times the expert FLOPs (4× for a Mixtral-8x7B, 16× for a
 * Qwen3-30B-A3B); the dense dispatch is kept only as the reference of tests and bench "moe" (moe_dense.ts). The
 * experts' 2-D checkpoint weights are still stacked by a concat per step (a transient copy). gpt_oss's fused, biased
 * experts (moe_gpt_oss.ts) go through the same dispatch ({@link dispatchExperts}) with their stored weights.
 * @module
 */
import {
  add,
  cast,
  concat,
  div,
  embedding,
  type ExpertOrder,
  expertSort,
  groupedMatmul,
  gt,
  mul,
  reshape,
  sigmoid,
  softmax,
  sum,
  swiglu,
  type Tensor,
  topk as topkOp,
} from "../graph/mod.ts";
import {
  indexMask,
  NOAUX_FAMILIES,
  noauxRoute,
  type NoauxRouter,
  noauxRouter,
  topkMask,
  topkSelect,
} from "./moe_router.ts";

export { topkMask, topkSelect };

/** The mixture-of-experts part of a decoder config. */
export interface MoeConfig {
  /** Routed experts per sparse layer. */
  experts: number;
  /** Experts each token is routed to. */
  topK: number;
  /** Each routed expert's intermediate size. */
  intermediate: number;
  /** Renormalise the top-k probabilities to sum 1. */
  normTopK: boolean;
  /**
   * The shared expert's intermediate size (0 = none): qwen2_moe's `shared_expert`, gated by
   * sigmoid(x · shared_expert_gateᵀ); deepseek_v3 / glm4_moe's ungated `shared_experts` (moe_intermediate_size ·
   * n_shared_experts).
   */
  sharedIntermediate: number;
  /** deepseek_v3 / glm4_moe: sigmoid scores with a correction bias and grouped top-k (moe_router.ts). */
  noaux?: NoauxRouter;
  /** Per layer: a sparse (routed) block, else the dense MLP of `intermediate_size`. */
  sparse: boolean[];
  /** Module path of the block under `model.layers.<i>.`: "block_sparse_moe" (mixtral) or "mlp". */
  block: string;
  /** An expert's gate, up and down projection names ("w1", "w3", "w2" for mixtral). */
  names: [gate: string, up: string, down: string];
  /** Weight of the load-balancing loss added to the LM loss (router_aux_loss_coef, or LF's moe_aux_loss_coef). */
  auxCoef: number;
  /** Whether the loss includes the load-balancing term (config.json's output_router_logits; on in training with LF's key). */
  outputRouterLogits: boolean;
}

/** The model types with routed experts. */
export const MOE_FAMILIES = ["mixtral", "qwen2_moe", "qwen3_moe", ...NOAUX_FAMILIES] as const;

/** The dense family whose attention (biases, q/k norms, sliding windows) each MoE family shares. */
export const MOE_ATTENTION: Record<string, string> = { mixtral: "mistral", qwen2_moe: "qwen2", qwen3_moe: "qwen3" };

function int(cfg: Record<string, unknown>, keys: string[], dflt?: number): number {
  for (const k of keys) {
    const v = cfg[k];
    if (v === undefined || v === null) continue;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
      throw new Error(`config.json: "${k}" must be a non-negative integer, got ${JSON.stringify(v)}`);
    }
    return v;
  }
  if (dflt === undefined) throw new Error(`config.json: "${keys[0]}" is required and missing`);
  return dflt;
}

/** The MoE settings of a config.json (transformers v4 and v5 spellings), or undefined for a dense family. */
export function moeConfig(cfg: Record<string, unknown>, family: string, layers: number): MoeConfig | undefined {
  if (!(MOE_FAMILIES as readonly string[]).includes(family)) return undefined;
  if ((NOAUX_FAMILIES as readonly string[]).includes(family)) return noauxMoeConfig(cfg, family, layers);
  const mixtral = family === "mixtral";
  // v4: num_local_experts (mixtral) / num_experts (qwen); transformers 5 writes num_local_experts for qwen3_moe too.
  const experts = int(cfg, mixtral ? ["num_local_experts", "num_experts"] : ["num_experts", "num_local_experts"]);
  const topK = int(cfg, ["num_experts_per_tok"], 2);
  if (experts < 1 || topK < 1 || topK > experts) {
    throw new Error(`config.json: num_experts_per_tok ${topK} must be in [1, ${experts}] (the number of experts)`);
  }
  const step = mixtral ? 1 : int(cfg, ["decoder_sparse_step"], 1);
  const only = cfg.mlp_only_layers ?? [];
  if (!Array.isArray(only) || only.some((v) => !Number.isInteger(v))) {
    throw new Error(`config.json: "mlp_only_layers" must be a list of layer indices, got ${JSON.stringify(only)}`);
  }
  const coef = cfg.router_aux_loss_coef ?? 0.001;
  if (typeof coef !== "number") throw new Error(`config.json: "router_aux_loss_coef" must be a number`);
  return {
    experts,
    topK,
    intermediate: mixtral ? int(cfg, ["intermediate_size"]) : int(cfg, ["moe_intermediate_size"]),
    normTopK: mixtral ? true : cfg.norm_topk_prob === true,
    sharedIntermediate: family === "qwen2_moe" ? int(cfg, ["shared_expert_intermediate_size"], 0) : 0,
    sparse: Array.from({ length: layers }, (_, i) => !only.includes(i) && step > 0 && (i + 1) % step === 0),
    block: mixtral ? "block_sparse_moe" : "mlp",
    names: mixtral ? ["w1", "w3", "w2"] : ["gate_proj", "up_proj", "down_proj"],
    auxCoef: coef,
    outputRouterLogits: cfg.output_router_logits === true,
  };
}

/**
 * deepseek_v3 / glm4_moe: n_routed_experts (v5 config.json; num_local_experts read too), the first
 * `first_k_dense_replace` layers dense, shared experts, the noaux_tc router. No load-balancing loss (see moe_router.ts).
 */
function noauxMoeConfig(cfg: Record<string, unknown>, family: string, layers: number): MoeConfig {
  const experts = int(cfg, ["n_routed_experts", "num_local_experts"]);
  const topK = int(cfg, ["num_experts_per_tok"], 8);
  if (experts < 1 || topK < 1 || topK > experts) {
    throw new Error(`config.json: num_experts_per_tok ${topK} must be in [1, ${experts}] (the number of experts)`);
  }
  const dense = int(cfg, ["first_k_dense_replace"], family === "deepseek_v3" ? 3 : 1);
  const intermediate = int(cfg, ["moe_intermediate_size"], family === "deepseek_v3" ? 2048 : 1408);
  return {
    experts,
    topK,
    intermediate,
    normTopK: cfg.norm_topk_prob !== false,
    sharedIntermediate: intermediate * int(cfg, ["n_shared_experts"], 1),
    noaux: noauxRouter(cfg, experts, topK, family),
    sparse: Array.from({ length: layers }, (_, i) => i >= dense),
    block: "mlp",
    names: ["gate_proj", "up_proj", "down_proj"],
    auxCoef: 0,
    outputRouterLogits: false,
  };
}

/** Parameters of layer `i`'s sparse block (prefix `model.layers.<i>.`), in checkpoint naming. */
export function moeParams(m: MoeConfig, i: number, hidden: number): [string, number[]][] {
  const b = `model.layers.${i}.${m.block}`;
  const [gate, up, down] = m.names;
  const out: [string, number[]][] = [[`${b}.gate.weight`, [m.experts, hidden]]];
  for (let e = 0; e < m.experts; e++) {
    out.push([`${b}.experts.${e}.${gate}.weight`, [m.intermediate, hidden]]);
    out.push([`${b}.experts.${e}.${up}.weight`, [m.intermediate, hidden]]);
    out.push([`${b}.experts.${e}.${down}.weight`, [hidden, m.intermediate]]);
  }
  if (m.noaux) out.push([`${b}.gate.e_score_correction_bias`, [m.experts]]);
  if (m.sharedIntermediate) {
    const s = m.sharedIntermediate, n = sharedName(m);
    out.push([`${b}.${n}.gate_proj.weight`, [s, hidden]]);
    out.push([`${b}.${n}.up_proj.weight`, [s, hidden]]);
    out.push([`${b}.${n}.down_proj.weight`, [hidden, s]]);
    if (!m.noaux) out.push([`${b}.shared_expert_gate.weight`, [1, hidden]]);
  }
  return out;
}

/** The shared expert's module: qwen2_moe's gated `shared_expert`, deepseek_v3 / glm4_moe's `shared_experts`. */
const sharedName = (m: MoeConfig) => (m.noaux ? "shared_experts" : "shared_expert");

/** Module names (router, routed experts) that LLaMA-Factory's lora_target "all" leaves out on transformers 5. */
export function isRoutedModule(name: string): boolean {
  return /\.(block_sparse_moe|mlp)\.(gate|router|experts\.\d+\.[^.]+)$/.test(name); // router: gpt_oss
}

const f32 = (t: Tensor) => (t.dtype === "f32" ? t : cast(t, "f32"));

/** One sparse layer's routing: softmax probabilities and the 0/1 top-k mask, both [B, L, E] f32. */
export interface Route {
  probs: Tensor;
  topk: Tensor;
}

/**
 * One projection of the routed experts: their weights stacked [E, out, in] (each expert's [out, in] linear weight),
 * or a function of the expert-sorted rows [N·k, in] → [N·k, out] (an adapter, biases, another layout) that applies
 * expert e to rows [order.offsets[e], order.offsets[e + 1]), e.g. with {@link groupedMatmul}.
 */
export type ExpertProjection = Tensor | ((rows: Tensor, order: ExpertOrder) => Tensor);

/** The routed experts of one layer: gate, up and down projections and the activation (default SwiGLU). */
export interface RoutedExpertWeights {
  gate: ExpertProjection;
  up: ExpertProjection;
  down: ExpertProjection;
  /** act(gate, up) on the sorted rows [N·k, I] (default `swiglu`: silu(gate) · up). */
  act?: (gate: Tensor, up: Tensor) => Tensor;
}

/**
 * Σ_j topkWeight[n, j] · expert_{topkIdx[n, j]}(x[n]) for x [..., H], topkIdx [..., k] i32 and topkWeight [..., k] →
 * [..., H] f32, each expert computed on its tokens only (sparse dispatch; see the module doc). Ids outside [0, E)
 * contribute nothing. E is the stacked weights' first axis, or `experts` when every projection is a function.
 */
export function routedExperts(
  x: Tensor,
  topkIdx: Tensor,
  topkWeight: Tensor,
  w: RoutedExpertWeights,
  experts?: number,
): Tensor {
  const E = experts ?? [w.gate, w.up, w.down].find((p): p is Tensor => typeof p !== "function")?.shape[0];
  if (E === undefined) throw new Error("routedExperts: pass `experts` when every projection is a function");
  return dispatchExperts(x, topkIdx, topkWeight, E, (xs, order) => {
    const proj = (p: ExpertProjection, rows: Tensor) =>
      typeof p === "function" ? p(rows, order) : groupedMatmul(rows, p, order.offsets, { transB: true });
    return proj(w.down, (w.act ?? swiglu)(proj(w.gate, xs), proj(w.up, xs)));
  });
}

/**
 * The sparse dispatch under {@link routedExperts}, for any expert function: the assignments sorted by expert
 * (`expert_sort`), the tokens' rows gathered in that order xs [N·k, H] f32, `expertRows(xs, order)` → [N·k, H'] (row r
 * computed by the expert of its range in `order.offsets`, e.g. with {@link groupedMatmul}), the rows put back in
 * assignment order, weighted by topkWeight and summed over the k picks → [..., H'] f32.
 */
export function dispatchExperts(
  x: Tensor,
  topkIdx: Tensor,
  topkWeight: Tensor,
  experts: number,
  expertRows: (xs: Tensor, order: ExpertOrder) => Tensor,
): Tensor {
  const H = x.shape[x.rank - 1], k = topkIdx.shape[topkIdx.rank - 1], lead = x.shape.slice(0, -1);
  const N = lead.reduce((a, b) => a * b, 1);
  const order = expertSort(reshape(topkIdx, [N, k]), experts);
  const xs = embedding(f32(reshape(x, [N, H])), order.rows); // [N·k, H], expert-sorted
  const rows = expertRows(xs, order), Ho = rows.shape[1];
  const ys = embedding(rows, reshape(order.pos, [N * k])); // [N·k, H'], assignment order
  const y = sum(mul(reshape(ys, [N, k, Ho]), reshape(f32(topkWeight), [N, k, 1])), 1);
  return reshape(y, [...lead, Ho]);
}

/**
 * Traces layer `i`'s sparse block on x [B, L, H] → [B, L, H]. `linear` is the decoder's linear (adapters, quantization)
 * for the router and the shared expert; `weight` gives the routed experts' weights, which no linear adapter targets
 * (see {@link isRoutedModule}); `delta`, LoRA on their fused parameters (lora_experts.ts).
 */
export function traceMoe(
  m: MoeConfig,
  i: number,
  x: Tensor,
  linear: (x: Tensor, name: string) => Tensor,
  weight: (name: string) => Tensor,
  /** An adapter's s·ΔW of the experts' projections, stacked [E, rows, cols] (LoRA on fused expert parameters). */
  delta?: (layer: number, proj: "gate" | "up" | "down") => Tensor | undefined,
): { out: Tensor; route: Route } {
  const b = `model.layers.${i}.${m.block}`;
  const [gate, up, down] = m.names;
  let probs: Tensor, topk: Tensor, idx: Tensor, w: Tensor;
  if (m.noaux) {
    // The router is an nn.Parameter there (no adapter), computed in f32; the bias only steers the choice.
    const r = noauxRoute(
      m.noaux,
      m.topK,
      m.normTopK,
      f32(x),
      f32(weight(`${b}.gate.weight`)),
      f32(weight(`${b}.gate.e_score_correction_bias`)),
    );
    [probs, topk, idx, w] = [r.scores, r.topk, r.idx, r.weight];
  } else {
    const logits = linear(x, `${b}.gate`); // [B, L, E]
    probs = softmax(f32(logits), -1);
    const pick = topkOp(probs, m.topK); // [B, L, k]: the chosen probabilities and experts
    [idx, w] = [pick.indices, pick.values];
    if (m.normTopK) w = div(w, sum(w, -1, true));
    topk = indexMask(idx, m.experts); // for the load-balancing loss
  }
  const E = m.experts, H = x.shape[x.rank - 1];
  // Stacked [E, out, in] in f32: bf16 / f16 weights are widened first (WebGPU stores no packed 16-bit concat); an
  // adapter's s·ΔW [E, out, in] is added to the whole stack (W + s·ΔW before the expert matmuls, as PEFT's
  // ParamWrapper), never sliced per expert (a slice's backward pads to the whole tensor: E² cost).
  const stack = (name: string, rows: number, proj: "gate" | "up" | "down") => {
    const ws = Array.from({ length: E }, (_, e) => f32(weight(`${b}.experts.${e}.${name}.weight`)));
    const s = reshape(concat(ws, 0), [E, rows, -1]);
    const d = delta?.(i, proj);
    return d ? add(s, d) : s;
  };
  let out = routedExperts(x, idx, w, {
    gate: stack(gate, m.intermediate, "gate"),
    up: stack(up, m.intermediate, "up"),
    down: stack(down, H, "down"),
  });
  if (m.sharedIntermediate) {
    const s = `${b}.${sharedName(m)}`;
    const y = linear(swiglu(linear(x, `${s}.gate_proj`), linear(x, `${s}.up_proj`)), `${s}.down_proj`);
    out = add(out, m.noaux ? y : mul(y, sigmoid(linear(x, `${b}.shared_expert_gate`))));
  }
  return { out, route: { probs, topk } };
}

/**
 * transformers' `load_balancing_loss_func` over every sparse layer's routing: E · Σ_e f_e · P_e, where f_e is the
 * share of top-k assignments to expert e and P_e its mean probability, both over all layers' real tokens
 * (`segments` [B, L] i32, 0 = padding) — f counts each token's k picks and is divided by the token count, as there.
 */
export function loadBalancingLoss(m: MoeConfig, routes: readonly Route[], segments: Tensor): Tensor {
  const real = reshape(gt(cast(segments, "f32"), 0), [...segments.shape, 1]); // [B, L, 1]
  let f: Tensor | undefined, P: Tensor | undefined;
  for (const r of routes) {
    const fe = sum(mul(r.topk, real), [0, 1]), pe = sum(mul(r.probs, real), [0, 1]);
    f = f ? add(f, fe) : fe;
    P = P ? add(P, pe) : pe;
  }
  const rows = mul(sum(real), routes.length);
  return mul(div(sum(mul(f!, P!)), mul(rows, rows)), m.experts);
}

/**
 * `loss` plus `auxCoef` × the load-balancing loss when the config turns it on (output_router_logits, as transformers'
 * causal-LM forward adds it); `loss` unchanged otherwise.
 */
export function withRouterLoss(
  m: MoeConfig | undefined,
  routes: readonly Route[] | undefined,
  loss: Tensor,
  segments: Tensor,
): Tensor {
  if (!m?.outputRouterLogits || !routes?.length || !m.auxCoef || m.noaux) return loss;
  return add(loss, mul(loadBalancingLoss(m, routes, segments), m.auxCoef));
}

/**
 * LLaMA-Factory's `moe_aux_loss_coef` on a model being trained (its `configure_moe`): when set (non-zero) on a
 * mixture-of-experts model, output_router_logits turns on and router_aux_loss_coef becomes the coefficient. A dense
 * model ignores the key, as LLaMA-Factory does, and so do deepseek_v3 and glm4_moe (no load-balancing loss there).
 */
export function configureMoe(m: MoeConfig | undefined, moeAuxLossCoef: number | null | undefined): void {
  // deepseek_v3 / glm4_moe: LF's configure_moe sets nothing for them, and transformers adds no router loss.
  if (!m || !moeAuxLossCoef || m.noaux) return;
  m.outputRouterLogits = true;
  m.auxCoef = moeAuxLossCoef;
}
