import assert from "node:assert/strict";
import { quantile, rateSpread, spread } from "./stats.ts";

Deno.test("spread: median and quartiles interpolate as numpy does, whatever the order", () => {
  const s = spread([5, 1, 4, 2, 3]);
  assert.deepEqual([s.min, s.p25, s.median, s.p75, s.max, s.n], [1, 2, 3, 4, 5, 5]);
  const e = spread([4, 1, 3, 2]);
  assert.deepEqual([e.p25, e.median, e.p75], [1.75, 2.5, 3.25]);
});

Deno.test("rateSpread: the slowest step is the lowest rate", () => {
  const s = rateSpread(100, [1, 2, 4]);
  assert.deepEqual([s.min, s.median, s.max], [25, 50, 100]);
});

Deno.test("quantile of nothing says so", () => {
  assert.throws(() => quantile([], 0.5), /at least one value/);
});
