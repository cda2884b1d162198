/**
 * Dropout with a counter-based mask: element i of a dropout site is dropped when a stateless 32-bit
 * hash of (seed, offset, i) falls below p · 2^32, so the mask is a pure function of its inputs. The
 * WGSL kernel and the reference compute the same u32 hash (this file's {@link dropoutHash} is the
 * definition), so masks agree bit for bit; the backward pass recomputes the mask instead of storing it.
 * @module
 */
import { defineOp, registerOps } from "../op.ts";
import { op1, type Tensor } from "../graph.ts";

/** Attrs of the dropout op. */
export interface DropoutAttrs extends Record<string, unknown> {
  /** Drop probability in [0, 1). */
  p: number;
  /** Distinguishes dropout sites that share a seed (a static u32). */
  offset: number;
}

/** Chris Wellons' "lowbias32" integer mixer (a bijection on u32). */
export function mix32(x: number): number {
  x = (x ^ (x >>> 16)) >>> 0;
  x = Math.imul(x, 0x7feb352d) >>> 0;
  x = (x ^ (x >>> 15)) >>> 0;
  x = Math.imul(x, 0x846ca68b) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

/** The per-site key: mix32(seed ^ mix32(offset ^ 0x9e3779b9)). */
export function dropoutKey(seed: number, offset: number): number {
  return mix32((seed ^ mix32((offset ^ 0x9e3779b9) >>> 0)) >>> 0);
}

/** The u32 hash of element `i` under `key`: mix32(mix32(i ^ key) + key). */
export function dropoutHash(key: number, i: number): number {
  return mix32((mix32((i ^ key) >>> 0) + key) >>> 0);
}

/** The u32 threshold below which a hash means "drop": round(p · 2^32), at most 2^32 − 1. */
export function dropoutThreshold(p: number): number {
  return Math.min(2 ** 32 - 1, Math.round(p * 2 ** 32));
}

function checkAttrs({ p, offset }: DropoutAttrs): void {
  if (!(p >= 0 && p < 1)) throw new Error(`dropout p must be in [0, 1), got ${p}`);
  if (!Number.isInteger(offset) || offset < 0 || offset >= 2 ** 32) {
    throw new Error(`dropout offset must be a u32 integer, got ${offset}`);
  }
}

registerOps([
  // x [...] f32, seed [] u32 -> y [...] f32
  // y[i] = dropoutHash(dropoutKey(seed, offset), i) < round(p·2^32) ? 0 : x[i] / (1 − p)
  // grad: dx = dropout(dy, seed) with the same attrs (the same mask and scale).
  defineOp<DropoutAttrs>({
    name: "dropout",
    infer: ([x, seed], attrs) => {
      checkAttrs(attrs);
      if (x.dtype !== "f32") throw new Error(`x must be f32, got ${x.dtype}`);
      if (seed.dtype !== "u32" || seed.shape.length !== 0) throw new Error(`seed must be a u32 scalar`);
      return [{ shape: x.shape, dtype: "f32" }];
    },
    ref: ([x, seed], { p, offset }) => {
      const key = dropoutKey(seed.data[0] >>> 0, offset);
      const th = dropoutThreshold(p);
      const scale = 1 / (1 - p);
      return [x.data.map((v, i) => (dropoutHash(key, i) < th ? 0 : v * scale))];
    },
    grad: (c) => [c.needs[0] ? op1("dropout", [c.grads[0]!, c.inputs[1]], c.attrs) : undefined, undefined],
  }),
]);

/**
 * Zeroes each element of `x` with probability `p` and scales the rest by 1/(1 − p). `seed` is a u32
 * scalar fed per step; `offset` (a static u32) makes different dropout sites draw different masks.
 * p = 0 returns `x` unchanged.
 */
export function dropout(x: Tensor, seed: Tensor, opts: { p: number; offset?: number }): Tensor {
  const attrs: DropoutAttrs = { p: opts.p, offset: opts.offset ?? 0 };
  checkAttrs(attrs);
  if (attrs.p === 0) return x;
  return op1("dropout", [x, seed], attrs);
}
