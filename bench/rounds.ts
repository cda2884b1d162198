/**
 * How many alternating rounds and timed steps the benches that compare with PyTorch run:
 * `WHETSTONE_BENCH_ROUNDS` (default 3) and `WHETSTONE_BENCH_STEPS` (default 5, at least 1).
 * @module
 */

function positiveInt(name: string, fallback: number): number {
  const v = Deno.env.get(name);
  if (v === undefined || v === "") return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name}: expected a whole number ≥ 1, got "${v}"`);
  return n;
}

/** Rounds of the alternation (Whetstone, PyTorch, Whetstone, ...). */
export function benchRounds(): number {
  return positiveInt("WHETSTONE_BENCH_ROUNDS", 3);
}

/** Timed steps a round (after one warm-up step). */
export function benchSteps(): number {
  return positiveInt("WHETSTONE_BENCH_STEPS", 5);
}

/** A whole-number setting read from the environment (default `fallback`). */
export function envInt(name: string, fallback: number): number {
  return positiveInt(name, fallback);
}
