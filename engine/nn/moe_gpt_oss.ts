/**
 * gpt_oss's mixture-of-experts block and attention sinks, as transformers 5's modeling_gpt_oss.py computes them; the
 * decoder (decoder.ts, kv_decoder.ts) calls in here for the `gpt_oss` family. Checkpoint naming under
 * `model.layers.<i>.`:
 *
 * - `self_attn.sinks` [Hq]: a learned logit per query head that joins every row's softmax denominator and is dropped
 *   after it: p_ij = exp(s_ij) / (Σ_j' exp(s_ij') + exp(sink_h)). With the row log-sum-exp `lse` the fused attention
 *   op already returns (and differentiates), that is o · sigmoid(lse − sink): exact, forward and backward, on every
 *   executor, with no new op.
 * - `mlp.router.weight` [E, H], `mlp.router.bias` [E]: logits = x·Wᵀ + b; the top-k logits, softmax over those k
 *   (= the full softmax restricted to them and renormalised, which is how it is traced, so the load-balancing loss
 *   reuses moe.ts's).
 * - `mlp.experts.gate_up_proj` [E, H, 2I] (x · W, not transposed), `gate_up_proj_bias` [E, 2I], `down_proj`
 *   [E, I, H], `down_proj_bias` [E, H]: gate = columns 0, 2, 4, ... and up = columns 1, 3, 5, ... of x·W + b; gate
 *   clamped above at 7, up to [−7, 7]; out = ((up + 1) · gate · sigmoid(1.702 · gate)) · D + b_down, weighted.
 *
 * Dispatch is sparse as in moe.ts ({@link gptOssExperts}): each expert computes only the tokens routed to it, with
 * the fused weights in their stored [E, in, out] layout (grouped_matmul without transB) and its biases gathered per
 * routed row; each chosen expert's output (bias of down_proj included) is weighted by the token's routing weight, as
 * transformers adds it. The dense dispatch stays as the tests' reference (moe_dense.ts `denseGptOssExperts`).
 *
 * Released gpt-oss checkpoints store the experts in MXFP4 (`quantization_config.quant_method` "mxfp4", tensors
 * `*_blocks` / `*_scales`): the loader dequantizes them to bf16 (mxfp4.ts), as transformers does with
 * `Mxfp4Config(dequantize=True)`, which is how LLaMA-Factory loads them; any other quantization_config is refused.
 * @module
 */
import {
  add,
  cast,
  embedding,
  embeddingBwd,
  groupedMatmul,
  matmul,
  maximum,
  minimum,
  mul,
  permute,
  reshape,
  sigmoid,
  slice,
  softmax,
  type Tensor,
  topk,
} from "../graph/mod.ts";
import { dispatchExperts, type MoeConfig, type Route } from "./moe.ts";
import { indexMask } from "./moe_router.ts";

/** The model type this file implements. */
export const GPT_OSS = "gpt_oss";

/** The SwiGLU's sigmoid slope and clamp limit (GptOssExperts.alpha, .limit). */
export const GPT_OSS_ALPHA = 1.702, GPT_OSS_LIMIT = 7.0;

