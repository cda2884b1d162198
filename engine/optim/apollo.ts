/**
 * APOLLO (Zhu et al. 2024, "SGD-like Memory, AdamW-level Performance") as LLaMA-Factory's `use_apollo` runs it:
 * apollo-torch's `AdamW` (apollo_torch/apollo.py; read from the zhuhanqing/APOLLO fork yao-matrix/APOLLO at commit
 * c0043ea) with a random projection (`apollo_proj: random`) on the targeted linear weights, its plain AdamW (the
 * legacy-HF one GaLore uses, galore.ts `galoreAdamw` without projection) on the rest. One step of a projected weight W
 * [m, n] with gradient G, line by line as `AdamW.step` (t = step, from 1):
 *
 *   R = project(G)                 std: right (G·Pᵀ, P [r, n] when m ≥ n), else left (Pᵀ·G, P [m, r])
 *   m ← β1·m + (1−β1)·R;  v ← β2·v + (1−β2)·R²;  N = m / (√v + eps)
 *   s = ‖N‖ / (‖R‖ + 1e-8)         channel: per row of R when dim 0 ≥ dim 1 (norm over dim 1), else per column;
 *                                  tensor: whole-tensor norms
 *   S = G·s                        the raw gradient, scaled per channel (or as a whole)
 *   S ← S·√scale                   here when scale_front, else after the limiter
 *   limiter (Fira's norm-growth limiter, from step 2): l = max(‖S‖ / (prev + 1e-8), 1.01) / 1.01; S ← S / l;
 *                                  prev ← ‖S‖ before the division / l  (step 1: prev ← ‖S‖)
 *   W ← W − lr·√(1−β2ᵗ)/(1−β1ᵗ) · S;  W ← W − lr·wd·W
 *
 * P is a stored param, refreshed on the host every `update_proj_gap` steps (first at step 1) with fresh N(0, 1/r)
 * entries ({@link randomProjection}). apollo-torch draws them with torch's generator (`stable_randn` seeded from the
 * param's index, then `next_seed`); here a seeded generator of this file draws them, so runs agree with apollo-torch in
 * distribution, not bit for bit. m and v are not reset at a refresh (as in apollo-torch).
 * @module
 */
import { add, assign, div, graphOf, gt, maximum, mul, pow, sqrt, sub, sum, type Tensor, where } from "../graph/mod.ts";
import { galoreLayout, type GaloreProjection, projectGrad } from "./galore.ts";

/** apollo_proj_type values with a random projection (apollo-torch's random projector has no "full"). */
export const APOLLO_PROJ_TYPES = ["std", "reverse_std", "right", "left"] as const;

/** APOLLO's settings (LF's apollo_* keys). */
export interface ApolloOptions {
  /** apollo_rank (LF default 16). */
  rank: number;
  /** apollo_update_interval (LF default 200). */
  updateInterval: number;
  /** apollo_scale (LF default 32). */
  scale: number;
  /** apollo_proj_type (LF default std). */
  projType: typeof APOLLO_PROJ_TYPES[number];
  /** apollo_scale_type (LF default channel). */
  scaleType: "channel" | "tensor";
  /** apollo_scale_front (LF default false). */
  scaleFront: boolean;
}

/** Store names of a projected param's states. */
export const apolloStateNames = (p: string) => ({
  proj: `${p}.apollo_proj`,
  m: `${p}.apollo_exp_avg`,
  v: `${p}.apollo_exp_avg_sq`,
  scaled: `${p}.apollo_scaled_grad`,
});

/** Every stored state of a projected param with its shape. */
export function apolloStates(name: string, shape: readonly number[], o: Pick<ApolloOptions, "rank" | "projType">) {
  const l = galoreLayout(shape, o), s = apolloStateNames(name);
  return [
    { name: s.m, shape: l.low },
    { name: s.v, shape: l.low },
    { name: s.proj, shape: l.proj },
    { name: s.scaled, shape: [1] },
  ];
}

/** A deterministic N(0, 1) stream (xorshift128+ with Box-Muller) for `seed`. */
function gaussian(seed: number): () => number {
  let s0 = (seed * 0x9e3779b1) >>> 0 || 1, s1 = (seed ^ 0x85ebca6b) >>> 0 || 2, s2 = 0x27d4eb2f, s3 = 0x165667b1;
  const next = () => {
    const t = s0 ^ (s0 << 11);
    s0 = s1, s1 = s2, s2 = s3;
    s3 = (s3 ^ (s3 >>> 19) ^ (t ^ (t >>> 8))) >>> 0;
    return (s3 + 1) / 4294967297; // in (0, 1)
  };
  for (let i = 0; i < 16; i++) next();
  return () => Math.sqrt(-2 * Math.log(next())) * Math.cos(2 * Math.PI * next());
}

