/**
 * Top-r singular triplets of a matrix on the host, in f64: what GaLore needs to refresh its projection from
 * a gradient. Small matrices (or r close to the smaller side) take the exact path, a Householder QR and a
 * one-sided Jacobi SVD of the triangle; large ones take subspace iteration with Rayleigh–Ritz on an oversampled
 * block, iterated until every wanted triplet's residual ‖Aᵀuᵢ − σᵢvᵢ‖ is below `tol`·σ₁ (A vᵢ = σᵢ uᵢ holds
 * by construction). The two products with A per iteration go through a {@link Gemm}: plain JS by default,
 * or onnxruntime's f64 Gemm (svd_ort.ts), about ten times faster.
 *
 * Singular vectors are defined up to sign; each returned pair (uᵢ, vᵢ) is flipped so that the entry of vᵢ with
 * the largest magnitude is positive (a deterministic choice, not LAPACK's).
 *
 * @example
 * ```ts
 * const { u, s, vt } = await topSingular(grad, 4096, 11008, 16);
 * // u [4096, 16], s [16] descending, vt [16, 11008], all row-major
 * ```
 * @module
 */
import { mulberry32 } from "../util/rng.ts";
import { householderQr, jacobiSvd, mm, thinSvd, transposeOf } from "./svd_small.ts";

export { householderQr, jacobiSvd, thinSvd, transposeOf };

/**
 * Dense row-major f64 products, the only heavy work of the iteration: `xy` = x [a, b] · y [b, c] → [a, c] and
 * `xyt` = x [a, c] · y [b, c]ᵀ → [a, b].
 */
export interface Gemm {
  xy(x: Float64Array, y: Float64Array, a: number, b: number, c: number): Float64Array | Promise<Float64Array>;
  xyt(x: Float64Array, y: Float64Array, a: number, b: number, c: number): Float64Array | Promise<Float64Array>;
}

/** Plain JS products (about 1.6 GMAC/s here). */
export const jsGemm: Gemm = {
  xy: (x, y, a, b, c) => {
    const out = new Float64Array(a * c);
    for (let i = 0; i < a; i++) {
      const oo = i * c, xo = i * b;
      let t = 0;
      for (; t + 3 < b; t += 4) {
        const x0 = x[xo + t], x1 = x[xo + t + 1], x2 = x[xo + t + 2], x3 = x[xo + t + 3];
        const y0 = t * c, y1 = y0 + c, y2 = y1 + c, y3 = y2 + c;
        for (let j = 0; j < c; j++) out[oo + j] += x0 * y[y0 + j] + x1 * y[y1 + j] + x2 * y[y2 + j] + x3 * y[y3 + j];
      }
      for (; t < b; t++) {
        const xv = x[xo + t], yo = t * c;
        for (let j = 0; j < c; j++) out[oo + j] += xv * y[yo + j];
      }
    }
    return out;
  },
  xyt: (x, y, a, b, c) => {
    const out = new Float64Array(a * b);
    for (let i = 0; i < a; i++) {
      const xo = i * c;
      let r = 0;
      for (; r + 3 < b; r += 4) {
        const y0 = r * c, y1 = y0 + c, y2 = y1 + c, y3 = y2 + c;
        let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (let j = 0; j < c; j++) {
          const xv = x[xo + j];
          s0 += xv * y[y0 + j];
          s1 += xv * y[y1 + j];
          s2 += xv * y[y2 + j];
          s3 += xv * y[y3 + j];
        }
        out[i * b + r] = s0;
        out[i * b + r + 1] = s1;
        out[i * b + r + 2] = s2;
        out[i * b + r + 3] = s3;
      }
      for (; r < b; r++) {
        let s = 0;
        for (let j = 0; j < c; j++) s += x[xo + j] * y[r * c + j];
        out[i * b + r] = s;
      }
    }
    return out;
  },
};

