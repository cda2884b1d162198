import assert from "node:assert/strict";
import { mulberry32, Rng } from "./rng.ts";

Deno.test("mulberry32: same seed, same sequence; values in [0, 1); seeds differ", () => {
  const a = mulberry32(7), b = mulberry32(7), c = mulberry32(8);
  const xs = Array.from({ length: 1000 }, a);
  assert.deepEqual(xs, Array.from({ length: 1000 }, b));
  assert.ok(xs.every((x) => x >= 0 && x < 1));
  assert.notDeepEqual(xs.slice(0, 5), Array.from({ length: 5 }, c));
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  assert.ok(Math.abs(mean - 0.5) < 0.05, `mean ${mean}`);
});

Deno.test("Rng: deterministic, uniform ints in range, permutations", () => {
  const a = new Rng(42), b = new Rng(42), c = new Rng(43);
  const xs = Array.from({ length: 8 }, () => a.uint32());
  assert.deepEqual(xs, Array.from({ length: 8 }, () => b.uint32()));
  assert.notDeepEqual(xs, Array.from({ length: 8 }, () => c.uint32()));
  const counts = [0, 0, 0];
  for (let i = 0; i < 30000; i++) counts[a.int(3)]++;
  for (const n of counts) assert.ok(Math.abs(n - 10000) < 500, `counts ${counts}`);
  const p = new Rng(1).permutation(100);
  assert.deepEqual([...p].sort((x, y) => x - y), Array.from({ length: 100 }, (_, i) => i));
  const picks = [0, 0, 0];
  const r = new Rng(3);
  for (let i = 0; i < 20000; i++) picks[r.choice([0.5, 0, 0.5])]++;
  assert.equal(picks[1], 0);
  assert.ok(Math.abs(picks[0] - 10000) < 400);
});

Deno.test("Rng: seeds past 2^32 keep their high bits; the sequence is fixed for a seed", () => {
  assert.notEqual(new Rng(5).uint32(), new Rng(5 + 2 ** 32).uint32());
  // LoRA and value-head init depend on this exact stream: SplitMix32 from seed ^ 0x2545f491, lowbias32 output.
  const r = new Rng(0);
  let s = 0x2545f491;
  for (let i = 0; i < 4; i++) {
    s = (s + 0x9e3779b9) >>> 0;
    let z = Math.imul(s ^ (s >>> 16), 0x21f0aaad) >>> 0;
    z = Math.imul(z ^ (z >>> 15), 0x735a2d97) >>> 0;
    assert.equal(r.uint32(), (z ^ (z >>> 15)) >>> 0);
  }
});

Deno.test("Rng: uniform in [0, 1) and standard normal moments", () => {
  const r = new Rng(9);
  const us = Array.from({ length: 20000 }, () => r.uniform());
  assert.ok(us.every((u) => u >= 0 && u < 1));
  const ns = Array.from({ length: 20000 }, () => r.normal());
  const mean = ns.reduce((a, x) => a + x, 0) / ns.length;
  const variance = ns.reduce((a, x) => a + (x - mean) ** 2, 0) / ns.length;
  assert.ok(Math.abs(mean) < 0.03, `mean ${mean}`);
  assert.ok(Math.abs(variance - 1) < 0.05, `variance ${variance}`);
  assert.throws(() => r.int(0), /n >= 1|1 <= n/);
  assert.throws(() => new Rng(1).choice([0, 0]), /every weight is zero/);
});
