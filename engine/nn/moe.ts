/**
 * Mixture-of-experts feed-forward blocks (mixtral, qwen2_moe, qwen3_moe): the config keys, the parameters in the
 * released checkpoints' naming (one 2-D weight per expert, as transformers 5 still saves them) and the traced block.
 *
 * Routing as transformers computes it: router logits `x · Wgᵀ` [N, E] → softmax in f32 → the top-k experts of each
 * token → their probabilities, renormalised to sum 1 (mixtral always; qwen when `norm_topk_prob`). The top-k choice
 * is a 0/1 mask built from comparisons (rank of p_i = #{j : p_j > p_i} + #{j < i : p_j = p_i}; selected iff rank < k),
 * so it needs no new op and carries no gradient; the gradient flows through the selected probabilities as in
 * transformers.
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
 * experts' 2-D checkpoint weights are still stacked by a concat per step (a transient copy).
 * @module
 */
import {
  add,
  cast,
  concat,
  div,
  embedding,
  eq,
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
} from "../graph/mod.ts";

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
  /** The shared expert's intermediate size (qwen2_moe; 0 = none). It is gated by sigmoid(x · shared_expert_gateᵀ). */
  sharedIntermediate: number;
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
export const MOE_FAMILIES = ["mixtral", "qwen2_moe", "qwen3_moe"] as const;

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
  if (m.sharedIntermediate) {
    const s = m.sharedIntermediate;
    out.push([`${b}.shared_expert.gate_proj.weight`, [s, hidden]]);
    out.push([`${b}.shared_expert.up_proj.weight`, [s, hidden]]);
    out.push([`${b}.shared_expert.down_proj.weight`, [hidden, s]]);
    out.push([`${b}.shared_expert_gate.weight`, [1, hidden]]);
  }
  return out;
}

/** Module names (router, routed experts) that LLaMA-Factory's lora_target "all" leaves out on transformers 5. */
export function isRoutedModule(name: string): boolean {
  return /\.(block_sparse_moe|mlp)\.(gate|experts\.\d+\.[^.]+)$/.test(name);
}

const f32 = (t: Tensor) => (t.dtype === "f32" ? t : cast(t, "f32"));

/** One sparse layer's routing: softmax probabilities and the 0/1 top-k mask, both [B, L, E] f32. */
export interface Route {
  probs: Tensor;
  topk: Tensor;
}

/** The rank of each entry along the last axis of p [..., E]: how many entries rank above it (ties to the lower index). */
function expertRank(p: Tensor): Tensor {
  const E = p.shape[p.rank - 1], lead = p.shape.slice(0, -1);
  const pi = reshape(p, [...lead, E, 1]), pj = reshape(p, [...lead, 1, E]);
  const before = new Float32Array(E * E);
  for (let i = 0; i < E; i++) for (let j = 0; j < i; j++) before[i * E + j] = 1;
  const tri = p.graph.constant(before, [E, E]);
  return sum(add(gt(pj, pi), mul(eq(pj, pi), tri)), -1); // [..., E]
}

/** The 0/1 mask of the k largest entries along the last axis of p [..., E] (ties to the lower index); no gradient. */
export function topkMask(p: Tensor, k: number): Tensor {
  return gt(k - 0.5, expertRank(p));
}

/**
 * The top-k of scores p [..., E] as indices [..., k] i32 (largest first, ties to the lower index) and the entries of
 * `w` [..., E] at them [..., k] (w carries the gradient; the choice carries none).
 */
export function topkSelect(p: Tensor, w: Tensor, k: number): { idx: Tensor; weight: Tensor } {
  return selectByRank(expertRank(p), w, k);
}

