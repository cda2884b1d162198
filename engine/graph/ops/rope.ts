/**
 * Rotary position embedding in the Hugging Face "rotate_half" convention (transformers'
 * `apply_rotary_pos_emb`): dimension i pairs with i + r/2 over the first r = rotaryDim dims (Phi's
 * partial rotary leaves the rest as is), cos/sin of position · inv_freq[i], both times
 * `attentionScaling`.
 *
 * inv_freq is computed on the host in f64 ({@link ropeInvFreq}) and enters the graph as a constant (or an input fed
 * per run, one table or one per batch row) of 64-bit fixed-point turns per position ({@link ropeFreqWords}), so
 * kernels can reduce position · freq modulo one turn exactly in u32 arithmetic: the f32 kernel's cos/sin error does
 * not grow with the position (measured: max abs error 1.4e-7 against the f64 reference at positions near 128k, where
 * a plain f32 angle position·inv_freq is off by up to 6e-3). Positions may be any i32, negative too.
 * @module
 */
import { defineOp, registerOps } from "../op.ts";
import { op1, type Tensor } from "../graph.ts";
import { ropeAttentionScaling, ropeInvFreq, type RopeScaling } from "./rope_scaling.ts";

export { ropeAttentionScaling, ropeInvFreq, type RopeScaling, ropeScalingFromHf } from "./rope_scaling.ts";

/**
 * inv_freq as fixed-point turns per position: for each i, the fraction of inv_freq[i] / 2π as a
 * 64-bit number, two u32 words (high, low), so `[half, 2]`. Positions are integers, so the integer
 * part of the turns does not matter.
 */
export function ropeFreqWords(invFreq: ArrayLike<number>): number[] {
  const out: number[] = [];
  for (let i = 0; i < invFreq.length; i++) {
    const t = invFreq[i] / (2 * Math.PI);
    const f = t - Math.floor(t);
    const a = f * 2 ** 32;
    const hi = Math.floor(a);
    out.push(hi, Math.floor((a - hi) * 2 ** 32));
  }
  return out;
}

/** Attrs of the rope op: the cos/sin multiplier and the direction (inverse: sin negated). */
export interface RopeAttrs extends Record<string, unknown> {
  scale: number;
  inverse: boolean;
}

registerOps([
  // x [B, L, H, D] f32, positions [B, L] i32, freq [r/2, 2] u32 (ropeFreqWords), or [B, r/2, 2] (each row its own)
  //   -> y [B, L, H, D] f32
  // for i < r/2, with c = scale·cos(pos·inv_freq[i]), s = ±scale·sin(...) (minus when inverse):
  //   y[i] = x[i]·c − x[i + r/2]·s;  y[i + r/2] = x[i + r/2]·c + x[i]·s;  y[d] = x[d] for d >= r
  // grad: dx = rope(dy, positions, freq) with the inverse rotation (the transpose), same scale.
  defineOp<RopeAttrs>({
    name: "rope",
    infer: ([x, pos, freq]) => {
      if (x.shape.length !== 4 || x.dtype !== "f32") throw new Error(`x must be f32 [B, L, H, D]`);
      const [B, L, , D] = x.shape;
      if (pos.dtype !== "i32" || pos.shape.join() !== [B, L].join()) {
        throw new Error(`positions must be i32 [${B}, ${L}]`);
      }
      const fs = freq.shape.length === 3 && freq.shape[0] === B ? freq.shape.slice(1) : freq.shape;
      if (freq.dtype !== "u32" || fs.length !== 2 || fs[1] !== 2 || 2 * fs[0] > D) {
        throw new Error(`freq must be u32 [r/2, 2] or [${B}, r/2, 2] with r <= ${D} (see ropeFreqWords)`);
      }
      return [{ shape: x.shape, dtype: "f32" }];
    },
    ref: ([x, pos, freq], { scale, inverse }) => {
      const [B, L, H, D] = x.shape;
      const half = freq.shape.at(-2)!, perRow = freq.shape.length === 3;
      const out = Float64Array.from(x.data);
      for (let bl = 0; bl < B * L; bl++) {
        const p = pos.data[bl];
        const f = perRow ? Math.floor(bl / L) * 2 * half : 0;
        for (let i = 0; i < half; i++) {
          let t = p * (freq.data[f + 2 * i] * 2 ** -32 + freq.data[f + 2 * i + 1] * 2 ** -64);
          t -= Math.round(t);
          const c = Math.cos(2 * Math.PI * t) * scale;
          const s = Math.sin(2 * Math.PI * t) * scale * (inverse ? -1 : 1);
          for (let h = 0; h < H; h++) {
            const o = (bl * H + h) * D;
            const a = x.data[o + i], b = x.data[o + i + half];
            out[o + i] = a * c - b * s;
            out[o + i + half] = b * c + a * s;
          }
        }
      }
      return [out];
    },
    grad: (c) => [
      c.needs[0]
        ? op1("rope", [c.grads[0]!, c.inputs[1], c.inputs[2]], { ...c.attrs, inverse: !c.attrs.inverse })
        : undefined,
      undefined,
      undefined,
    ],
  }),
]);

/** Options of {@link rope}. */
export interface RopeOptions {
  /** rope_theta (default 10000). */
  theta?: number;
  /** Dims rotated, from the start (default D; Phi's partial_rotary_factor · D). Even. */
  rotaryDim?: number;
  /** Frequency scaling (default "default"). */
  scaling?: RopeScaling;
  /** Multiplier on cos and sin (transformers' attention_scaling; default: the scaling's, see ropeAttentionScaling). */
  attentionScaling?: number;
  /** Sequence length the frequencies are for ("dynamic" and "longrope" scaling; see ropeInvFreq). */
  seqLen?: number;
  /**
   * The frequency words [rotaryDim/2, 2] u32 ({@link ropeFreqWords}), or [B, rotaryDim/2, 2] for each row its own, as a
   * tensor, e.g. an input fed per step (see
   * engine/nn/rope_feed.ts), instead of the constant of `theta`, `scaling` and `seqLen`.
   */
  freq?: Tensor;
  /** Rotate by −angle instead (the transpose; what the gradient uses). */
  inverse?: boolean;
}

/**
 * Applies rotary position embedding to `x` [B, L, H, D] (the layout before attention) at integer
 * `positions` [B, L] (i32, any values, e.g. packed sequences restarting at 0).
 */
export function rope(x: Tensor, positions: Tensor, opts: RopeOptions = {}): Tensor {
  const D = x.shape[x.rank - 1];
  const rd = opts.rotaryDim ?? D;
  if (!Number.isInteger(rd) || rd < 2 || rd % 2 || rd > D) {
    throw new Error(`rope: rotaryDim must be an even integer in [2, ${D}], got ${rd}`);
  }
  const freq = opts.freq ??
    x.graph.constant(
      ropeFreqWords(ropeInvFreq(rd, opts.theta ?? 10000, opts.scaling, opts.seqLen)),
      [rd / 2, 2],
      "u32",
    );
  const scale = opts.attentionScaling ?? ropeAttentionScaling(opts.scaling ?? { type: "default" });
  if (!Number.isFinite(scale)) throw new Error(`rope: attentionScaling must be finite, got ${scale}`);
  return op1("rope", [x, positions, freq], { scale, inverse: !!opts.inverse });
}
