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
 * Dispatch is dense: every expert runs on every token and its output is weighted by the token's routing weight, zero
 * outside its top-k. The experts of a layer are stacked (their gate and up weights concatenated to [E·I, H], their
 * down weights to [H, E·I]), so a layer is three matmuls: a = swiglu(x·Gᵀ, x·Uᵀ) [N, E·I], scaled per expert by the
 * routing weights, then a·Dᵀ = Σ_e w_e · down_e(a_e). That is exact (forward and backward: an expert's weights get
 * gradient only from its tokens), has static shapes on every executor, and costs E / k times the expert FLOPs of a
 * sparse dispatch — fine for small models, wasteful for a Mixtral-8x7B (4×) or a Qwen3-30B-A3B (16×) — plus a
 * transient copy of the layer's expert weights per step.
 * @module
 */
import {
  add,
  cast,
  concat,
  div,
  eq,
  gt,
  matmul,
  mul,
  permute,
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

/** The 0/1 mask of the k largest entries along the last axis of p [..., E] (ties to the lower index); no gradient. */
export function topkMask(p: Tensor, k: number): Tensor {
  const E = p.shape[p.rank - 1], lead = p.shape.slice(0, -1);
  const pi = reshape(p, [...lead, E, 1]), pj = reshape(p, [...lead, 1, E]);
  const before = new Float32Array(E * E);
  for (let i = 0; i < E; i++) for (let j = 0; j < i; j++) before[i * E + j] = 1;
  const tri = p.graph.constant(before, [E, E]);
  const rank = sum(add(gt(pj, pi), mul(eq(pj, pi), tri)), -1); // [..., E]: how many entries rank above
  return gt(k - 0.5, rank);
}

/**
 * The experts' weights `ws` (each [rows, cols]) stacked along `axis` (0: [E·rows, cols], 1: [rows, E·cols]), with an
 * adapter's s·ΔW [E, rows, cols] added first when given (W + s·ΔW before the expert matmuls, as PEFT's ParamWrapper).
 */
export function stackExperts(ws: readonly Tensor[], axis: 0 | 1, delta?: Tensor): Tensor {
  if (!delta) return concat(ws, axis);
  const [rows, cols] = ws[0].shape, E = ws.length;
  const w3 = add(concat(ws.map((w) => reshape(w, [1, rows, cols])), 0), delta); // [E, rows, cols]
  return axis === 0 ? reshape(w3, [E * rows, cols]) : reshape(permute(w3, [1, 0, 2]), [rows, E * cols]);
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
  const logits = linear(x, `${b}.gate`); // [B, L, E]
  const probs = softmax(f32(logits), -1);
  const topk = topkMask(probs, m.topK);
  let w = mul(probs, topk);
  if (m.normTopK) w = div(w, sum(w, -1, true));
  const E = m.experts, I = m.intermediate, lead = x.shape.slice(0, -1);
  // Stacked in f32: bf16 / f16 weights are widened first (WebGPU stores no packed 16-bit concat).
  const stack = (name: string, axis: 0 | 1, proj: "gate" | "up" | "down") =>
    stackExperts(
      Array.from({ length: E }, (_, e) => f32(weight(`${b}.experts.${e}.${name}.weight`))),
      axis,
      delta?.(i, proj),
    );
  const xf = f32(x);
  const a = swiglu(
    matmul(xf, stack(gate, 0, "gate"), { transB: true }),
    matmul(xf, stack(up, 0, "up"), { transB: true }),
  ); // [B, L, E·I]
  const aw = reshape(mul(reshape(a, [...lead, E, I]), reshape(w, [...lead, E, 1])), [...lead, E * I]);
  let out = matmul(aw, stack(down, 1, "down"), { transB: true }); // [B, L, H]
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
