import assert from "node:assert/strict";
import { epochOrder } from "./batches.ts";

Deno.test("epochOrder: a seeded shuffle per epoch; shuffle false (disable_shuffling) keeps the records in order", () => {
  const a = epochOrder(20, 42, 0), b = epochOrder(20, 42, 1), c = epochOrder(20, 7, 0);
  assert.deepEqual([...a].sort((x, y) => x - y), [...Array(20).keys()], "a permutation");
  assert.deepEqual(epochOrder(20, 42, 0), a, "stable for a seed and epoch");
  assert.notDeepEqual(a, b, "another epoch, another order");
  assert.notDeepEqual(a, c, "another seed (data_seed), another order");
  assert.notDeepEqual(a, [...Array(20).keys()]);
  assert.deepEqual(epochOrder(20, 42, 3, false), [...Array(20).keys()]);
});
