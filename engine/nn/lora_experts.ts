/**
 * LoRA on the routed experts' fused 3-D parameters, as PEFT (≥ 0.17) targets them with `target_parameters` and
 * computes them in `lora.ParamWrapper` on transformers 5.
 *
 * transformers 5 fuses a sparse layer's per-expert checkpoint weights at load time into
 * `model.layers.<i>.mlp.experts.gate_up_proj` [E, 2I, H] (each expert's gate rows, then its up rows) and
 * `.down_proj` [E, H, I] (mixtral's `block_sparse_moe` becomes `mlp`). PEFT reads such a parameter as
 * (experts, out, in) and keeps lora_A [r·E, in], lora_B [out, r·E]; the parameter becomes W + s·ΔW with
 * ΔW[e] = B_e · A_e, A_e = lora_A reshaped [E, r, in] at e, B_e = lora_B reshaped [out, r, E] at e (so expert e's
 * rank-j column is lora_B[:, j·E + e]), s = alpha / r (rsLoRA alpha / √r) — PEFT's
 * `einsum("o r e, e r i -> e o i")`. No dropout, DoRA or PiSSA there (PEFT refuses them on a ParamWrapper).
 *
 * gpt_oss stores its experts transposed (transformers' `is_transposed`): `gate_up_proj` [E, H, 2I] (gate and up
 * interleaved in its columns), `down_proj` [E, I, H]. PEFT then reads the parameter as (experts, in, out) without
 * swapping, keeps the same lora_A [r·E, in] / lora_B [out, r·E], and adds ΔW[e] = (B_e · A_e)ᵀ (its einsum
 * `"o r e, e r i -> e i o"`), so the delta has the parameter's own layout.
 *
 * Tensor keys: two targeted parameters of one module nest in registration order, so gate_up_proj's are saved under
 * `…mlp.experts.base_layer.lora_A.weight` and down_proj's under `…mlp.experts.lora_A.weight`; a lone one under
 * `…mlp.experts.lora_A.weight`.
 *
 * Whetstone keeps the experts as per-expert 2-D weights; {@link expertLoraDeltas} hands the MoE block s·ΔW stacked
 * over the experts ([E, rows, cols], computed once per layer and parameter in a graph), which it adds to its stack of
 * the experts' weights before the expert matmuls, whatever its dispatch. {@link mergeExpertDeltas} folds the adapter
 * into those weights for export.
 * @module
 */
import { matmul, mul, permute, reshape, slice, type Tensor } from "../graph/mod.ts";
import type { DecoderConfig } from "./config.ts";
import type { MoeConfig } from "./moe.ts";
import { gaussian, kaimingUniform } from "./lora_init.ts";
import type { Rng } from "../util/rng.ts";

/** transformers 5's fused expert parameters, in the order they are registered (and nested by PEFT). */
export const EXPERT_PARAMS = ["gate_up_proj", "down_proj"] as const;
/** One of {@link EXPERT_PARAMS}. */
export type ExpertParam = typeof EXPERT_PARAMS[number];

/** One targeted fused parameter of one sparse layer. */
export interface ExpertTarget {
  layer: number;
  param: ExpertParam;
  /** PEFT module path of its adapter tensors (`model.layers.<i>.mlp.experts[.base_layer]`). */
  module: string;
  /** PEFT's out and in features: [2I, H] for gate_up_proj, [H, I] for down_proj. */
  out: number;
  in: number;
  /** The parameter is stored (experts, in, out) (gpt_oss) rather than (experts, out, in). */
  transposed: boolean;
}

/** Whether a `lora_target` entry names a fused expert parameter (`experts.gate_up_proj`, `mlp.experts.down_proj`). */
export function isExpertParamName(t: string): boolean {
  return EXPERT_PARAMS.some((p) => t === `experts.${p}` || t.endsWith(`.experts.${p}`));
}

/**
 * The fused expert parameters `targetParameters` reach (PEFT's matching: the key `model.layers.<i>.mlp.experts.<p>`
 * equals the entry or ends with "." + entry), in layer order; throws naming an entry that matches none.
 */
