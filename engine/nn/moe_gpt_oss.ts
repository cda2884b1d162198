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
 * Dispatch is dense as in moe.ts: every expert runs on every token from the layer's stacked weights, weighted by the
 * token's routing weight (0 outside its top k), so an expert's weights get gradient only from its tokens. The bias of
 * down_proj enters as Σ_e w_e · b_e = w · B_down, exactly what transformers adds per routed expert.
 *
 * Released gpt-oss checkpoints store the experts in MXFP4 (`quantization_config.quant_method` "mxfp4", tensors
 * `*_blocks` / `*_scales`): the loader dequantizes them to bf16 (mxfp4.ts), as transformers does with
 * `Mxfp4Config(dequantize=True)`, which is how LLaMA-Factory loads them; any other quantization_config is refused.
 * @module
 */
import {
  add,
  cast,
  div,
  matmul,
  maximum,
  minimum,
  mul,
  permute,
  reshape,
  sigmoid,
  slice,
  softmax,
  sum,
  type Tensor,
} from "../graph/mod.ts";
import { type MoeConfig, type Route, topkMask } from "./moe.ts";

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

/**
 * Traces layer `i`'s block on x [B, L, H] → [B, L, H]; `weight` gives the parameters; `delta`, LoRA on the fused
 * expert parameters (PEFT's target_parameters, lora_experts.ts) in their own layout, added before the matmuls (the
 * router and the experts are not nn.Linear modules, so target_modules never reach them). Returns the routing for the
 * load-balancing loss (softmax of the router logits and its top-k mask, as load_balancing_loss_func computes them).
 */
export function traceGptOssMoe(
  m: MoeConfig,
  i: number,
  x: Tensor,
  weight: (name: string) => Tensor,
  delta?: (layer: number, proj: "gate_up" | "down") => Tensor | undefined,
): { out: Tensor; route: Route } {
  const b = `model.layers.${i}.mlp`, E = m.experts, I = m.intermediate, H = x.shape[x.rank - 1];
  const lead = x.shape.slice(0, -1);
  const xf = f32(x);
  const logits = add(matmul(xf, f32(weight(`${b}.router.weight`)), { transB: true }), f32(weight(`${b}.router.bias`)));
  const probs = softmax(logits, -1); // [..., E]
  const topk = topkMask(logits, m.topK); // torch.topk of the logits, as GptOssTopKRouter (ties to the lower index)
  const sel = mul(probs, topk);
  const w = div(sel, sum(sel, -1, true)); // softmax over the k selected logits
  // Experts stacked: gate_up [E, H, 2I] → [H, E·2I]; down [E, I, H] → [E·I, H].
  const adapted = (p: "gate_up" | "down") => {
    const w = f32(weight(`${b}.experts.${p}_proj`)), d = delta?.(i, p);
    return d ? add(w, d) : w;
  };
  const gu = reshape(permute(adapted("gate_up"), [1, 0, 2]), [H, E * 2 * I]);
  let y = add(matmul(xf, gu), reshape(f32(weight(`${b}.experts.gate_up_proj_bias`)), [E * 2 * I])); // [..., E·2I]
  y = reshape(y, [...lead, E, I, 2]); // interleaved: (gate, up) pairs
  const gate = minimum(reshape(slice(y, -1, 0, 1), [...lead, E, I]), GPT_OSS_LIMIT);
  const up = maximum(minimum(reshape(slice(y, -1, 1, 2), [...lead, E, I]), GPT_OSS_LIMIT), -GPT_OSS_LIMIT);
  const a = mul(add(up, 1), mul(gate, sigmoid(mul(gate, GPT_OSS_ALPHA)))); // [..., E, I]
  const aw = reshape(mul(a, reshape(w, [...lead, E, 1])), [...lead, E * I]);
  const down = reshape(adapted("down"), [E * I, H]);
  const out = add(matmul(aw, down), matmul(w, f32(weight(`${b}.experts.down_proj_bias`)))); // [..., H]
  return { out, route: { probs, topk } };
}