/** Options of {@link topSingular}. */
export interface TopSvdOptions {
  /** Stop when max over the wanted triplets of ‖Aᵀuᵢ − σᵢvᵢ‖ ≤ tol·σ₁ (default 1e-9). */
  tol?: number;
  /** Iterations of the subspace iteration at most (default 200); the last residual is reported either way. */
  maxIter?: number;
  /** Extra block columns beyond r (default max(8, r/2)). */
  oversample?: number;
  /** Seed of the random start block (default 0). */
  seed?: number;
  /** Use the exact path when min(m, n) ≤ this (default max(64, 2·(r + oversample))). */
  exactBelow?: number;
  /** The dense products (default: JS loops; see svd_ort.ts for onnxruntime's). */
  gemm?: Gemm;
}

/** Top-r singular triplets: A ≈ u · diag(s) · vt. */
export interface TopSvd {
  /** Left singular vectors [m, r], row-major. */
  u: Float64Array;
  /** Singular values [r], descending. */
  s: Float64Array;
  /** Right singular vectors [r, n], row-major. */
  vt: Float64Array;
  /** max ‖Aᵀuᵢ − σᵢvᵢ‖ / σ₁ over the returned triplets (0 on the exact path). */
  residual: number;
  /** Subspace iterations run (0 on the exact path). */
  iterations: number;
}

/** Flips each pair so the largest-magnitude entry of its right vector is positive. */
function fixSigns(ut: Float64Array, vt: Float64Array, k: number, m: number, n: number): void {
  for (let i = 0; i < k; i++) {
    let best = 0;
    for (let t = 0; t < n; t++) if (Math.abs(vt[i * n + t]) > Math.abs(best)) best = vt[i * n + t];
    if (best < 0) {
      for (let t = 0; t < n; t++) vt[i * n + t] = -vt[i * n + t];
      for (let t = 0; t < m; t++) ut[i * m + t] = -ut[i * m + t];
    }
  }
}

function pack(ut: Float64Array, s: Float64Array, vt: Float64Array, r: number, m: number, n: number): {
  u: Float64Array;
  s: Float64Array;
  vt: Float64Array;
} {
  fixSigns(ut, vt, r, m, n);
  const u = new Float64Array(m * r);
  for (let i = 0; i < r; i++) for (let t = 0; t < m; t++) u[t * r + i] = ut[i * m + t];
  return { u, s: s.slice(0, r), vt: vt.slice(0, r * n) };
}

/** A standard normal block [k, p] from a seeded generator (Box–Muller). */
function gaussian(k: number, p: number, seed: number): Float64Array {
  const rnd = mulberry32(seed);
  const out = new Float64Array(k * p);
  for (let i = 0; i < out.length; i += 2) {
    const u1 = Math.max(rnd(), 1e-300), u2 = rnd();
    const rad = Math.sqrt(-2 * Math.log(u1));
    out[i] = rad * Math.cos(2 * Math.PI * u2);
    if (i + 1 < out.length) out[i + 1] = rad * Math.sin(2 * Math.PI * u2);
  }
  return out;
}

/** Cholesky factor L (lower, row-major) of a k×k Gram matrix; undefined when a pivot is ≤ 1e-13 of the largest. */
function cholesky(g: Float64Array, k: number): Float64Array | undefined {
  let big = 0;
  for (let i = 0; i < k; i++) big = Math.max(big, g[i * k + i]);
  if (!(big > 0)) return undefined;
  const l = new Float64Array(k * k);
  for (let j = 0; j < k; j++) {
    let d = g[j * k + j];
    for (let t = 0; t < j; t++) d -= l[j * k + t] * l[j * k + t];
    if (!(d > 1e-13 * big)) return undefined;
    const ljj = Math.sqrt(d);
    l[j * k + j] = ljj;
    for (let i = j + 1; i < k; i++) {
      let x = g[i * k + j];
      for (let t = 0; t < j; t++) x -= l[i * k + t] * l[j * k + t];
      l[i * k + j] = x / ljj;
    }
  }
  return l;
}

/** Inverse of a lower-triangular k×k matrix. */
function lowerInverse(l: Float64Array, k: number): Float64Array {
  const inv = new Float64Array(k * k);
  for (let c = 0; c < k; c++) {
    inv[c * k + c] = 1 / l[c * k + c];
    for (let i = c + 1; i < k; i++) {
      let x = 0;
      for (let t = c; t < i; t++) x += l[i * k + t] * inv[t * k + c];
      inv[i * k + c] = -x / l[i * k + i];
    }
  }
  return inv;
}