/** {@link topkSelect} from the entries' ranks [..., E]. */
function selectByRank(rank: Tensor, w: Tensor, k: number): { idx: Tensor; weight: Tensor } {
  const E = rank.shape[rank.rank - 1], lead = rank.shape.slice(0, -1);
  const g = rank.graph;
  const pick = eq(reshape(rank, [...lead, E, 1]), g.constant(Array.from({ length: k }, (_, j) => j), [1, k])); // [..., E, k]
  const e = g.constant(Array.from({ length: E }, (_, i) => i), [E, 1]);
  return {
    idx: cast(sum(mul(pick, e), -2), "i32"),
    weight: sum(mul(pick, reshape(w, [...lead, E, 1])), -2),
  };
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
  const H = x.shape[x.rank - 1], k = topkIdx.shape[topkIdx.rank - 1], lead = x.shape.slice(0, -1);
  const N = lead.reduce((a, b) => a * b, 1);
  const E = experts ?? [w.gate, w.up, w.down].find((p): p is Tensor => typeof p !== "function")?.shape[0];
  if (E === undefined) throw new Error("routedExperts: pass `experts` when every projection is a function");
  const order = expertSort(reshape(topkIdx, [N, k]), E);
  const proj = (p: ExpertProjection, rows: Tensor) =>
    typeof p === "function" ? p(rows, order) : groupedMatmul(rows, p, order.offsets, { transB: true });
  const xs = embedding(f32(reshape(x, [N, H])), order.rows); // [N·k, H], expert-sorted
  const a = (w.act ?? swiglu)(proj(w.gate, xs), proj(w.up, xs));
  const ys = embedding(proj(w.down, a), reshape(order.pos, [N * k])); // [N·k, H], assignment order
  const y = sum(mul(reshape(ys, [N, k, H]), reshape(f32(topkWeight), [N, k, 1])), 1);
  return reshape(y, [...lead, H]);
}

/**
 * Traces layer `i`'s sparse block on x [B, L, H] → [B, L, H]. `linear` is the decoder's linear (adapters, quantization)
 * for the router and the shared expert; `weight` gives the routed experts' weights, which no adapter targets (see
 * {@link isRoutedModule}).
 */
export function traceMoe(
  m: MoeConfig,
  i: number,
  x: Tensor,
  linear: (x: Tensor, name: string) => Tensor,
  weight: (name: string) => Tensor,
): { out: Tensor; route: Route } {
  const b = `model.layers.${i}.${m.block}`;
  const [gate, up, down] = m.names;
  const logits = linear(x, `${b}.gate`); // [B, L, E]
  const probs = softmax(f32(logits), -1);
  const rank = expertRank(probs);
  const topk = gt(m.topK - 0.5, rank);
  let w = mul(probs, topk);
  if (m.normTopK) w = div(w, sum(w, -1, true));
  const E = m.experts, H = x.shape[x.rank - 1];
  // Stacked [E, out, in] in f32: bf16 / f16 weights are widened first (WebGPU stores no packed 16-bit concat).
  const stack = (name: string, rows: number) => {
    const ws = Array.from({ length: E }, (_, e) => f32(weight(`${b}.experts.${e}.${name}.weight`)));
    return reshape(concat(ws, 0), [E, rows, -1]);
  };
  const pick = selectByRank(rank, w, m.topK);
  let out = routedExperts(x, pick.idx, pick.weight, {
    gate: stack(gate, m.intermediate),
    up: stack(up, m.intermediate),
    down: stack(down, H),
  });
  if (m.sharedIntermediate) {
    const s = `${b}.shared_expert`;
    const y = linear(swiglu(linear(x, `${s}.gate_proj`), linear(x, `${s}.up_proj`)), `${s}.down_proj`);
    out = add(out, mul(y, sigmoid(linear(x, `${b}.shared_expert_gate`))));
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
  if (!m?.outputRouterLogits || !routes?.length || !m.auxCoef) return loss;
  return add(loss, mul(loadBalancingLoss(m, routes, segments), m.auxCoef));
}

/**
 * LLaMA-Factory's `moe_aux_loss_coef` on a model being trained (its `configure_moe`): when set (non-zero) on a
 * mixture-of-experts model, output_router_logits turns on and router_aux_loss_coef becomes the coefficient. A dense
 * model ignores the key, as LLaMA-Factory does.
 */
export function configureMoe(m: MoeConfig | undefined, moeAuxLossCoef: number | null | undefined): void {
  if (!m || !moeAuxLossCoef) return;
  m.outputRouterLogits = true;
  m.auxCoef = moeAuxLossCoef;
}