/**
 * A fresh random projection for a weight of `shape`: N(0, 1)/√r entries in P's shape (`galoreLayout(...).proj`), from
 * `seed` (the param's index) and `refresh` (how many refreshes came before), as `stable_randn(...) / sqrt(rank)`.
 */
export function randomProjection(
  shape: readonly number[],
  o: Pick<ApolloOptions, "rank" | "projType">,
  seed: number,
  refresh: number,
): Float32Array {
  const l = galoreLayout(shape, o), next = gaussian(seed * 1000003 + refresh);
  const out = new Float32Array(l.proj[0] * l.proj[1]), k = 1 / Math.sqrt(l.rank);
  for (let i = 0; i < out.length; i++) out[i] = next() * k;
  return out;
}

/** Hyper-parameters of {@link apolloAdamw}: AdamW's and the projection's. */
export interface ApolloAdamwOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  scale: number;
  scaleType: "channel" | "tensor";
  scaleFront: boolean;
}

const norm = (x: Tensor, axis?: number) => sqrt(axis === undefined ? sum(mul(x, x)) : sum(mul(x, x), axis, true));

/**
 * One APOLLO step of projected `param` (see the module doc): `m`, `v` of the projected gradient's shape, `proj` (P,
 * as `galoreLayout` lays it out), `scaled` ([1], the limiter's previous norm), `lr`, `step` f32 scalars; `gradScale`
 * multiplies the gradient; `gate` (fp16's finite check) keeps every value where it is 0.
 */
export function apolloAdamw(
  param: Tensor,
  grad: Tensor,
  st: { m: Tensor; v: Tensor; proj: Tensor; scaled: Tensor },
  side: GaloreProjection["side"],
  lr: Tensor,
  step: Tensor,
  o: ApolloAdamwOptions,
  gradScale?: Tensor,
  gate?: Tensor,
): void {
  graphOf(param, grad, st.m, st.v, st.proj, st.scaled, lr, step);
  for (const [k, x] of Object.entries(o)) {
    if (typeof x === "number" && !Number.isFinite(x)) throw new Error(`apollo: ${k} must be finite, got ${x}`);
  }
  const keep = (old: Tensor, next: Tensor) => (gate ? where(gate, next, old) : next);
  const g = gradScale ? mul(grad, gradScale) : grad;
  const low = projectGrad(g, { side, p: st.proj, scale: 1 });
  const m1 = add(mul(st.m, o.beta1), mul(low, 1 - o.beta1));
  const v1 = add(mul(st.v, o.beta2), mul(mul(low, low), 1 - o.beta2));
  const n = div(m1, add(sqrt(v1), o.eps));
  let factor: Tensor;
  if (o.scaleType === "channel") {
    const axis = low.shape[0] < low.shape[1] ? 0 : 1;
    factor = div(norm(n, axis), add(norm(low, axis), 1e-8)); // [1, n] or [m, 1]: broadcasts over G's columns / rows
  } else factor = div(norm(n), add(norm(low), 1e-8));
  const root = Math.sqrt(o.scale);
  let s = mul(g, factor);
  if (o.scaleFront) s = mul(s, root);
  const sNorm = norm(s);
  const prev = st.scaled;
  const limiter = where(gt(step, 1), div(maximum(div(sNorm, add(prev, 1e-8)), 1.01), 1.01), 1);
  s = div(s, limiter);
  const prev1 = div(sNorm, limiter);
  if (!o.scaleFront) s = mul(s, root);
  const bc1 = sub(1, pow(o.beta1, step)), bc2 = sub(1, pow(o.beta2, step));
  let p1 = sub(param, mul(s, div(mul(lr, sqrt(bc2)), bc1)));
  if (o.weightDecay > 0) p1 = sub(p1, mul(p1, mul(lr, o.weightDecay)));
  assign(st.m, keep(st.m, m1));
  assign(st.v, keep(st.v, v1));
  assign(st.scaled, keep(st.scaled, prev1));
  assign(param, keep(param, p1));
}
