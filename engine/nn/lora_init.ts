/**
 * Host-side initialisation of LoRA adapters, as PEFT initialises them: A kaiming-uniform(a = √5) and B zero
 * (`init_lora_weights=True`), A ~ N(0, 1/r²) and B zero ("gaussian"), both kaiming-uniform (`False`), and PiSSA
 * (the principal singular triplets of W: A = diag(√(S/s))·Vᵀ_r, B = U_r·diag(√(S/s)), W ← W − s·B·A) through an
 * exact one-sided Jacobi SVD ("pissa") or a seeded randomized subspace iteration ("pissa_niter_N", the scheme of
 * torch.svd_lowrank that PEFT calls, with N power iterations). Everything is deterministic for a seed, in f64.
 * @module
 */
import { Rng } from "../util/rng.ts";

/** [rows, cols] kaiming-uniform with a = √5 as `nn.Linear` does: U(−1/√cols, 1/√cols). */
export function kaimingUniform(rows: number, cols: number, rng: Rng): Float32Array {
  const bound = 1 / Math.sqrt(cols);
  return Float32Array.from({ length: rows * cols }, () => (2 * rng.uniform() - 1) * bound);
}

/** [rows, cols] of N(0, std²). */
export function gaussian(rows: number, cols: number, std: number, rng: Rng): Float32Array {
  return Float32Array.from({ length: rows * cols }, () => std * rng.normal());
}

/** Top singular triplets: U [m, k] and V [n, k] row-major (vectors as columns), S [k] descending. */
export interface Svd {
  U: Float64Array;
  S: Float64Array;
  V: Float64Array;
  k: number;
}

/** Transpose of a row-major [m, n] matrix. */
function transpose(a: Float64Array, m: number, n: number): Float64Array {
  const t = new Float64Array(m * n);
  for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) t[j * m + i] = a[i * n + j];
  return t;
}

/** Full thin SVD of a row-major [m, n] matrix by one-sided Jacobi rotations (exact to f64 rounding). */
export function jacobiSvd(a: Float64Array, m: number, n: number): Svd {
  if (m < n) {
    const t = jacobiSvd(transpose(a, m, n), n, m);
    return { U: t.V, S: t.S, V: t.U, k: t.k };
  }
  // Columns of a (length m) are rotated until mutually orthogonal; V accumulates the rotations.
  const cols = Array.from({ length: n }, (_, j) => Float64Array.from({ length: m }, (_, i) => a[i * n + j]));
  const vs = Array.from({ length: n }, (_, j) => Float64Array.from({ length: n }, (_, i) => (i === j ? 1 : 0)));
  const dot = (x: Float64Array, y: Float64Array) => {
    let s = 0;
    for (let i = 0; i < x.length; i++) s += x[i] * y[i];
    return s;
  };
  const rotate = (x: Float64Array, y: Float64Array, c: number, s: number) => {
    for (let i = 0; i < x.length; i++) {
      const xi = x[i], yi = y[i];
      x[i] = c * xi - s * yi;
      y[i] = s * xi + c * yi;
    }
  };
  for (let sweep = 0; sweep < 80; sweep++) {
    let rotated = false;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const alpha = dot(cols[p], cols[p]), beta = dot(cols[q], cols[q]), gamma = dot(cols[p], cols[q]);
        if (gamma === 0 || Math.abs(gamma) <= 1e-15 * Math.sqrt(alpha * beta)) continue;
        rotated = true;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t), s = c * t;
        rotate(cols[p], cols[q], c, s);
        rotate(vs[p], vs[q], c, s);
      }
    }
    if (!rotated) break;
  }
  const sig = cols.map((c) => Math.sqrt(dot(c, c)));
  const order = sig.map((_, i) => i).sort((x, y) => sig[y] - sig[x] || x - y);
  const U = new Float64Array(m * n), V = new Float64Array(n * n), S = new Float64Array(n);
  order.forEach((j, k) => {
    S[k] = sig[j];
    for (let i = 0; i < m; i++) U[i * n + k] = sig[j] > 0 ? cols[j][i] / sig[j] : 0;
    for (let i = 0; i < n; i++) V[i * n + k] = vs[j][i];
  });
  return { U, S, V, k: n };
}

/** Orthonormalises the columns of a row-major [m, q] matrix in place (Gram–Schmidt, twice). */
function orthonormalize(y: Float64Array, m: number, q: number): void {
  for (let j = 0; j < q; j++) {
    let n0 = 0;
    for (let i = 0; i < m; i++) n0 += y[i * q + j] ** 2;
    for (let pass = 0; pass < 2; pass++) {
      for (let p = 0; p < j; p++) {
        let d = 0;
        for (let i = 0; i < m; i++) d += y[i * q + p] * y[i * q + j];
        for (let i = 0; i < m; i++) y[i * q + j] -= d * y[i * q + p];
      }
    }
    let nn = 0;
    for (let i = 0; i < m; i++) nn += y[i * q + j] ** 2;
    const inv = nn > 1e-24 * Math.max(n0, 1e-300) ? 1 / Math.sqrt(nn) : 0; // a dependent column becomes zero
    for (let i = 0; i < m; i++) y[i * q + j] *= inv;
  }
}

