/**
 * GaLore (Zhao et al. 2024) as LLaMA-Factory runs it: galore_torch's `GaLoreAdamW` on every trainable param,
 * with `GaLoreProjector` on the 2-D weights of the targeted linear layers. Ported from jiaweizzhao/GaLore
 * (galore_torch/galore_projector.py, galore_torch/adamw.py); fixtures/galore/make_goldens.py holds the port
 * in torch that the goldens come from.
 *
 * One step of a projected weight W [m, n] with gradient G, traced as graph ops (one optimizer step stays one
 * graph; states are written with `assign` at its end):
 *
 *   R = project(G)                    right: G·Pᵀ [m, r]   left: Pᵀ·G [r, n]   full: Aᵀ·G·Bᵀ [r, r]
 *   m ← β1·m + (1−β1)·R;  v ← β2·v + (1−β2)·R²          (m, v have R's shape)
 *   W ← W − lr·√(1−β2ᵗ)/(1−β1ᵗ) · scale · back(m / (√v + eps))    back: N·P, P·N, A·N·B
 *   W ← W − lr·wd·W                                       (decoupled decay after the update, as galore_torch)
 *
 * Note the bias correction and eps are transformers' legacy AdamW's (eps added to √v, the step size carries
 * √(1−β2ᵗ)), not torch.optim.AdamW's; non-projected params in GaLore mode use the same rule (`projection`
 * omitted). P is a stored param, refreshed on the host from that step's gradient every `updateInterval`
 * steps, first at step 1 ({@link galoreRefreshDue}, {@link refreshProjection}); m and v are not reset then.
 * @module
 */
import { add, assign, div, graphOf, matmul, mul, pow, sqrt, sub, type Tensor, where } from "../graph/mod.ts";
import type { DecoderConfig } from "../nn/config.ts";
import { allLinearTargets, linearModules } from "../nn/lora.ts";
import { type Gemm, topSingular } from "./svd.ts";

/** galore_proj_type values. */
export const GALORE_PROJ_TYPES = ["std", "reverse_std", "right", "left", "full"] as const;
/** One of {@link GALORE_PROJ_TYPES}. */
export type GaloreProjType = typeof GALORE_PROJ_TYPES[number];

/** GaLore's settings (LLaMA-Factory's galore_* keys). */
export interface GaloreOptions {
  /** galore_rank (LF default 16). */
  rank: number;
  /** galore_update_interval (LF default 200). */
  updateInterval: number;
  /** galore_scale (LF default 2.0). */
  scale: number;
  /** galore_proj_type (LF default "std"). */
  projType: GaloreProjType;
}

/** LLaMA-Factory's defaults. */
export const GALORE_DEFAULTS: GaloreOptions = { rank: 16, updateInterval: 200, scale: 2.0, projType: "std" };

/** Which side a weight is projected on: right (G·Pᵀ), left (Pᵀ·G) or both (full). */
export type GaloreSide = "right" | "left" | "full";

/** Where and how a weight [m, n] is projected. */
export interface GaloreLayout {
  side: GaloreSide;
  /** Effective rank: min(rank, m, n) (torch slices the thin SVD). */
  rank: number;
  /** Shape of P (right: [r, n], left: [m, r], full: A [m, r]). */
  proj: [number, number];
  /** Shape of B for full ([r, n]). */
  projB?: [number, number];
  /** Shape of the projected gradient and of m, v. */
  low: [number, number];
}

/**
 * The side GaLoreProjector picks: std projects on the smaller side (right when m ≥ n), reverse_std on the larger.
 * (Official project_back re-derives the side from the low-rank shape; it agrees with this choice wherever it
 * does not fail, i.e. everywhere except reverse_std with m < n and rank ≥ m, where the official code raises.)
 */
