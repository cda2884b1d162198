/**
 * The exact path of svd.ts, for small matrices: Householder QR, one-sided Jacobi SVD, and the thin SVD built
 * from them, all in f64 on the host.
 *
 * @example
 * ```ts
 * const { ut, s, vt } = thinSvd(a, 20, 8); // rows of ut [8, 20] and vt [8, 8]; s descending
 * ```
 * @module
 */

/** Transpose of a row-major [rows, cols] matrix. */
export function transposeOf(a: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const t = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) t[j * rows + i] = a[i * cols + j];
  return t;
}

/**
 * Householder QR of q columns of length p (p ≥ q), given as rows of `cols` [q, p] (i.e. Xᵀ row-major).
 * Returns Q's columns as rows [q, p] (orthonormal even when X is rank-deficient) and R [q, q] row-major.
 */
export function householderQr(cols: Float64Array, q: number, p: number): { qt: Float64Array; r: Float64Array } {
  if (p < q) throw new Error(`householderQr: expected at least as many rows (${p}) as columns (${q})`);
  const x = cols.slice();
  const tau = new Float64Array(q);
  const r = new Float64Array(q * q);
  for (let j = 0; j < q; j++) {
    const xj = j * p;
    let norm = 0;
    for (let i = j; i < p; i++) norm += x[xj + i] * x[xj + i];
    norm = Math.sqrt(norm);
    const alpha = x[xj + j] > 0 ? -norm : norm;
    if (norm === 0) {
      tau[j] = 0;
      r[j * q + j] = 0;
    } else {
      x[xj + j] -= alpha;
      let beta = 0;
      for (let i = j; i < p; i++) beta += x[xj + i] * x[xj + i];
      tau[j] = beta > 0 ? 2 / beta : 0;
      r[j * q + j] = alpha;
    }
    for (let c = j + 1; c < q; c++) {
      const xc = c * p;
      if (tau[j] !== 0) {
        let s = 0;
        for (let i = j; i < p; i++) s += x[xj + i] * x[xc + i];
        s *= tau[j];
        for (let i = j; i < p; i++) x[xc + i] -= s * x[xj + i];
      }
      r[j * q + c] = x[xc + j];
    }
  }
  const qt = new Float64Array(q * p);
  for (let c = 0; c < q; c++) qt[c * p + c] = 1;
  for (let j = q - 1; j >= 0; j--) {
    if (tau[j] === 0) continue;
    const xj = j * p;
    for (let c = j; c < q; c++) {
      const qc = c * p;
      let s = 0;
      for (let i = j; i < p; i++) s += x[xj + i] * qt[qc + i];
      s *= tau[j];
      for (let i = j; i < p; i++) qt[qc + i] -= s * x[xj + i];
    }
  }
  return { qt, r };
}

/**
 * SVD of a square q×q matrix by one-sided Jacobi (Hestenes): `a` row-major. Returns u, v as columns stored
 * as rows ([q, q] each: row i is the i-th singular vector) and s descending. Accurate to a few ulps of σ₁.
 * Columns for zero singular values are completed to an orthonormal basis.
 */
