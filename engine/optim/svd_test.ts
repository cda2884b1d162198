import assert from "node:assert/strict";
import { householderQr, jacobiSvd, thinSvd, topSingular, transposeOf } from "./svd.ts";
import { ortGemm } from "./svd_ort.ts";
import { mulberry32 } from "../util/rng.ts";

const randn = (len: number, seed: number) => {
  const r = mulberry32(seed);
  return Float64Array.from({ length: len }, () => r() + r() + r() - 1.5);
};

/** A = U diag(s) Vᵀ with random orthonormal U [m, k], V [n, k] (k = s.length). */
function synth(m: number, n: number, s: number[], seed: number): Float64Array {
  const k = s.length;
  const u = householderQr(randn(k * m, seed), k, m).qt; // rows: k orthonormal vectors of length m
  const v = householderQr(randn(k * n, seed + 1), k, n).qt;
  const a = new Float64Array(m * n);
  for (let t = 0; t < k; t++) {
    for (let i = 0; i < m; i++) {
      const ui = s[t] * u[t * m + i];
      for (let j = 0; j < n; j++) a[i * n + j] += ui * v[t * n + j];
    }
  }
  return a;
}

function maxOrthoError(rows: Float64Array, k: number, p: number): number {
  let e = 0;
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) {
      let d = 0;
      for (let t = 0; t < p; t++) d += rows[i * p + t] * rows[j * p + t];
      e = Math.max(e, Math.abs(d - (i === j ? 1 : 0)));
    }
  }
  return e;
}

/** max over i of min(‖x_i − y_i‖, ‖x_i + y_i‖): equal up to the sign of each vector. */
function signFreeDiff(x: Float64Array, y: Float64Array, k: number, p: number): number {
  let e = 0;
  for (let i = 0; i < k; i++) {
    let dm = 0, dp = 0;
    for (let t = 0; t < p; t++) {
      dm = Math.max(dm, Math.abs(x[i * p + t] - y[i * p + t]));
      dp = Math.max(dp, Math.abs(x[i * p + t] + y[i * p + t]));
    }
    e = Math.max(e, Math.min(dm, dp));
  }
  return e;
}

Deno.test("svd: Householder QR is orthonormal and reproduces X, also rank-deficient", () => {
  const p = 30, q = 6;
  const cols = randn(q * p, 3);
  cols.set(cols.subarray(0, p), 2 * p); // column 2 = column 0
  const { qt, r } = householderQr(cols, q, p);
  assert.ok(maxOrthoError(qt, q, p) < 1e-13);
  for (let c = 0; c < q; c++) {
    for (let i = 0; i < p; i++) {
      let x = 0;
      for (let t = 0; t <= c; t++) x += qt[t * p + i] * r[t * q + c];
      assert.ok(Math.abs(x - cols[c * p + i]) < 1e-12);
    }
  }
});

Deno.test("svd: Jacobi and thin SVD recover a known decomposition (tall and wide)", () => {
  const s = [9, 5, 3, 2, 1.5, 1, 0.5, 0.25];
  for (const [m, n] of [[20, 8], [8, 20], [12, 12]]) {
    const a = synth(m, n, s, m * 7 + n);
    const t = thinSvd(a, m, n);
    const k = Math.min(m, n);
    for (let i = 0; i < s.length; i++) assert.ok(Math.abs(t.s[i] - s[i]) < 1e-12, `σ${i} ${t.s[i]} vs ${s[i]}`);
    for (let i = s.length; i < k; i++) assert.ok(t.s[i] < 1e-12);
    assert.ok(maxOrthoError(t.ut, k, m) < 1e-12, "U orthonormal (null space completed)");
    assert.ok(maxOrthoError(t.vt, k, n) < 1e-12, "V orthonormal");
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let x = 0;
        for (let c = 0; c < k; c++) x += t.ut[c * m + i] * t.s[c] * t.vt[c * n + j];
        assert.ok(Math.abs(x - a[i * n + j]) < 1e-12);
      }
    }
  }
  const j = jacobiSvd(new Float64Array(9), 3);
  assert.deepEqual([...j.s], [0, 0, 0]);
  assert.ok(maxOrthoError(j.ut, 3, 3) < 1e-14, "a zero matrix still gets orthonormal vectors");
});

Deno.test("svd: subspace iteration matches the exact path up to sign, JS and onnxruntime products", async () => {
  const m = 150, n = 110, r = 6;
  const s = Array.from({ length: 40 }, (_, i) => 10 * Math.pow(0.8, i));
  const a = synth(m, n, s, 11);
  const exact = await topSingular(a, m, n, r, { exactBelow: Infinity });
  assert.equal(exact.iterations, 0);
  for (const gemm of [undefined, await ortGemm()]) {
    const it = await topSingular(a, m, n, r, { exactBelow: 0, tol: 1e-12, gemm });
    assert.ok(it.iterations > 0 && it.residual <= 1e-12, `converged: ${it.iterations} its, residual ${it.residual}`);
    for (let i = 0; i < r; i++) assert.ok(Math.abs(it.s[i] - s[i]) < 1e-10);
    assert.ok(signFreeDiff(it.vt, exact.vt, r, n) < 1e-9, "right vectors");
    assert.ok(signFreeDiff(transposeOf(it.u, m, r), transposeOf(exact.u, m, r), r, m) < 1e-9, "left vectors");
    assert.ok(maxOrthoError(it.vt, r, n) < 1e-12);
    // The sign convention makes both paths return the same vectors, not just the same up to sign.
    for (let t = 0; t < r * n; t++) assert.ok(Math.abs(it.vt[t] - exact.vt[t]) < 1e-9);
  }
});

Deno.test("svd: subspace iteration on a matrix of rank below the block (a gradient of few tokens)", async () => {
  const m = 120, n = 90, r = 4;
  const s = [5, 3, 2, 1, 0.5];
  const a = synth(m, n, s, 21);
  const it = await topSingular(a, m, n, r, { exactBelow: 0, tol: 1e-12 });
  const exact = await topSingular(a, m, n, r, { exactBelow: Infinity });
  assert.ok(it.residual <= 1e-12 && it.iterations <= 3, `${it.iterations} its, residual ${it.residual}`);
  for (let i = 0; i < r; i++) assert.ok(Math.abs(it.s[i] - s[i]) < 1e-12);
  for (let t = 0; t < r * n; t++) assert.ok(Math.abs(it.vt[t] - exact.vt[t]) < 1e-9);
});

Deno.test("svd: rank is clamped to the smaller side; bad input is named", async () => {
  const a = synth(5, 3, [2, 1, 0.5], 4);
  const t = await topSingular(a, 5, 3, 16);
  assert.equal(t.s.length, 3);
  assert.equal(t.u.length, 15);
  await assert.rejects(() => topSingular(a, 4, 3, 2), /expected 4×3 = 12 values, got 15/);
  await assert.rejects(() => topSingular(a, 5, 3, 0), /rank must be a positive integer/);
});