export function galoreLayout(shape: readonly number[], opts: Pick<GaloreOptions, "rank" | "projType">): GaloreLayout {
  if (shape.length !== 2) throw new Error(`GaLore projects 2-D weights, got shape [${shape.join(", ")}]`);
  if (!GALORE_PROJ_TYPES.includes(opts.projType)) {
    throw new Error(`galore_proj_type must be one of ${GALORE_PROJ_TYPES.join(", ")}, got "${opts.projType}"`);
  }
  if (!Number.isInteger(opts.rank) || opts.rank < 1) {
    throw new Error(`galore_rank must be a positive integer, got ${opts.rank}`);
  }
  const [m, n] = shape;
  const r = Math.min(opts.rank, m, n);
  const tall = m >= n;
  const side: GaloreSide = opts.projType === "std"
    ? (tall ? "right" : "left")
    : opts.projType === "reverse_std"
    ? (tall ? "left" : "right")
    : opts.projType;
  if (side === "right") return { side, rank: r, proj: [r, n], low: [m, r] };
  if (side === "left") return { side, rank: r, proj: [m, r], low: [r, n] };
  return { side, rank: r, proj: [m, r], projB: [r, n], low: [r, r] };
}

/** Store names of a projected param's states (m, v of the low-rank shape; P, and B for full). */
export const galoreStateNames = (p: string) => ({
  proj: `${p}.galore_proj`,
  projB: `${p}.galore_proj_b`,
  m: `${p}.galore_exp_avg`,
  v: `${p}.galore_exp_avg_sq`,
});

/** Every stored state of a projected param with its shape (to initialise with zeros, save and restore). */
export function galoreStates(
  name: string,
  shape: readonly number[],
  opts: Pick<GaloreOptions, "rank" | "projType">,
): { name: string; shape: number[] }[] {
  const l = galoreLayout(shape, opts), s = galoreStateNames(name);
  return [
    { name: s.m, shape: l.low },
    { name: s.v, shape: l.low },
    { name: s.proj, shape: l.proj },
    ...(l.projB ? [{ name: s.projB, shape: l.projB }] : []),
  ];
}

/**
 * The params GaLore projects: the weight of every linear module whose path contains one of `target` (LF's
 * `any(target in name)`), "all" meaning every linear but lm_head (LF's find_all_linear_modules), restricted
 * to `trainable`. lm_head counts as a linear module only when it is not tied to the embeddings.
 */
export function galoreTargets(
  c: DecoderConfig,
  trainable: readonly string[],
  target: string | readonly string[],
): string[] {
  const list = (typeof target === "string" ? target.split(",") : [...target]).map((s) => s.trim()).filter(Boolean);
  if (!list.length) throw new Error('galore_target is empty; expected "all" or module names such as q_proj,v_proj');
  const targets = list.length === 1 && list[0] === "all" ? allLinearTargets(c) : list;
  const modules = [...linearModules(c).keys()];
  if (!c.tieEmbeddings) modules.push("lm_head");
  const want = new Set(trainable);
  const out = modules.filter((mod) => targets.some((t) => mod.includes(t))).map((mod) => `${mod}.weight`)
    .filter((p) => want.has(p));
  if (!out.length) {
    throw new Error(`galore_target ${JSON.stringify(list.join(","))} matches no trainable linear weight`);
  }
  return out;
}

/** Whether optimizer step `step` (1-based) refreshes the projection: galore_torch's `iter % gap == 0`, iter = step − 1. */
export function galoreRefreshDue(step: number, updateInterval: number): boolean {
  if (!Number.isInteger(updateInterval) || updateInterval < 1) {
    throw new Error(`galore_update_interval must be a positive integer, got ${updateInterval}`);
  }
  return (step - 1) % updateInterval === 0;
}

/**
 * The new projection of a weight of `shape` from its gradient `grad` (row-major, any scale): the top singular
 * vectors, right (Vhᵀ rows, [r, n]), left (U columns, [m, r]) or both for full. Data for the params named by
 * {@link galoreStateNames}, in their shapes. Singular vectors are defined up to sign; see svd.ts.
 */
export async function refreshProjection(
  grad: ArrayLike<number>,
  shape: readonly number[],
  opts: Pick<GaloreOptions, "rank" | "projType">,
  svd: { gemm?: Gemm; tol?: number } = {},
): Promise<{ proj: Float32Array; projB?: Float32Array }> {
  const l = galoreLayout(shape, opts);
  const [m, n] = shape;
  const t = await topSingular(grad, m, n, l.rank, svd);
  if (l.side === "right") return { proj: Float32Array.from(t.vt) };
  if (l.side === "left") return { proj: Float32Array.from(t.u) };
  return { proj: Float32Array.from(t.u), projB: Float32Array.from(t.vt) };
}

