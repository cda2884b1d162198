import assert from "node:assert/strict";
import { mix, mixArrays, type MixStrategy, parseProbs, sampleExactly, splitTrainEval, valCount } from "./mix.ts";
import { Rng } from "../util/rng.ts";

/** Datasets [3, 4, 5] long whose items are their index in the concatenation (as in HF's docstring). */
const SETS = [[0, 1, 2], [3, 4, 5, 6], [7, 8, 9, 10, 11]];

Deno.test("interleave without probabilities is HF's round robin", async () => {
  assert.deepEqual(await mixArrays(SETS, "interleave_under", 0), [0, 3, 7, 1, 4, 8, 2, 5, 9]);
  assert.deepEqual(await mixArrays(SETS, "interleave_over", 0), [0, 3, 7, 1, 4, 8, 2, 5, 9, 0, 6, 10, 1, 3, 11]);
  assert.deepEqual(await mixArrays(SETS, "interleave_once", 0), [0, 3, 7, 1, 4, 8, 2, 5, 9, 6, 10, 11]);
  assert.deepEqual(await mixArrays(SETS, "concat", 0), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
  assert.deepEqual(await mixArrays([[1, 2], []], "interleave_under", 0), []);
});

function checkProbRun(out: number[], strategy: MixStrategy) {
  const taken = SETS.map((s) => out.filter((x) => s.includes(x)).length);
  const last = out[out.length - 1];
  const lastSet = SETS.findIndex((s) => s.includes(last));
  if (strategy === "interleave_under") {
    // stops right after one dataset's last example, having restarted none
    assert.equal(taken[lastSet], SETS[lastSet].length);
    assert.equal(last, SETS[lastSet][SETS[lastSet].length - 1]);
    SETS.forEach((s, i) => assert.deepEqual(out.filter((x) => s.includes(x)), s.slice(0, taken[i])));
  } else if (strategy === "interleave_over") {
    // every example at least once; datasets restart in order; stops when the last one runs out
    for (const s of SETS) for (const x of s) assert.ok(out.includes(x));
    assert.equal(taken[lastSet] % SETS[lastSet].length, 0);
    assert.equal(last, SETS[lastSet][SETS[lastSet].length - 1]);
  } else {
    assert.deepEqual([...out].sort((a, b) => a - b), SETS.flat());
  }
}

Deno.test("interleave with probabilities: stopping rules and seeded repeatability", async () => {
  for (const strategy of ["interleave_under", "interleave_over", "interleave_once"] as const) {
    for (let seed = 0; seed < 20; seed++) {
      const out = await mixArrays(SETS, strategy, seed, [0.2, 0.3, 0.5]);
      checkProbRun(out, strategy);
      assert.deepEqual(await mixArrays(SETS, strategy, seed, [0.2, 0.3, 0.5]), out);
    }
  }
  // probabilities steer the mix
  const big = [Array.from({ length: 2000 }, () => 0), Array.from({ length: 2000 }, () => 1)];
  const out = await mixArrays(big, "interleave_under", 1, [0.9, 0.1]);
  const share = out.filter((x) => x === 0).length / out.length;
  assert.ok(share > 0.87 && share < 0.93, `share ${share}`);
  // a zero probability never draws that dataset, and does not keep "over" going forever
  const zero = await mixArrays(SETS, "interleave_over", 5, [0.5, 0, 0.5]);
  assert.ok(!zero.some((x) => SETS[1].includes(x)));
});

Deno.test("streaming sources give the same sequence as arrays, restarting by reading again", async () => {
  let opened = 0;
  const stream = (s: number[]) => () =>
    (async function* () {
      opened++;
      for (const x of s) yield x;
    })();
  for (const strategy of ["concat", "interleave_under", "interleave_over", "interleave_once"] as const) {
    for (const probs of [undefined, [0.2, 0.3, 0.5]]) {
      const out: number[] = [];
      for await (const x of mix(SETS.map(stream), strategy, 9, probs)) out.push(x);
      assert.deepEqual(out, await mixArrays(SETS, strategy, 9, probs), `${strategy} ${probs}`);
    }
  }
  opened = 0;
  for await (const _ of mix(SETS.map(stream), "interleave_over", 0)) { /* drain */ }
  assert.equal(opened, 3 + 3); // each set is read again once it runs out (rounds 3, 4, 5)
});

Deno.test("val_size: a fraction rounds up, a number >= 1 is a count", () => {
  assert.equal(valCount(0.1, 999), 100);
  assert.equal(valCount(0.1, 1000), 100);
  assert.equal(valCount(5, 999), 5);
  assert.equal(valCount(1, 10), 1);
  assert.equal(valCount(2.7, 10), 2);
  assert.equal(valCount(0, 10), 0);
  assert.throws(() => valCount(10, 10), /leaving none to train on/);
  assert.throws(() => valCount(0.9999, 10), /leaving none/);
  assert.throws(() => valCount(-1, 10), /val_size should be >= 0/);
});

Deno.test("splitTrainEval: seeded, disjoint, both parts keep the input order", () => {
  const items = Array.from({ length: 50 }, (_, i) => i);
  const a = splitTrainEval(items, 0.2, 42);
  assert.equal(a.eval.length, 10);
  assert.equal(a.train.length, 40);
  assert.deepEqual([...a.train, ...a.eval].sort((x, y) => x - y), items);
  for (const part of [a.train, a.eval]) assert.deepEqual(part, [...part].sort((x, y) => x - y));
  assert.deepEqual(splitTrainEval(items, 0.2, 42), a);
  assert.notDeepEqual(splitTrainEval(items, 0.2, 43).eval, a.eval);
});

Deno.test("sampleExactly: a permutation first, then draws with replacement", () => {
  const items = ["a", "b", "c", "d"];
  const few = sampleExactly(items, 3, new Rng(1));
  assert.equal(new Set(few).size, 3);
  const many = sampleExactly(items, 10, new Rng(1));
  assert.equal(many.length, 10);
  for (const x of items) assert.ok(many.slice(0, 4).includes(x));
});

Deno.test("interleave_probs: comma lists, count check, normalisation", () => {
  assert.deepEqual(parseProbs("0.25, 0.75", 2), [0.25, 0.75]);
  const w: string[] = [];
  assert.deepEqual(parseProbs([1, 3], 2, w), [0.25, 0.75]);
  assert.match(w[0], /sum to 4/);
  assert.equal(parseProbs(undefined, 2), undefined);
  assert.throws(() => parseProbs("0.5", 2), /has 1 values but there are 2 datasets/);
  assert.throws(() => parseProbs([0, 0], 2), /all be zero/);
  assert.throws(() => parseProbs("a,b", 2), /non-negative numbers/);
});
