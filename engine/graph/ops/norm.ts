/**
 * Normalisation over the last axis: RMSNorm (Llama; Gemma's `1 + w` via `offset: 1`) and LayerNorm.
 * The forward ops also output the per-row statistics the backward ops reuse; each backward op gives
 * dx and the weight/bias gradients in one node (dw, db are column reductions over all rows).
 * @module
 */
import { defineOp, type RefTensor, registerOps } from "../op.ts";
import { graphOf, type Tensor } from "../graph.ts";
import { isFloat, numel, type TensorInfo } from "../types.ts";
import { add, mul, sub } from "./elementwise.ts";
import { expand, reshape } from "./shape.ts";
import { cast } from "./cast.ts";

/** rms_norm attrs. */
export interface RmsNormAttrs extends Record<string, unknown> {
  eps: number;
  /** Scale is `offset + w`: 0 for Llama, 1 for Gemma. Ignored without a weight. */
  offset: number;
}

/** rms_norm_bwd attrs: which gradients to produce (outputs in the order dx, dw). */
export interface RmsNormBwdAttrs extends RmsNormAttrs {
  dx: boolean;
  dw: boolean;
}

/** layer_norm attrs: whether the weight and the bias inputs are present (inputs x, w?, b?). */
export interface LayerNormAttrs extends Record<string, unknown> {
  eps: number;
  hasW: boolean;
  hasB: boolean;
}

/** layer_norm_bwd attrs (inputs dy, x, mean, rstd, w?; outputs dx?, dw?, db?). */
export interface LayerNormBwdAttrs extends Record<string, unknown> {
  hasW: boolean;
  dx: boolean;
  dw: boolean;
  db: boolean;
}

/** Rows and row length of a [..., D] tensor. */
export function rowsOfLastAxis(x: TensorInfo): { R: number; D: number } {
  if (x.shape.length < 1) throw new Error(`expected a tensor of rank >= 1, got a scalar`);
  const D = x.shape[x.shape.length - 1];
  return { R: D === 0 ? 0 : numel(x.shape) / D, D };
}

function checkVec(what: string, t: TensorInfo | undefined, D: number): void {
  if (!t) return;
  if (t.shape.length !== 1 || t.shape[0] !== D) throw new Error(`${what} must be [${D}], got [${t.shape.join(", ")}]`);
  if (!isFloat(t.dtype)) throw new Error(`${what} must be a float tensor, got ${t.dtype}`);
}

/** Statistic [...] broadcast against x [..., D]. */
function perRow(s: Tensor, x: Tensor): Tensor {
  return expand(reshape(s, [...s.shape, 1]), x.shape);
}

function addMaybe(a: Tensor | undefined, b: Tensor): Tensor {
  return a ? add(a, b) : b;
}

/** Gradient `g` (f32) cast to the dtype of the input it belongs to. */
const like = (g: Tensor, t: Tensor) => cast(g, t.dtype);