export function expertTargets(c: DecoderConfig, targetParameters: readonly string[] | undefined): ExpertTarget[] {
  if (!targetParameters?.length) return [];
  const m = c.moe;
  if (!m) {
    throw new Error(
      `target_parameters ${JSON.stringify(targetParameters)}: this ${c.family} model has no fused expert parameters`,
    );
  }
  const transposed = c.family === "gpt_oss";
  const out: ExpertTarget[] = [], used = new Set<string>();
  for (let i = 0; i < m.sparse.length; i++) {
    if (!m.sparse[i]) continue;
    const hit = EXPERT_PARAMS.filter((p) => {
      const key = `model.layers.${i}.mlp.experts.${p}`;
      const by = targetParameters.filter((t) => key === t || key.endsWith(`.${t}`));
      by.forEach((t) => used.add(t));
      return by.length > 0;
    });
    hit.forEach((param, k) => {
      const module = `model.layers.${i}.mlp.experts` + ".base_layer".repeat(hit.length - 1 - k);
      const [o, n] = param === "gate_up_proj" ? [2 * m.intermediate, c.hidden] : [c.hidden, m.intermediate];
      out.push({ layer: i, param, module, out: o, in: n, transposed });
    });
  }
  const unused = targetParameters.filter((t) => !used.has(t));
  if (unused.length) {
    throw new Error(
      `target_parameters ${JSON.stringify(unused)} match no fused expert parameter of this ${c.family} model ` +
        `(they are model.layers.<i>.mlp.experts.${EXPERT_PARAMS.join(" / ")} of its sparse layers)`,
    );
  }
  return out;
}

/** Throws on what PEFT's lora.ParamWrapper refuses beside fused expert parameters: dropout, DoRA, PiSSA. */
export function checkExpertLora(
  targetParameters: readonly string[],
  dropout: number,
  dora: boolean,
  init: unknown,
): void {
  const bad = dropout > 0
    ? `lora_dropout ${dropout} (must be 0)`
    : dora
    ? "use_dora"
    : typeof init === "string" && init.startsWith("pissa")
    ? "pissa_init"
    : undefined;
  if (bad) {
    throw new Error(`LoRA on fused expert parameters (${targetParameters.join(", ")}) does not work with ${bad}`);
  }
}

/**
 * A new adapter's tensors as PEFT initialises nn.Linear(in, r·E) and nn.Linear(r·E, out): lora_A kaiming-uniform
 * (gaussian: N(0, 1/r²)), lora_B zero (init false: kaiming-uniform too).
 */
export function initExpertLora(
  sh: { A: number[]; B: number[] },
  r: number,
  init: unknown,
  rng: Rng,
): { A: Float32Array; B: Float32Array } {
  const [re, n] = sh.A, out = sh.B[0];
  const A = init === "gaussian" ? gaussian(re, n, 1 / r, rng) : kaimingUniform(re, n, rng);
  return { A, B: init === false ? kaimingUniform(out, re, rng) : new Float32Array(out * re) };
}

/** Rank and scale of a target's adapter: r / alpha, or the config's `gateUp` pair for gate_up_proj (rank_pattern). */
export function expertRank(
  t: ExpertTarget,
  cfg: { r: number; alpha: number; useRslora: boolean; gateUp?: { r: number; alpha: number } },
): { r: number; scale: number } {
  const { r, alpha } = t.param === "gate_up_proj" && cfg.gateUp ? cfg.gateUp : cfg;
  return { r, scale: cfg.useRslora ? alpha / Math.sqrt(r) : alpha / r };
}

/** PEFT's shapes of a target's tensors: lora_A [r·E, in], lora_B [out, r·E]. */
export function expertLoraShapes(t: ExpertTarget, r: number, experts: number): { A: number[]; B: number[] } {
  return { A: [r * experts, t.in], B: [t.out, r * experts] };
}

/**
 * s · ΔW [E, out, in] from lora_A [r·E, in] and lora_B [out, r·E] (PEFT's einsum "o r e, e r i -> e o i"); with
 * `transposed`, [E, in, out] ("o r e, e r i -> e i o").
 */
export function expertDelta(A: Tensor, B: Tensor, experts: number, r: number, s: number, transposed = false): Tensor {
  const a = reshape(A, [experts, r, A.shape[1]]);
  const b = permute(reshape(B, [B.shape[0], r, experts]), [2, 0, 1]); // [E, out, r]
  return mul(transposed ? matmul(a, b, { transA: true, transB: true }) : matmul(b, a), s);
}

/** One expert projection of a sparse layer, or (`gate_up`) the whole fused gate_up_proj. */
export type ExpertProj = "gate" | "up" | "down" | "gate_up";