function int(cfg: Record<string, unknown>, key: string, dflt?: number): number {
  const v = cfg[key] ?? dflt;
  if (v === undefined) throw new Error(`config.json: "${key}" is required and missing`);
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
    throw new Error(`config.json: "${key}" must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

/**
 * gpt_oss's routed-expert settings from config.json (GptOssConfig's keys and defaults): every layer sparse,
 * `num_local_experts` (or its alias `num_experts`), `num_experts_per_tok` (4), each expert of `intermediate_size`.
 * A `quantization_config` other than the releases' MXFP4 (dequantized at load, mxfp4.ts) is refused.
 */
export function gptOssMoeConfig(cfg: Record<string, unknown>, layers: number): MoeConfig {
  const q = cfg.quantization_config as Record<string, unknown> | undefined;
  if (q && q.quant_method !== "mxfp4") {
    throw new Error(
      `config.json: "quantization_config" (quant_method ${JSON.stringify(q.quant_method)}) is not supported for ` +
        `gpt_oss: only the released checkpoints' "mxfp4" (dequantized at load) is`,
    );
  }
  const experts = int(cfg, cfg.num_local_experts === undefined ? "num_experts" : "num_local_experts", 128);
  const topK = int(cfg, "num_experts_per_tok", 4);
  if (topK > experts) {
    throw new Error(`config.json: num_experts_per_tok ${topK} must be in [1, ${experts}] (the number of experts)`);
  }
  const coef = cfg.router_aux_loss_coef ?? 0.001;
  if (typeof coef !== "number") throw new Error(`config.json: "router_aux_loss_coef" must be a number`);
  return {
    experts,
    topK,
    intermediate: int(cfg, "intermediate_size"),
    normTopK: true, // softmax over the k selected logits
    sharedIntermediate: 0,
    sparse: new Array(layers).fill(true),
    block: "mlp",
    names: ["gate_up_proj", "gate_up_proj", "down_proj"],
    auxCoef: coef,
    outputRouterLogits: cfg.output_router_logits === true,
  };
}

/** Parameters of layer `i`'s block (router and fused experts), in checkpoint naming. */
export function gptOssMoeParams(m: MoeConfig, i: number, hidden: number): [string, number[]][] {
  const b = `model.layers.${i}.mlp`, E = m.experts, I = m.intermediate;
  return [
    [`${b}.router.weight`, [E, hidden]],
    [`${b}.router.bias`, [E]],
    [`${b}.experts.gate_up_proj`, [E, hidden, 2 * I]],
    [`${b}.experts.gate_up_proj_bias`, [E, 2 * I]],
    [`${b}.experts.down_proj`, [E, I, hidden]],
    [`${b}.experts.down_proj_bias`, [E, hidden]],
  ];
}

/** The sinks parameter of layer `i` ([Hq], one logit per query head). */
export const sinksName = (i: number): string => `model.layers.${i}.self_attn.sinks`;

const f32 = (t: Tensor) => (t.dtype === "f32" ? t : cast(t, "f32"));

/**
 * Attention with sinks from the fused op's outputs: o [B, L, Hq, D] and lse [B, Hq, L] of the plain softmax, sinks
 * [Hq] → o · sigmoid(lse − sink), i.e. each row renormalised with exp(sink) added to its denominator.
 */
export function withSinks(o: Tensor, lse: Tensor, sinks: Tensor): Tensor {
  const [B, Hq, L] = lse.shape;
  const keep = sigmoid(add(lse, mul(reshape(f32(sinks), [Hq, 1]), -1))); // [B, Hq, L]
  return mul(o, reshape(permute(keep, [0, 2, 1]), [B, L, Hq, 1]));
}

/** One layer's fused experts as {@link traceGptOssMoe} reads them (f32 or, frozen, the stored 16-bit dtype). */
export interface GptOssExpertWeights {
  /** [E, H, 2I]: x · W, gate and up columns interleaved. */
  gateUp: Tensor;
  /** [E, 2I]. */
  gateUpBias: Tensor;
  /** [E, I, H]. */
  down: Tensor;
  /** [E, H]. */
  downBias: Tensor;
}

/** Σ_j topkWeight[n, j] · expert_{topkIdx[n, j]}(x[n]) for x [..., H], topkIdx [..., k] i32 → [..., H] f32. */
export type GptOssExperts = (x: Tensor, topkIdx: Tensor, topkWeight: Tensor, w: GptOssExpertWeights) => Tensor;

/**
 * The clamped SwiGLU of gate_up rows [..., 2I] (gate, up interleaved) → [..., I]: gate clamped above at 7, up to
 * [−7, 7], (up + 1) · gate · sigmoid(1.702 · gate).
 */
