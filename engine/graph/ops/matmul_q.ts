/**
 * Matmul with a quantized weight (QLoRA's frozen base): y = x · dequant(W)ᵀ for W [N, K] stored in bitsandbytes'
 * NF4 / FP4 (optionally double-quantized) or int8 absmax blocks (engine/quant). The weight is dequantized inside
 * the kernels, block by block; it is never a graph value in f32.
 *
 * Inputs: x, then the stored tensors of the weight in {@link quantLayout} order — packed words [ceil(N·K·bits/32)]
 * i32 and absmax [ceil(N·K/blocksize)] f32, or with double quantization packed words, absmax codes
 * [ceil(nb/4)] i32, nested absmax [ceil(nb/256)] f32 and offset [1] f32.
 * @module
 */
import { defineOp, type RefTensor, registerOps } from "../op.ts";
import { type Graph, op1, type Tensor } from "../graph.ts";
import { fmtInfo, isFloat, numel, type TensorInfo } from "../types.ts";
import { code4, dynamicMap, INV127, type QuantKind } from "../../quant/codes.ts";
import { NESTED_BLOCK } from "../../quant/blockwise.ts";
import { checkSpec, quantLayout, type QuantSpec } from "../../quant/weight.ts";
import { cast } from "./cast.ts";

/** Attrs of `matmul_q` and `dequant_q`. */
export interface MatmulQAttrs extends Record<string, unknown> {
  kind: QuantKind;
  blocksize: number;
  doubleQuant: boolean;
  /** Out and in features of W [N, K]. */
  N: number;
  K: number;
  /** false: x [..., K] → x · Wᵀ [..., N]; true: x [..., N] → x · W [..., K] (the input gradient). */
  trans: boolean;
}

/** A quantized weight in a graph: its spec, shape [N, K] and stored tensors ({@link quantLayout} order). */
export interface QWeight {
  readonly spec: QuantSpec;
  readonly shape: readonly [number, number];
  readonly tensors: readonly Tensor[];
}

/** Declares the stored tensors of a quantized weight as params `${name}${suffix}` of `g`. */
export function qweightParams(g: Graph, name: string, spec: QuantSpec, shape: readonly [number, number]): QWeight {
  const tensors = quantLayout(spec, shape).map((p) => g.param(`${name}${p.suffix}`, p.shape, p.dtype));
  return { spec, shape, tensors };
}

/** Checks the stored tensors of a quantized weight against its attrs. */
function checkStored(ins: readonly TensorInfo[], a: MatmulQAttrs): void {
  checkSpec(a);
  const want = quantLayout(a, [a.N, a.K]);
  if (ins.length !== want.length) {
    throw new Error(
      `a ${a.kind}${a.doubleQuant ? " double-quantized" : ""} weight has ${want.length} tensors, got ${ins.length}`,
    );
  }
  want.forEach((w, i) => {
    if (ins[i].dtype !== w.dtype || ins[i].shape.join() !== w.shape.join()) {
      throw new Error(`stored tensor ${w.suffix} must be [${w.shape.join(", ")}] ${w.dtype}, got ${fmtInfo(ins[i])}`);
    }
  });
}

const f = Math.fround;

/** The f32 absmax of every block from the stored tensors (double quantization undone as the kernels do it). */
export function refAbsmax(stored: readonly RefTensor[], a: MatmulQAttrs): Float64Array {
  if (!a.doubleQuant) return stored[1].data;
  const nb = Math.ceil((a.N * a.K) / a.blocksize);
  const [, codes, absmax2, offset] = stored;
  const dyn = dynamicMap();
  const out = new Float64Array(nb);
  for (let i = 0; i < nb; i++) {
    const q = (codes.data[i >> 2] >>> ((i & 3) * 8)) & 0xff;
    out[i] = f(f(dyn[q] * absmax2.data[Math.floor(i / NESTED_BLOCK)]) + offset.data[0]);
  }
  return out;
}