/** a [m, n] · b [n, q] → [m, q] (row-major); with `transA`, aᵀ [n, m] · b [m, q] → [n, q]. */
function matmulHost(a: Float64Array, m: number, n: number, b: Float64Array, q: number, transA = false): Float64Array {
  const out = new Float64Array((transA ? n : m) * q);
  for (let i = 0; i < m; i++) {
    for (let k = 0; k < n; k++) {
      const w = a[i * n + k];
      if (w === 0) continue;
      if (transA) { for (let j = 0; j < q; j++) out[k * q + j] += w * b[i * q + j]; }
      else for (let j = 0; j < q; j++) out[i * q + j] += w * b[k * q + j];
    }
  }
  return out;
}

/**
 * The top `k` singular triplets of a row-major [m, n] matrix by randomized subspace iteration (the scheme of
 * `torch.svd_lowrank(W, q, niter)`: Q = orth(W·Ω), then `niter` times Q = orth(W·orth(Wᵀ·Q)), then the exact SVD
 * of Qᵀ·W), with `oversample` extra columns; Ω is drawn from `rng`.
 */
export function randomizedSvd(
  a: Float64Array,
  m: number,
  n: number,
  k: number,
  niter: number,
  rng: Rng,
  oversample = 8,
): Svd {
  const q = Math.min(k + oversample, m, n);
  const omega = Float64Array.from({ length: n * q }, () => rng.normal());
  let y = matmulHost(a, m, n, omega, q); // [m, q]
  orthonormalize(y, m, q);
  for (let it = 0; it < niter; it++) {
    const z = matmulHost(a, m, n, y, q, true); // [n, q]
    orthonormalize(z, n, q);
    y = matmulHost(a, m, n, z, q);
    orthonormalize(y, m, q);
  }
  const bt = matmulHost(a, m, n, y, q, true); // (Qᵀ W)ᵀ [n, q]
  const s = jacobiSvd(bt, n, q); // bt = Ub S Vbᵀ → Qᵀ W = Vb S Ubᵀ
  const u = matmulHost(y, m, q, s.V, q); // U = Q · Vb [m, q]
  const kk = Math.min(k, q);
  const U = new Float64Array(m * kk), V = new Float64Array(n * kk);
  for (let i = 0; i < m; i++) for (let j = 0; j < kk; j++) U[i * kk + j] = u[i * q + j];
  for (let i = 0; i < n; i++) for (let j = 0; j < kk; j++) V[i * kk + j] = s.U[i * q + j];
  return { U, S: s.S.slice(0, kk), V, k: kk };
}

/** What {@link pissaInit} returns: lora_A [r, in], lora_B [out, r] and the residual base weight [out, in]. */
export interface PissaInit {
  A: Float32Array;
  B: Float32Array;
  residual: Float64Array;
}

/**
 * PiSSA initialisation of one linear (PEFT's `pissa_init`): W [out, in] = U S Vᵀ; with Sr = S[:r] / scale,
 * A = diag(√Sr)·Vᵀ_r, B = U_r·diag(√Sr) and the residual W − scale·B·A. `niter` < 0 takes the exact SVD
 * (O(out·in·min(out, in)) per Jacobi sweep on the host: fine for small models, slow for large ones).
 */
export function pissaInit(
  w: ArrayLike<number>,
  out: number,
  inp: number,
  r: number,
  scale: number,
  niter: number,
  rng: Rng,
): PissaInit {
  if (r > Math.min(out, inp)) throw new Error(`PiSSA needs r <= min(out, in); got r = ${r} for [${out}, ${inp}]`);
  const a = Float64Array.from(w);
  const svd = niter < 0 ? jacobiSvd(a, out, inp) : randomizedSvd(a, out, inp, r, niter, rng);
  const A = new Float32Array(r * inp), B = new Float32Array(out * r);
  const root = Array.from({ length: r }, (_, i) => Math.sqrt(svd.S[i] / scale));
  for (let i = 0; i < r; i++) for (let k = 0; k < inp; k++) A[i * inp + k] = root[i] * svd.V[k * svd.k + i];
  for (let j = 0; j < out; j++) for (let i = 0; i < r; i++) B[j * r + i] = svd.U[j * svd.k + i] * root[i];
  const residual = Float64Array.from(a);
  addLowRank(residual, out, inp, B, A, r, -scale);
  return { A, B, residual };
}

/** w [out, in] += scale · B [out, r] · A [r, in], in place. */
export function addLowRank(
  w: Float64Array,
  out: number,
  inp: number,
  B: ArrayLike<number>,
  A: ArrayLike<number>,
  r: number,
  scale: number,
): void {
  for (let j = 0; j < out; j++) {
    for (let i = 0; i < r; i++) {
      const b = scale * B[j * r + i];
      if (b === 0) continue;
      for (let k = 0; k < inp; k++) w[j * inp + k] += b * A[i * inp + k];
    }
  }
}

/** L2 norm of each row of w [out, in]: DoRA's magnitude at init. */
export function rowNorms(w: ArrayLike<number>, out: number, inp: number): Float32Array {
  const m = new Float32Array(out);
  for (let j = 0; j < out; j++) {
    let s = 0;
    for (let k = 0; k < inp; k++) s += w[j * inp + k] ** 2;
    m[j] = Math.sqrt(s);
  }
  return m;
}