registerOps([
  // x [..., D], w [D]? -> y [..., D], rstd [...] f32
  // y = x · rstd · (offset + w), rstd = 1/√(mean(x²) + eps)
  defineOp<RmsNormAttrs>({
    name: "rms_norm",
    infer: ([x, w]) => {
      const { D } = rowsOfLastAxis(x);
      if (!isFloat(x.dtype)) throw new Error(`x must be a float tensor, got ${x.dtype}`);
      checkVec("weight", w, D);
      return [{ shape: x.shape, dtype: x.dtype }, { shape: x.shape.slice(0, -1), dtype: "f32" }];
    },
    ref: ([x, w], { eps, offset }) => {
      const { R, D } = rowsOfLastAxis(x);
      const y = new Float64Array(R * D), rstd = new Float64Array(R);
      for (let r = 0; r < R; r++) {
        let ss = 0;
        for (let j = 0; j < D; j++) ss += x.data[r * D + j] ** 2;
        const rs = 1 / Math.sqrt(ss / D + eps);
        rstd[r] = rs;
        for (let j = 0; j < D; j++) y[r * D + j] = x.data[r * D + j] * rs * (w ? offset + w.data[j] : 1);
      }
      return [y, rstd];
    },
    // dx = rstd · (gy − n · mean(gy · n)), gy = dy · (offset + w), n = x · rstd; dw = Σ_rows dy · n.
    // A gradient on rstd adds d rstd/dx = −rstd³ · x / D.
    grad: (c) => {
      const [x, w] = c.inputs;
      const rstd = c.outputs[1];
      const [gy, gr] = c.grads;
      const needX = c.needs[0], needW = !!w && c.needs[1];
      let dx: Tensor | undefined, dw: Tensor | undefined;
      if (gy && (needX || needW)) {
        const attrs: RmsNormBwdAttrs = { eps: c.attrs.eps, offset: c.attrs.offset, dx: needX, dw: needW };
        const outs = graphOf(x).apply("rms_norm_bwd", w ? [gy, x, rstd, w] : [gy, x, rstd], attrs);
        if (needX) dx = like(outs[0], x);
        if (needW) dw = like(outs[needX ? 1 : 0], w);
      }
      if (gr && needX) {
        const D = x.shape[x.rank - 1];
        const k = mul(gr, mul(mul(rstd, mul(rstd, rstd)), -1 / D));
        dx = addMaybe(dx, like(mul(cast(x, "f32"), perRow(k, x)), x));
      }
      return [dx, dw];
    },
  }),
  // dy [..., D], x [..., D], rstd [...], w [D]? -> dx [..., D] f32 (if attrs.dx), dw [D] f32 (if attrs.dw)
  defineOp<RmsNormBwdAttrs>({
    name: "rms_norm_bwd",
    infer: ([, x, , w], { dx, dw }) => {
      if (dw && !w) throw new Error("dw needs the weight input");
      const out: TensorInfo[] = [];
      if (dx) out.push({ shape: x.shape, dtype: "f32" });
      if (dw) out.push({ shape: [x.shape[x.shape.length - 1]], dtype: "f32" });
      if (!out.length) throw new Error("rms_norm_bwd needs dx or dw (or both) in its attrs");
      return out;
    },
    ref: ([dy, x, rstd, w], a) => {
      const { R, D } = rowsOfLastAxis(x);
      const dx = new Float64Array(R * D), dw = new Float64Array(D);
      for (let r = 0; r < R; r++) {
        const rs = rstd.data[r], o = r * D;
        let s = 0;
        for (let j = 0; j < D; j++) s += dy.data[o + j] * (w ? a.offset + w.data[j] : 1) * x.data[o + j] * rs;
        const m = s / D;
        for (let j = 0; j < D; j++) {
          const n = x.data[o + j] * rs;
          dx[o + j] = rs * (dy.data[o + j] * (w ? a.offset + w.data[j] : 1) - n * m);
          dw[j] += dy.data[o + j] * n;
        }
      }
      return [...(a.dx ? [dx] : []), ...(a.dw ? [dw] : [])];
    },
  }),
  // x [..., D], w [D]?, b [D]? -> y [..., D], mean [...] f32, rstd [...] f32
  // y = (x − mean) · rstd · w + b, rstd = 1/√(var + eps) (biased variance)
  defineOp<LayerNormAttrs>({
    name: "layer_norm",
    infer: (ins, { hasW, hasB }) => {
      const x = ins[0];
      const { D } = rowsOfLastAxis(x);
      if (!isFloat(x.dtype)) throw new Error(`x must be a float tensor, got ${x.dtype}`);
      if (ins.length !== 1 + (hasW ? 1 : 0) + (hasB ? 1 : 0)) {
        throw new Error(`expected ${1 + +hasW + +hasB} inputs (x, w?, b?), got ${ins.length}`);
      }
      checkVec("weight", hasW ? ins[1] : undefined, D);
      checkVec("bias", hasB ? ins[hasW ? 2 : 1] : undefined, D);
      const stat = { shape: x.shape.slice(0, -1), dtype: "f32" as const };
      return [{ shape: x.shape, dtype: x.dtype }, stat, stat];
    },
    ref: (ins, { eps, hasW, hasB }) => {
      const x = ins[0];
      const w: RefTensor | undefined = hasW ? ins[1] : undefined;
      const b: RefTensor | undefined = hasB ? ins[hasW ? 2 : 1] : undefined;
      const { R, D } = rowsOfLastAxis(x);
      const y = new Float64Array(R * D), mean = new Float64Array(R), rstd = new Float64Array(R);
      for (let r = 0; r < R; r++) {
        const o = r * D;
        let s = 0;
        for (let j = 0; j < D; j++) s += x.data[o + j];
        const mu = s / D;
        let v = 0;
        for (let j = 0; j < D; j++) v += (x.data[o + j] - mu) ** 2;
        const rs = 1 / Math.sqrt(v / D + eps);
        mean[r] = mu;
        rstd[r] = rs;
        for (let j = 0; j < D; j++) {
          y[o + j] = (x.data[o + j] - mu) * rs * (w ? w.data[j] : 1) + (b ? b.data[j] : 0);
        }
      }
      return [y, mean, rstd];
    },
    // dx = rstd · (gy − mean(gy) − n · mean(gy · n)), gy = dy · w, n = (x − mean) · rstd;
    // dw = Σ_rows dy · n, db = Σ_rows dy. Gradients on the statistics add g_mean / D and
    // g_rstd · (−rstd³ (x − mean) / D).
    grad: (c) => {
      const { hasW, hasB } = c.attrs;
      const x = c.inputs[0];
      const w = hasW ? c.inputs[1] : undefined;
      const bi = hasB ? (hasW ? 2 : 1) : -1;
      const [, mean, rstd] = c.outputs;
      const [gy, gm, gr] = c.grads;
      const needX = c.needs[0], needW = hasW && c.needs[1], needB = hasB && c.needs[bi];
      const res: (Tensor | undefined)[] = c.inputs.map(() => undefined);
      if (gy && (needX || needW || needB)) {
        const attrs: LayerNormBwdAttrs = { hasW, dx: needX, dw: needW, db: needB };
        const outs = graphOf(x).apply("layer_norm_bwd", w ? [gy, x, mean, rstd, w] : [gy, x, mean, rstd], attrs);
        let k = 0;
        if (needX) res[0] = like(outs[k++], x);
        if (needW) res[1] = like(outs[k++], w!);
        if (needB) res[bi] = like(outs[k++], c.inputs[bi]);
      }
      if (needX && (gm || gr)) {
        const D = x.shape[x.rank - 1];
        let t: Tensor | undefined;
        if (gm) t = perRow(mul(gm, 1 / D), x);
        if (gr) {
          const k = mul(gr, mul(mul(rstd, mul(rstd, rstd)), -1 / D));
          t = addMaybe(t, mul(sub(cast(x, "f32"), perRow(mean, x)), perRow(k, x)));
        }
        res[0] = addMaybe(res[0], like(t!, x));
      }
      return res;
    },
  }),
  // dy [..., D], x [..., D], mean [...], rstd [...], w [D]? -> dx [..., D]?, dw [D]?, db [D]? (all f32)
  defineOp<LayerNormBwdAttrs>({
    name: "layer_norm_bwd",
    infer: ([, x, , , w], { dx, dw, db }) => {
      if (dw && !w) throw new Error("dw needs the weight input");
      const D = x.shape[x.shape.length - 1];
      const out: TensorInfo[] = [];
      if (dx) out.push({ shape: x.shape, dtype: "f32" });
      if (dw) out.push({ shape: [D], dtype: "f32" });
      if (db) out.push({ shape: [D], dtype: "f32" });
      if (!out.length) throw new Error("layer_norm_bwd needs dx, dw or db in its attrs");
      return out;
    },
    ref: ([dy, x, mean, rstd, w], a) => {
      const { R, D } = rowsOfLastAxis(x);
      const dx = new Float64Array(R * D), dw = new Float64Array(D), db = new Float64Array(D);
      for (let r = 0; r < R; r++) {
        const rs = rstd.data[r], mu = mean.data[r], o = r * D;
        let s1 = 0, s2 = 0;
        for (let j = 0; j < D; j++) {
          const g = dy.data[o + j] * (w ? w.data[j] : 1);
          s1 += g;
          s2 += g * (x.data[o + j] - mu) * rs;
        }
        for (let j = 0; j < D; j++) {
          const n = (x.data[o + j] - mu) * rs;
          const g = dy.data[o + j] * (w ? w.data[j] : 1);
          dx[o + j] = rs * (g - s1 / D - n * (s2 / D));
          dw[j] += dy.data[o + j] * n;
          db[j] += dy.data[o + j];
        }
      }
      return [...(a.dx ? [dx] : []), ...(a.dw ? [dw] : []), ...(a.db ? [db] : [])];
    },
  }),
]);

/**
 * RMSNorm over the last axis: `x · rsqrt(mean(x²) + eps) · (offset + w)`.
 * x [..., D], w [D] (optional; f32, or bf16/f16 when it gets no gradient) -> [..., D].
 * `offset: 1` is Gemma's `(1 + w)` form.
 */
export function rmsNorm(x: Tensor, w?: Tensor, opts: { eps?: number; offset?: number } = {}): Tensor {
  const attrs: RmsNormAttrs = { eps: opts.eps ?? 1e-6, offset: opts.offset ?? 0 };
  return graphOf(x).apply("rms_norm", w ? [x, w] : [x], attrs)[0];
}

/**
 * LayerNorm over the last axis: `(x − mean) / √(var + eps) · w + b` with the biased variance.
 * x [..., D], w [D]?, b [D]? -> [..., D].
 */
export function layerNorm(x: Tensor, w?: Tensor, b?: Tensor, opts: { eps?: number } = {}): Tensor {
  const attrs: LayerNormAttrs = { eps: opts.eps ?? 1e-5, hasW: !!w, hasB: !!b };
  const ins = [x, ...(w ? [w] : []), ...(b ? [b] : [])];
  return graphOf(...ins).apply("layer_norm", ins, attrs)[0];
}
