import assert from "node:assert/strict";
import { epochOrder, lengthGroupedOrder, lengthsOf } from "./batches.ts";

Deno.test("epochOrder: a seeded shuffle per epoch; shuffle false (disable_shuffling) keeps the records in order", () => {
  const a = epochOrder(20, 42, 0), b = epochOrder(20, 42, 1), c = epochOrder(20, 7, 0);
  assert.deepEqual([...a].sort((x, y) => x - y), [...Array(20).keys()], "a permutation");
  assert.deepEqual(epochOrder(20, 42, 0), a, "stable for a seed and epoch");
  assert.notDeepEqual(a, b, "another epoch, another order");
  assert.notDeepEqual(a, c, "another seed (data_seed), another order");
  assert.notDeepEqual(a, [...Array(20).keys()]);
  assert.deepEqual(epochOrder(20, 42, 3, false), [...Array(20).keys()]);
});

Deno.test("lengthGroupedOrder: HF's group_by_length — mega-batches sorted longest first, the longest record leads", () => {
  const lengths = Array.from({ length: 103 }, (_, i) => (i * 37) % 101 + 1);
  const B = 4, order = lengthGroupedOrder(lengths, B, 42, 0);
  assert.deepEqual([...order].sort((x, y) => x - y), [...Array(103).keys()], "a permutation");
  assert.equal(lengths[order[0]], Math.max(...lengths), "the longest first");
  // mega_batch_mult = min(103 // 16, 50) = 6: mega-batches of 24 from the seeded shuffle, each sorted descending.
  const shuffled = epochOrder(103, 42, 0);
  for (let m = 0; m * 24 < 103; m++) {
    const got = order.slice(m * 24, m * 24 + 24), want = shuffled.slice(m * 24, m * 24 + 24);
    assert.deepEqual([...got].sort((x, y) => x - y), [...want].sort((x, y) => x - y), `mega-batch ${m}: same records`);
    const tail = got.slice(1); // the first element may be the longest record, swapped in
    for (let i = 1; i < tail.length; i++) assert.ok(lengths[tail[i - 1]] >= lengths[tail[i]], `mega-batch ${m} sorted`);
  }
  assert.deepEqual(lengthGroupedOrder(lengths, B, 42, 0), order, "stable for a seed and epoch");
  assert.notDeepEqual(lengthGroupedOrder(lengths, B, 42, 1), order, "another epoch, another order");
  // Grouping means less padding: the sum over batches of the longest row is smaller than for the plain shuffle.
  const padded = (o: number[]) => {
    let t = 0;
    for (let i = 0; i < o.length; i += B) t += B * Math.max(...o.slice(i, i + B).map((k) => lengths[k]));
    return t;
  };
  assert.ok(padded(order) < 0.8 * padded(shuffled), `padding ${padded(order)} vs ${padded(shuffled)}`);
  assert.throws(() => lengthsOf([{ chosen_input_ids: [1] }], "dpo"), /group_by_length: stage dpo has no input_ids/);
  assert.deepEqual(lengthsOf([{ input_ids: [1, 2, 3] }, { input_ids: [4] }], "sft"), [3, 1]);
});