/**
 * The adapter's s·ΔW of a sparse layer's expert projection, stacked over the experts: [E, I, H] for gate and up (the
 * two row halves of gate_up_proj's delta), [E, H, I] for down; undefined where no target covers it. `gate_up` and
 * (gpt_oss) `down` give a fused parameter's delta in its own layout ([E, H, 2I] and [E, I, H] for gpt_oss). The MoE block
 * adds it to its stack of the experts' weights before the expert matmuls (W + s·ΔW, as PEFT parametrizes the fused
 * parameter). Each delta is traced once per graph; slicing it per expert would make the backward O(E²) (a slice's
 * gradient is padded to the whole tensor), so a dispatch takes the stacked form. `keys(module)` gives a target's
 * lora_A / lora_B keys, looked up through `weight`.
 */
export function expertLoraDeltas(
  m: MoeConfig,
  targets: readonly ExpertTarget[],
  rank: (t: ExpertTarget) => { r: number; scale: number },
  weight: (name: string) => Tensor,
  keys: (module: string) => { A: string; B: string },
): (layer: number, proj: ExpertProj) => Tensor | undefined {
  const deltas = new Map<ExpertTarget, Tensor>();
  const delta = (t: ExpertTarget) => {
    let d = deltas.get(t);
    if (!d) {
      const k = keys(t.module), { r, scale } = rank(t);
      deltas.set(t, d = expertDelta(weight(k.A), weight(k.B), m.experts, r, scale, t.transposed));
    }
    return d;
  };
  return (layer, proj) => {
    const param: ExpertParam = proj === "down" ? "down_proj" : "gate_up_proj";
    const t = targets.find((t) => t.layer === layer && t.param === param);
    if (!t) return undefined;
    const d = delta(t), I = m.intermediate;
    if (t.transposed && (proj === "gate" || proj === "up")) {
      throw new Error(`LoRA on experts: ${proj} is interleaved in gpt_oss's fused gate_up_proj; take gate_up`);
    }
    return proj === "down" || proj === "gate_up" ? d : proj === "gate" ? slice(d, 1, 0, I) : slice(d, 1, I, 2 * I);
  };
}

/**
 * Folds the adapter into per-expert checkpoint weights in place: for each target and expert e,
 * W_e += s · B_e · A_e (summed in f64) on the gate / up / down weight it covers. `get` returns a weight's values.
 */
export function mergeExpertDeltas(
  m: MoeConfig,
  targets: readonly ExpertTarget[],
  tensors: { A: (t: ExpertTarget) => ArrayLike<number>; B: (t: ExpertTarget) => ArrayLike<number> },
  rank: (t: ExpertTarget) => { r: number; scale: number },
  get: (name: string) => Float32Array | Float64Array,
): void {
  const [gate, up, down] = m.names, E = m.experts;
  for (const t of targets) {
    const A = tensors.A(t), B = tensors.B(t), n = t.in, cfg = rank(t), r = cfg.r;
    const b = `model.layers.${t.layer}.${m.block}.experts`;
    if (t.transposed) { // gpt_oss: the checkpoint holds the fused [E, in, out] parameter; W[e] += s · (B_e · A_e)ᵀ
      const W = get(`${b}.${t.param}`), o = t.out;
      for (let e = 0; e < E; e++) {
        for (let i = 0; i < n; i++) {
          for (let q = 0; q < o; q++) {
            let d = 0;
            for (let j = 0; j < r; j++) d += B[q * r * E + j * E + e] * A[(e * r + j) * n + i];
            W[(e * n + i) * o + q] += cfg.scale * d;
          }
        }
      }
      continue;
    }
    for (let e = 0; e < E; e++) {
      const parts: [Float32Array | Float64Array, number][] = t.param === "down_proj"
        ? [[get(`${b}.${e}.${down}.weight`), 0]]
        : [[get(`${b}.${e}.${gate}.weight`), 0], [get(`${b}.${e}.${up}.weight`), m.intermediate]];
      for (const [W, first] of parts) {
        const rows = W.length / n;
        for (let o = 0; o < rows; o++) {
          for (let i = 0; i < n; i++) {
            let d = 0;
            for (let j = 0; j < r; j++) d += B[(first + o) * r * E + j * E + e] * A[(e * r + j) * n + i];
            W[o * n + i] += cfg.scale * d;
          }
        }
      }
    }
  }
}