/** W [N·K] dequantized from the stored tensors (reference executor only). */
export function refDequant(stored: readonly RefTensor[], a: MatmulQAttrs): Float64Array {
  const n = a.N * a.K, words = stored[0].data, absmax = refAbsmax(stored, a);
  const out = new Float64Array(n);
  if (a.kind === "int8") {
    for (let e = 0; e < n; e++) {
      const q = (((words[e >> 2] >>> ((e & 3) * 8)) & 0xff) << 24) >> 24;
      out[e] = f(f(q * absmax[Math.floor(e / a.blocksize)]) * INV127);
    }
    return out;
  }
  const code = code4(a.kind);
  for (let e = 0; e < n; e++) {
    const byte = (words[e >> 3] >>> (((e >> 1) & 3) * 8)) & 0xff;
    out[e] = f(code[e & 1 ? byte & 15 : byte >> 4] * absmax[Math.floor(e / a.blocksize)]);
  }
  return out;
}

registerOps([
  // x [..., K], W stored -> y [..., N] = x · Wᵀ; trans: x [..., N] -> y [..., K] = x · W
  defineOp<MatmulQAttrs>({
    name: "matmul_q",
    infer: ([x, ...stored], a) => {
      checkStored(stored, a);
      if (!isFloat(x.dtype)) throw new Error(`x must be float, got ${x.dtype}`);
      const [inF, outF] = a.trans ? [a.N, a.K] : [a.K, a.N];
      if (x.shape.length < 1 || x.shape[x.shape.length - 1] !== inF) {
        throw new Error(`x must be [..., ${inF}] (W is [${a.N}, ${a.K}]${a.trans ? ", used untransposed" : ""})`);
      }
      return [{ shape: [...x.shape.slice(0, -1), outF], dtype: "f32" }];
    },
    ref: ([x, ...stored], a) => {
      const w = refDequant(stored, a);
      const R = a.trans ? a.N : a.K, C = a.trans ? a.K : a.N, M = numel(x.shape) / R;
      const out = new Float64Array(M * C);
      for (let m = 0; m < M; m++) {
        for (let c = 0; c < C; c++) {
          let s = 0;
          for (let r = 0; r < R; r++) s += x.data[m * R + r] * w[a.trans ? r * a.K + c : c * a.K + r];
          out[m * C + c] = s;
        }
      }
      return [out];
    },
    // dx = dy · W (or dy · Wᵀ when trans): the same op, transposed. The weight is frozen: no gradient.
    grad: (c) => {
      const [x, ...stored] = c.inputs;
      const dx = op1("matmul_q", [c.grads[0]!, ...stored], { ...c.attrs, trans: !c.attrs.trans });
      return [cast(dx, x.dtype), ...stored.map(() => undefined)];
    },
  }),
  // W stored -> W [N, K] f32 (for export, merging and tests; training graphs use matmul_q)
  defineOp<MatmulQAttrs>({
    name: "dequant_q",
    infer: (stored, a) => {
      checkStored(stored, a);
      return [{ shape: [a.N, a.K], dtype: "f32" }];
    },
    ref: (stored, a) => [refDequant(stored, a)],
  }),
]);

function attrsOf(w: QWeight, trans: boolean): MatmulQAttrs {
  return { ...w.spec, N: w.shape[0], K: w.shape[1], trans };
}

/**
 * x · dequant(W)ᵀ for a quantized W [N, K]: x [..., K] → [..., N] f32 (`trans`: x [..., N] → x · W [..., K]).
 * Differentiable w.r.t. x only.
 */
export function matmulQ(x: Tensor, w: QWeight, opts: { trans?: boolean } = {}): Tensor {
  return op1("matmul_q", [x, ...w.tensors], attrsOf(w, !!opts.trans));
}

/** The quantized weight dequantized to f32 [N, K] (not for training graphs: it materialises W). */
export function dequantQ(w: QWeight): Tensor {
  return op1("dequant_q", [...w.tensors], attrsOf(w, false));
}
