/**
 * Bench measurements: one record per number, printed as a table or as JSON lines (`--json`).
 * @module
 */

/** One measured number with its parameters. */
export interface Measurement {
  bench: string;
  metric: string;
  value: number;
  unit: string;
  [param: string]: string | number | boolean;
}

/** A benchmark: yields its measurements as it makes them. */
export interface Bench {
  name: string;
  description: string;
  run(): AsyncIterable<Measurement>;
}

/** Prints one measurement in the chosen format. */
export function report(m: Measurement, json: boolean): void {
  if (json) {
    console.log(JSON.stringify(m));
    return;
  }
  const params = Object.entries(m)
    .filter(([k]) => !["bench", "metric", "value", "unit"].includes(k))
    .map(([k, v]) => `${k}=${v}`)
    .join(" ");
  const v = Math.abs(m.value) >= 100 ? m.value.toFixed(1) : m.value.toPrecision(4);
  console.log(`${m.bench.padEnd(12)} ${m.metric.padEnd(22)} ${v.padStart(12)} ${m.unit.padEnd(8)} ${params}`);
}

/** Median of timings in ms of `fn` after `warmup` runs. */
export async function timeMs(fn: () => Promise<unknown> | unknown, reps = 5, warmup = 1): Promise<number> {
  for (let i = 0; i < warmup; i++) await fn();
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await fn();
    ts.push(performance.now() - t0);
  }
  ts.sort((a, b) => a - b);
  return ts[Math.floor(ts.length / 2)];
}