export function gptOssAct(gu: Tensor): Tensor {
  const lead = gu.shape.slice(0, -1), I = gu.shape[gu.rank - 1] / 2;
  const y = reshape(gu, [...lead, I, 2]); // interleaved: (gate, up) pairs
  const gate = minimum(reshape(slice(y, -1, 0, 1), [...lead, I]), GPT_OSS_LIMIT);
  const up = maximum(minimum(reshape(slice(y, -1, 1, 2), [...lead, I]), GPT_OSS_LIMIT), -GPT_OSS_LIMIT);
  return mul(add(up, 1), mul(gate, sigmoid(mul(gate, GPT_OSS_ALPHA))));
}

/**
 * gpt_oss's experts with sparse dispatch (moe.ts `dispatchExperts`): the N·k assignments sorted by expert, each
 * projection one `grouped_matmul` over the sorted rows with the weights as stored ([E, in, out], x · W: no transpose,
 * no copy), each row's expert biases gathered by its expert id (an `embedding` lookup, whose gradient scatter-adds the
 * rows back into the [E, ·] bias) and added after its matmul. A sorted row's expert id is the id of the assignment it
 * holds, put in place by scattering the ids to their rows `pos` (embedding_bwd, a permutation: exact, O(N·k)); rows of
 * an id outside [0, E) look up nothing.
 */
export const gptOssExperts: GptOssExperts = (x, topkIdx, topkWeight, w) => {
  const E = w.gateUp.shape[0], R = topkIdx.shape.reduce((a, b) => a * b, 1);
  return dispatchExperts(x, topkIdx, topkWeight, E, (xs, order) => {
    const ids = cast(reshape(topkIdx, [R, 1]), "f32");
    const rowExpert = reshape(cast(embeddingBwd(reshape(order.pos, [R]), ids, R), "i32"), [R]);
    const bias = (b: Tensor) => embedding(f32(b), rowExpert);
    const gu = add(groupedMatmul(xs, w.gateUp, order.offsets), bias(w.gateUpBias)); // [N·k, 2I]
    return add(groupedMatmul(gptOssAct(gu), w.down, order.offsets), bias(w.downBias)); // [N·k, H]
  });
};

/**
 * Traces layer `i`'s block on x [B, L, H] → [B, L, H]; `weight` gives the parameters; `delta`, LoRA on the fused
 * expert parameters (PEFT's target_parameters, lora_experts.ts) in their own layout, added before the matmuls (the
 * router and the experts are not nn.Linear modules, so target_modules never reach them). `experts` computes the routed
 * experts (sparse {@link gptOssExperts}; the dense reference of tests is moe_dense.ts `denseGptOssExperts`). Returns
 * the routing for the load-balancing loss (softmax of the router logits and its top-k mask, as
 * load_balancing_loss_func computes them).
 */
export function traceGptOssMoe(
  m: MoeConfig,
  i: number,
  x: Tensor,
  weight: (name: string) => Tensor,
  delta?: (layer: number, proj: "gate_up" | "down") => Tensor | undefined,
  experts: GptOssExperts = gptOssExperts,
): { out: Tensor; route: Route } {
  const b = `model.layers.${i}.mlp`;
  const xf = f32(x);
  const logits = add(matmul(xf, f32(weight(`${b}.router.weight`)), { transB: true }), f32(weight(`${b}.router.bias`)));
  const probs = softmax(logits, -1); // [..., E]
  // torch.topk of the logits, as GptOssTopKRouter (the engine's topk: ties to the lower index), then a softmax over
  // the k chosen logits; the 0/1 mask is for the load-balancing loss only.
  const pick = topk(logits, m.topK);
  const topkM = indexMask(pick.indices, logits.shape[logits.rank - 1]);
  // A frozen 16-bit weight is read as stored by the grouped matmul; an adapter's s·ΔW is added to the f32 weight.
  const adapted = (p: "gate_up" | "down") => {
    const w = weight(`${b}.experts.${p}_proj`), d = delta?.(i, p);
    return d ? add(f32(w), d) : w;
  };
  const out = experts(xf, pick.indices, softmax(pick.values, -1), {
    gateUp: adapted("gate_up"),
    gateUpBias: weight(`${b}.experts.gate_up_proj_bias`),
    down: adapted("down"),
    downBias: weight(`${b}.experts.down_proj_bias`),
  });
  return { out, route: { probs, topk: topkM } };
}
