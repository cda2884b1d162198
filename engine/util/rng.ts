/**
 * The project's seeded generators, in one place: `mulberry32` (a float in [0, 1) per call: batch order, sampling,
 * BAdam, SVD starts, test data) and {@link Rng} (SplitMix32 state, lowbias32 output, with the usual shapes: u32,
 * 53-bit uniform, normal, unbiased ints, permutations, weighted choice: adapter and value-head init, data sampling and
 * splits). Two algorithms remain because each one's sequences are relied on (LoRA init by the training tests,
 * mulberry32 by batch orders and goldens); nothing else may implement a PRNG.
 *
 * @example
 * ```ts
 * const r = mulberry32(42);
 * r(); // a float in [0, 1), the same sequence for the same seed
 * const g = new Rng(42);
 * g.permutation(5); // a seeded shuffle of 0..4
 * ```
 * @module
 */

/** A seeded generator of floats in [0, 1) (mulberry32). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A seeded generator (SplitMix32 state, lowbias32 output) with uniform, normal, integer, permutation and weighted draws. */
export class Rng {
  #s: number;
  #spare: number | undefined;

  /** Seeds above 2^32 keep their high bits (folded into the 32-bit state). */
  constructor(seed: number) {
    const high = seed >= 2 ** 32 ? Math.floor(seed / 2 ** 32) : 0;
    this.#s = ((Math.floor(seed) >>> 0) ^ high ^ 0x2545f491) >>> 0;
  }

  /** The next 32-bit unsigned integer. */
  uint32(): number {
    this.#s = (this.#s + 0x9e3779b9) >>> 0;
    let z = this.#s;
    z = Math.imul(z ^ (z >>> 16), 0x21f0aaad) >>> 0;
    z = Math.imul(z ^ (z >>> 15), 0x735a2d97) >>> 0;
    return (z ^ (z >>> 15)) >>> 0;
  }

  /** Uniform in [0, 1) with 32 random bits. */
  next(): number {
    return this.uint32() / 4294967296;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  uniform(): number {
    return ((this.uint32() >>> 5) * 67108864 + (this.uint32() >>> 6)) / 9007199254740992;
  }

  /** Standard normal (Box–Muller; the second value of each pair is kept for the next call). */
  normal(): number {
    if (this.#spare !== undefined) {
      const s = this.#spare;
      this.#spare = undefined;
      return s;
    }
    const u = 1 - this.uniform(), v = this.uniform();
    const m = Math.sqrt(-2 * Math.log(u));
    this.#spare = m * Math.sin(2 * Math.PI * v);
    return m * Math.cos(2 * Math.PI * v);
  }

  /** Uniform integer in [0, n) (1 <= n <= 2^32), without modulo bias. */
  int(n: number): number {
    if (!(n >= 1 && n <= 2 ** 32)) throw new RangeError(`Rng.int needs 1 <= n <= 2^32, got ${n}`);
    const limit = 2 ** 32 - (2 ** 32 % n);
    for (;;) {
      const x = this.uint32();
      if (x < limit) return x % n;
    }
  }

  /** A random permutation of 0..n-1 (Fisher-Yates). */
  permutation(n: number): number[] {
    const p = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [p[i], p[j]] = [p[j], p[i]];
    }
    return p;
  }

  /** An index drawn with the given weights (which need not sum to 1; zero weights are never drawn). */
  choice(weights: readonly number[]): number {
    let total = 0;
    for (const w of weights) total += w;
    let x = this.next() * total;
    let last = -1;
    for (let i = 0; i < weights.length; i++) {
      if (weights[i] <= 0) continue;
      last = i;
      if (x < weights[i]) return i;
      x -= weights[i];
    }
    if (last < 0) throw new RangeError("Rng.choice: every weight is zero");
    return last; // rounding
  }
}
