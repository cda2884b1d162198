/**
 * Phase timings of a run, printed to stderr when `WHETSTONE_TIMINGS=1` (else nothing is measured or printed): each
 * {@link mark} writes one line `[timings] <s since process start> (+<s since the last mark>) <phase>`, so a run's fixed
 * costs (start-up, data, model load, graph tracing, lowering, symbolic fitting, session creation, steps, outputs) can
 * be read off one log. `performance.now()` counts from the process's time origin, so the first mark includes Deno's
 * start-up and module loading.
 *
 * @example
 * ```ts
 * mark("model loaded");
 * const s = await timed("session create", () => createSession());
 * ```
 * @module
 */

let enabled: boolean | undefined;
let last = 0;

/** Whether timings are on (`WHETSTONE_TIMINGS` is `1`, `on` or `true`). */
export function timingsOn(): boolean {
  if (enabled !== undefined) return enabled;
  try {
    enabled = /^(1|on|true|yes)$/i.test(Deno.env.get("WHETSTONE_TIMINGS") ?? "");
  } catch {
    enabled = false; // no env permission
  }
  return enabled;
}

/** Resident and JS heap MiB now. */
function memory(): string {
  const m = Deno.memoryUsage();
  return `[rss ${(m.rss / 2 ** 20).toFixed(0)} MiB, heap ${(m.heapUsed / 2 ** 20).toFixed(0)} MiB]`;
}

/** Prints the end of `phase` (when timings are on), with the resident and JS heap memory at its end. */
export function mark(phase: string): void {
  if (!timingsOn()) return;
  const t = performance.now();
  console.error(`[timings] ${(t / 1000).toFixed(3)} s (+${((t - last) / 1000).toFixed(3)}) ${phase} ${memory()}`);
  last = t;
}

/** Prints the end of `phase`, begun at `t0`, with its own time beside the time since the last mark. */
function markTimed(phase: string, t0: number): void {
  const t = performance.now();
  const since = ((t - last) / 1000).toFixed(3), own = ((t - t0) / 1000).toFixed(3);
  console.error(`[timings] ${(t / 1000).toFixed(3)} s (+${since}; own ${own}) ${phase}`);
  last = t;
}

/** Runs `fn`, then marks `phase` with the time it took (when timings are on). */
export async function timed<T>(phase: string, fn: () => Promise<T> | T): Promise<T> {
  if (!timingsOn()) return await fn();
  const t0 = performance.now();
  const r = await fn();
  markTimed(phase, t0);
  return r;
}

/** Runs synchronous `fn`, then marks `phase` with the time it took (when timings are on). */
export function timedSync<T>(phase: string, fn: () => T): T {
  if (!timingsOn()) return fn();
  const t0 = performance.now();
  const r = fn();
  markTimed(phase, t0);
  return r;
}
