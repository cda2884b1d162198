/**
 * Merging an OFT adapter into the base weights, as PEFT's `merge_and_unload` does for OFT linears: the layer computes
 * (x · R) · Wᵀ with R block-diagonal, so the merged weight is W · Rᵀ, block by block (R from PEFT's Cayley–Neumann
 * series, computed here in f64 on the host; constrained OFT's weights projected first, as PEFT's `get_weight` does).
 * @module
 */
import type { Model } from "./model.ts";
import { COFT_EPS, coftProjectHost, OftAdapter, oftBlocks, oftKey } from "./oft.ts";

export { OftAdapter };

/** R [b, b] of one block's weights `w` (b(b−1)/2 values): I + 2Q + 2Q² + ... + Q^(terms−1), as in oft.ts. */
export function cayleyNeumannHost(w: ArrayLike<number>, b: number, terms: number): Float64Array {
  const Q = new Float64Array(b * b);
  let e = 0;
  for (let i = 0; i < b; i++) {
    for (let j = i + 1; j < b; j++, e++) {
      Q[i * b + j] = w[e];
      Q[j * b + i] = -w[e];
    }
  }
  const mm = (x: Float64Array, y: Float64Array) => {
    const z = new Float64Array(b * b);
    for (let i = 0; i < b; i++) {
      for (let k = 0; k < b; k++) {
        const v = x[i * b + k];
        if (v !== 0) { for (let j = 0; j < b; j++) z[i * b + j] += v * y[k * b + j]; }
      }
    }
    return z;
  };
  const R = new Float64Array(b * b);
  for (let i = 0; i < b; i++) R[i * b + i] = 1;
  const addTo = (x: Float64Array, s: number) => x.forEach((v, i) => R[i] += s * v);
  if (terms > 1) {
    addTo(Q, 2);
    if (terms > 2) {
      let P = mm(Q, Q);
      addTo(P, 2);
      for (let k = 3; k < terms - 1; k++) {
        P = mm(P, Q);
        addTo(P, 2);
      }
      P = mm(P, Q);
      addTo(P, 1);
    }
  }
  return R;
}

/** The base weights with the OFT rotations merged in (name → values, every base param, in the model's order). */
export async function mergeOft(model: Model, ad: OftAdapter): Promise<Map<string, Float32Array>> {
  const ex = model.executor, pre = model.prefix;
  const targets = new Set(ad.targets);
  const out = new Map<string, Float32Array>();
  for (const name of model.params.keys()) {
    const W = Float32Array.from(await ex.getParam(pre + name));
    const mod = name.endsWith(".weight") ? name.slice(0, -".weight".length) : "";
    if (targets.has(mod)) {
      const [o, inF] = model.params.get(name)!.shape;
      const { r, b } = oftBlocks(inF, ad.config);
      const w = Float32Array.from(await ex.getParam(pre + oftKey(mod)));
      // PEFT's get_weight projects constrained OFT's weights first.
      if (ad.config.coft) coftProjectHost(w, ad.config.blockShare ? 1 : r, ad.config.eps ?? COFT_EPS);
      const n = (b * (b - 1)) / 2;
      const merged = new Float32Array(W.length);
      for (let blk = 0; blk < r; blk++) {
        const R = cayleyNeumannHost(
          w.subarray((ad.config.blockShare ? 0 : blk) * n),
          b,
          ad.config.numCayleyNeumannTerms,
        );
        const off = blk * b;
        for (let a = 0; a < o; a++) {
          for (let k = 0; k < b; k++) {
            let s = 0;
            for (let c = 0; c < b; c++) s += W[a * inF + off + c] * R[k * b + c];
            merged[a * inF + off + k] = s;
          }
        }
      }
      out.set(name, merged);
    } else out.set(name, W);
  }
  return out;
}