/** The stored projection of a weight, as graph params. */
export interface GaloreProjection {
  side: GaloreSide;
  /** P (right: [r, n], left: [m, r]) or A for full ([m, r]). */
  p: Tensor;
  /** B for full ([r, n]). */
  b?: Tensor;
  /** galore_scale. */
  scale: number;
}

/** GaloreProjector.project: G [m, n] → the low-rank gradient. */
export function projectGrad(g: Tensor, pr: GaloreProjection): Tensor {
  if (pr.side === "right") return matmul(g, pr.p, { transB: true });
  if (pr.side === "left") return matmul(pr.p, g, { transA: true });
  if (!pr.b) throw new Error("projectGrad: the full projection needs both A and B");
  return matmul(matmul(pr.p, g, { transA: true }), pr.b, { transB: true });
}

/** GaloreProjector.project_back without the scale: the low-rank tensor → [m, n]. */
export function projectBack(x: Tensor, pr: GaloreProjection): Tensor {
  if (pr.side === "right") return matmul(x, pr.p);
  if (pr.side === "left") return matmul(pr.p, x);
  if (!pr.b) throw new Error("projectBack: the full projection needs both A and B");
  return matmul(matmul(pr.p, x), pr.b);
}

/** Hyper-parameters of {@link galoreAdamw} (GaLoreAdamW's group: betas, eps, weight_decay). */
export interface GaloreAdamwOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/**
 * One GaLoreAdamW step of `param` (see the module doc), traced into the param's graph: `m`, `v` (params of the
 * low-rank shape when projected, else of the param's), `lr` and `step` (f32 scalars; step counts from 1),
 * `gradScale` (clipping) multiplying the gradient. Without `projection` it is galore_torch's AdamW on the full
 * param, as GaLore mode applies to the params it does not project. `gate`, an f32 scalar, skips the update where
 * it is 0.
 */
export function galoreAdamw(
  param: Tensor,
  grad: Tensor,
  m: Tensor,
  v: Tensor,
  lr: Tensor,
  step: Tensor,
  o: GaloreAdamwOptions,
  projection?: GaloreProjection,
  gradScale?: Tensor,
  gate?: Tensor,
): void {
  graphOf(param, grad, m, v, lr, step);
  for (const [k, x] of Object.entries(o)) {
    if (!Number.isFinite(x)) throw new Error(`galoreAdamw: ${k} must be finite, got ${x}`);
  }
  if (!(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1)) {
    throw new Error(`galoreAdamw: betas must be in [0, 1), got ${o.beta1} and ${o.beta2}`);
  }
  const g = gradScale ? mul(grad, gradScale) : grad;
  const low = projection ? projectGrad(g, projection) : g;
  if (low.shape.join() !== m.shape.join() || low.shape.join() !== v.shape.join()) {
    throw new Error(
      `galoreAdamw: m and v must be [${low.shape.join(", ")}] like the projected gradient, got ` +
        `[${m.shape.join(", ")}] and [${v.shape.join(", ")}]`,
    );
  }
  const m1 = add(mul(m, o.beta1), mul(low, 1 - o.beta1));
  const v1 = add(mul(v, o.beta2), mul(mul(low, low), 1 - o.beta2));
  const normGrad = div(m1, add(sqrt(v1), o.eps));
  const bc1 = sub(1, pow(o.beta1, step));
  const bc2 = sub(1, pow(o.beta2, step));
  let stepSize = div(mul(lr, sqrt(bc2)), bc1);
  let update = normGrad;
  if (projection) {
    update = projectBack(normGrad, projection);
    stepSize = mul(stepSize, projection.scale);
  }
  let p1 = sub(param, mul(update, stepSize));
  if (o.weightDecay > 0) p1 = sub(p1, mul(p1, mul(lr, o.weightDecay)));
  // A gate (fp16's finite check) keeps every value where it is 0.
  const keep = (old: Tensor, next: Tensor) => (gate ? where(gate, next, old) : next);
  assign(m, keep(m, m1));
  assign(v, keep(v, v1));
  assign(param, keep(param, p1));
}
