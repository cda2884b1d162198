/**
 * Rotary position embedding in the Hugging Face "rotate_half" convention (transformers'
 * `apply_rotary_pos_emb`): dimension i pairs with i + r/2 over the first r = rotaryDim dims (Phi's
 * partial rotary leaves the rest as is), cos/sin of position · inv_freq[i], both times
 * `attentionScaling`.
 *
 * inv_freq is computed on the host in f64 ({@link ropeInvFreq}) and enters the graph as a constant of
 * 64-bit fixed-point turns per position ({@link ropeFreqWords}), so kernels can reduce position · freq
 * modulo one turn exactly in u32 arithmetic: the f32 kernel's cos/sin error does not grow with the
 * position (measured: max abs error 1.4e-7 against the f64 reference at positions near 128k, where
 * a plain f32 angle position·inv_freq is off by up to 6e-3). Positions may be any i32, negative too.
 * @module
 */
import { defineOp, registerOps } from "../op.ts";
import { op1, type Tensor } from "../graph.ts";

/** Frequency scaling, as transformers' `rope_scaling` ("default", "linear", "llama3"). */
export type RopeScaling =
  | { type: "default" }
  | { type: "linear"; factor: number }
  | {
    type: "llama3";
    factor: number;
    lowFreqFactor: number;
    highFreqFactor: number;
    originalMaxPositionEmbeddings: number;
  };

/**
 * Reads transformers' `rope_scaling` config dict (`rope_type` or `type`, snake_case keys) into a
 * {@link RopeScaling}; null/undefined means "default". Unsupported types throw.
 */
export function ropeScalingFromHf(cfg: Record<string, unknown> | null | undefined): RopeScaling {
  if (!cfg) return { type: "default" };
  const type = (cfg.rope_type ?? cfg.type ?? "default") as string;
  const num = (k: string) => {
    const v = cfg[k];
    if (typeof v !== "number") {
      throw new Error(`rope_scaling "${type}" needs a number "${k}", got ${JSON.stringify(v)}`);
    }
    return v;
  };
  switch (type) {
    case "default":
      return { type };
    case "linear":
      return { type, factor: num("factor") };
    case "llama3":
      return {
        type,
        factor: num("factor"),
        lowFreqFactor: num("low_freq_factor"),
        highFreqFactor: num("high_freq_factor"),
        originalMaxPositionEmbeddings: num("original_max_position_embeddings"),
      };
    default:
      throw new Error(`rope_scaling type "${type}" is not supported; expected default, linear or llama3`);
  }
}

/**
 * inv_freq[i] = 1 / theta^(2i / dim) for i < dim/2, in f64, then scaled: "linear" divides by
 * `factor`; "llama3" follows transformers' `_compute_llama3_parameters` (low frequencies divided by
 * `factor`, high ones kept, a smooth blend between).
 */
export function ropeInvFreq(dim: number, theta: number, scaling: RopeScaling = { type: "default" }): Float64Array {
  if (!Number.isInteger(dim) || dim < 2 || dim % 2) {
    throw new Error(`rope dim must be a positive even integer, got ${dim}`);
  }
  if (!(theta > 0)) throw new Error(`rope theta must be positive, got ${theta}`);
  const inv = Float64Array.from({ length: dim / 2 }, (_, i) => 1 / Math.pow(theta, (2 * i) / dim));
  if (scaling.type === "default") return inv;
  if (!(scaling.factor > 0)) throw new Error(`rope scaling factor must be positive, got ${scaling.factor}`);
  if (scaling.type === "linear") return inv.map((f) => f / scaling.factor);
  if (scaling.type !== "llama3") throw new Error(`unknown rope scaling type "${(scaling as { type: string }).type}"`);
  const { factor, lowFreqFactor: lo, highFreqFactor: hi, originalMaxPositionEmbeddings: old } = scaling;
  if (!(hi > lo)) throw new Error(`llama3 rope scaling needs highFreqFactor > lowFreqFactor, got ${hi} and ${lo}`);
  const lowFreqWavelen = old / lo, highFreqWavelen = old / hi;
  return inv.map((f) => {
    const wavelen = (2 * Math.PI) / f;
    if (wavelen < highFreqWavelen) return f;
    if (wavelen > lowFreqWavelen) return f / factor;
    const smooth = (old / wavelen - lo) / (hi - lo);
    return (1 - smooth) * (f / factor) + smooth * f;
  });
}

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
  // x [B, L, H, D] f32, positions [B, L] i32, freq [r/2, 2] u32 (ropeFreqWords) -> y [B, L, H, D] f32
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
      if (freq.dtype !== "u32" || freq.shape.length !== 2 || freq.shape[1] !== 2 || 2 * freq.shape[0] > D) {
        throw new Error(`freq must be u32 [r/2, 2] with r <= ${D} (see ropeFreqWords)`);
      }
      return [{ shape: x.shape, dtype: "f32" }];
    },
    ref: ([x, pos, freq], { scale, inverse }) => {
      const [B, L, H, D] = x.shape;
      const half = freq.shape[0];
      const out = Float64Array.from(x.data);
      for (let bl = 0; bl < B * L; bl++) {
        const p = pos.data[bl];
        for (let i = 0; i < half; i++) {
          let t = p * (freq.data[2 * i] * 2 ** -32 + freq.data[2 * i + 1] * 2 ** -64);
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
  /** Multiplier on cos and sin (transformers' attention_scaling; default 1). */
  attentionScaling?: number;
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
  const words = ropeFreqWords(ropeInvFreq(rd, opts.theta ?? 10000, opts.scaling));
  const freq = x.graph.constant(words, [rd / 2, 2], "u32");
  const scale = opts.attentionScaling ?? 1;
  if (!Number.isFinite(scale)) throw new Error(`rope: attentionScaling must be finite, got ${scale}`);
  return op1("rope", [x, positions, freq], { scale, inverse: !!opts.inverse });
}