export function jacobiSvd(a: Float64Array, q: number): { ut: Float64Array; s: Float64Array; vt: Float64Array } {
  const w = transposeOf(a, q, q); // columns of a as rows
  const v = new Float64Array(q * q);
  for (let i = 0; i < q; i++) v[i * q + i] = 1;
  for (let sweep = 0; sweep < 80; sweep++) {
    let rotated = false;
    for (let i = 0; i < q - 1; i++) {
      for (let j = i + 1; j < q; j++) {
        const wi = i * q, wj = j * q;
        let al = 0, be = 0, ga = 0;
        for (let k = 0; k < q; k++) {
          const x = w[wi + k], y = w[wj + k];
          al += x * x;
          be += y * y;
          ga += x * y;
        }
        if (ga === 0 || Math.abs(ga) <= 1e-15 * Math.sqrt(al * be)) continue;
        rotated = true;
        const zeta = (be - al) / (2 * ga);
        const t = (zeta >= 0 ? 1 : -1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t), s = c * t;
        for (let k = 0; k < q; k++) {
          const x = w[wi + k], y = w[wj + k];
          w[wi + k] = c * x - s * y;
          w[wj + k] = s * x + c * y;
          const vx = v[wi + k], vy = v[wj + k];
          v[wi + k] = c * vx - s * vy;
          v[wj + k] = s * vx + c * vy;
        }
      }
    }
    if (!rotated) break;
  }
  const norms = Array.from({ length: q }, (_, i) => {
    let n = 0;
    for (let k = 0; k < q; k++) n += w[i * q + k] * w[i * q + k];
    return Math.sqrt(n);
  });
  const order = norms.map((_, i) => i).sort((x, y) => norms[y] - norms[x]);
  const ut = new Float64Array(q * q), vt = new Float64Array(q * q), s = new Float64Array(q);
  const tiny = (norms[order[0]] || 1) * 1e-300;
  order.forEach((src, dst) => {
    s[dst] = norms[src];
    for (let k = 0; k < q; k++) vt[dst * q + k] = v[src * q + k];
    if (norms[src] > tiny) { for (let k = 0; k < q; k++) ut[dst * q + k] = w[src * q + k] / norms[src]; }
  });
  completeBasis(ut, q, q, order.map((src) => norms[src] > tiny));
  return { ut, s, vt };
}

/** Fills the rows of `rows` [k, p] not marked `ok` with unit vectors orthogonal to all others (Gram–Schmidt). */
function completeBasis(rows: Float64Array, k: number, p: number, ok: boolean[]): void {
  let e = 0;
  for (let i = 0; i < k; i++) {
    if (ok[i]) continue;
    for (; e < p; e++) {
      const cand = new Float64Array(p);
      cand[e] = 1;
      for (let pass = 0; pass < 2; pass++) {
        for (let j = 0; j < k; j++) {
          if (j === i || (!ok[j] && j > i)) continue;
          let d = 0;
          for (let t = 0; t < p; t++) d += rows[j * p + t] * cand[t];
          for (let t = 0; t < p; t++) cand[t] -= d * rows[j * p + t];
        }
      }
      let n = 0;
      for (let t = 0; t < p; t++) n += cand[t] * cand[t];
      if (n > 1e-6) {
        n = Math.sqrt(n);
        for (let t = 0; t < p; t++) rows[i * p + t] = cand[t] / n;
        ok[i] = true;
        e++;
        break;
      }
    }
  }
}

/** Row-major product [a, b] · [b, c] of small matrices. */
export function mm(x: Float64Array, y: Float64Array, a: number, b: number, c: number): Float64Array {
  const out = new Float64Array(a * c);
  for (let i = 0; i < a; i++) {
    for (let t = 0; t < b; t++) {
      const xv = x[i * b + t];
      if (xv === 0) continue;
      for (let j = 0; j < c; j++) out[i * c + j] += xv * y[t * c + j];
    }
  }
  return out;
}

/** Thin SVD of a row-major [m, n] matrix (exact path): rows of ut [k, m] and vt [k, n], k = min(m, n). */
export function thinSvd(
  a: ArrayLike<number>,
  m: number,
  n: number,
): { ut: Float64Array; s: Float64Array; vt: Float64Array } {
  if (m < n) {
    const t = thinSvd(transposeOf(a, m, n), n, m);
    return { ut: t.vt, s: t.s, vt: t.ut };
  }
  // A [m, n], m ≥ n: A = Q R; R = Ur S Vrᵀ; U = Q Ur.
  const { qt, r } = householderQr(transposeOf(a, m, n), n, m);
  const j = jacobiSvd(r, n);
  // rows of U: (Q Ur)ᵀ = Urᵀ Qᵀ = ut_j [n, n] · qt [n, m]
  return { ut: mm(j.ut, qt, n, n, m), s: j.s, vt: j.vt };
}
