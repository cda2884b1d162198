/**
 * Summaries of repeated timings for the benches: the median with its spread (min, quartiles, max), so a figure
 * measured on a shared machine shows how much it moved.
 * @module
 */

/** A median with its spread. */
export interface Spread {
  median: number;
  min: number;
  p25: number;
  p75: number;
  max: number;
  n: number;
}

/** The q-quantile (0..1) of sorted values, linearly interpolated (numpy's default). */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) throw new Error("quantile: expected at least one value, got none");
  const at = (sorted.length - 1) * q;
  const lo = Math.floor(at), hi = Math.ceil(at);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo);
}

/** The median and spread of `values`. */
export function spread(values: readonly number[]): Spread {
  const s = [...values].sort((a, b) => a - b);
  return {
    median: quantile(s, 0.5),
    min: s[0],
    p25: quantile(s, 0.25),
    p75: quantile(s, 0.75),
    max: s[s.length - 1],
    n: s.length,
  };
}

/**
 * A rate (e.g. tokens/s = `work / seconds`) over timings in seconds: the median rate and its spread. The slowest
 * step gives the minimum rate.
 */
export function rateSpread(work: number, seconds: readonly number[]): Spread {
  return spread(seconds.map((s) => work / s));
}

/** The fields a measurement carries for a spread: min, p25, p75, max, n (the value is the median). */
export function spreadFields(s: Spread): { min: number; p25: number; p75: number; max: number; n: number } {
  const r = (x: number) => Number(x.toPrecision(5));
  return { min: r(s.min), p25: r(s.p25), p75: r(s.p75), max: r(s.max), n: s.n };
}