/**
 * The rows of x [k, p] orthonormalized: x = l · q, l [k, k] lower triangular. CholeskyQR2 (its products go
 * through `gemm`); Householder when the block is too ill-conditioned for it (e.g. a gradient of rank < k).
 */
async function orthRows(
  x: Float64Array,
  k: number,
  p: number,
  gemm: Gemm,
): Promise<{ q: Float64Array; l: Float64Array }> {
  const pass = async (y: Float64Array) => {
    const l = cholesky(await gemm.xyt(y, y, k, k, p), k);
    return l ? { q: await gemm.xy(lowerInverse(l, k), y, k, k, p), l } : undefined;
  };
  const a = await pass(x);
  const b = a && await pass(a.q);
  if (a && b) return { q: b.q, l: mm(a.l, b.l, k, k, k) };
  const h = householderQr(x, k, p);
  return { q: h.qt, l: transposeOf(h.r, k, k) };
}

/**
 * The top `r` singular triplets of `a` [m, n] (row-major), r clamped to min(m, n). See the module doc for the
 * method and the sign convention.
 */
export async function topSingular(
  a: ArrayLike<number>,
  m: number,
  n: number,
  r: number,
  opts: TopSvdOptions = {},
): Promise<TopSvd> {
  if (a.length !== m * n) throw new Error(`topSingular: expected ${m}×${n} = ${m * n} values, got ${a.length}`);
  if (!Number.isInteger(r) || r < 1) throw new Error(`topSingular: rank must be a positive integer, got ${r}`);
  const kMin = Math.min(m, n);
  r = Math.min(r, kMin);
  const p = opts.oversample ?? Math.max(8, Math.ceil(r / 2));
  const k = Math.min(kMin, r + p);
  const exactBelow = opts.exactBelow ?? Math.max(64, 2 * k);
  if (kMin <= exactBelow) {
    const t = thinSvd(a, m, n);
    return { ...pack(t.ut, t.s, t.vt, r, m, n), residual: 0, iterations: 0 };
  }
  const a64 = a instanceof Float64Array ? a : Float64Array.from(a);
  const gemm = opts.gemm ?? jsGemm;
  const tol = opts.tol ?? 1e-9, maxIter = opts.maxIter ?? 200;
  if (!(maxIter >= 1)) throw new Error(`topSingular: maxIter must be at least 1, got ${maxIter}`);
  // Rows of q: k orthonormal vectors of length m spanning A·Ω.
  let q = (await orthRows(await gemm.xyt(gaussian(k, n, opts.seed ?? 0), a64, k, m, n), k, m, gemm)).q;
  let prev: { q: Float64Array; ur: Float64Array; s: Float64Array; vt: Float64Array } | undefined;
  let residual = Infinity, it = 0;
  for (; it < maxIter; it++) {
    const y = await gemm.xy(q, a64, k, m, n); // (Aᵀ Q)ᵀ [k, n]
    if (prev) {
      const atu = await gemm.xy(prev.ur, y, k, k, n); // rows: (Aᵀ uᵢ)ᵀ, uᵢ = Q Urᵢ
      residual = 0;
      for (let i = 0; i < r; i++) {
        let d = 0;
        for (let t = 0; t < n; t++) {
          const e = atu[i * n + t] - prev.s[i] * prev.vt[i * n + t];
          d += e * e;
        }
        residual = Math.max(residual, Math.sqrt(d) / (prev.s[0] || 1));
      }
      if (residual <= tol) break;
    }
    const z = (await orthRows(y, k, n, gemm)).q; // Z [n, k] as rows
    const w = await gemm.xyt(z, a64, k, m, n); // (A Z)ᵀ [k, m]
    const o = await orthRows(w, k, m, gemm); // A Z = Q R with R = lᵀ
    q = o.q;
    const j = jacobiSvd(transposeOf(o.l, k, k), k); // R = Ur S Vrᵀ → A (Z Vr) = (Q Ur) S
    prev = { q, ur: j.ut, s: j.s, vt: await gemm.xy(j.vt, z, k, k, n) };
  }
  const ut = await gemm.xy(prev!.ur, prev!.q, k, k, m);
  return { ...pack(ut, prev!.s, prev!.vt, r, m, n), residual, iterations: it };
}
