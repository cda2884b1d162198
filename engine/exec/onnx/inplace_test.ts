import assert from "node:assert/strict";
import { notAncestors } from "./inplace.ts";

/** A random DAG of `n` nodes (node i reads outputs of earlier nodes), listed out of order. */
function randomDag(n: number, seed: number) {
  let s = seed;
  const rand = () => (s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const made = Array.from({ length: n }, (_, i) => ({
    inputs: i === 0 ? ["x"] : Array.from({ length: 1 + Math.floor(rand() * 3) }, () => `v${Math.floor(rand() * i)}`),
    outputs: [`v${i}`],
  }));
  // Shuffled: the pass must not rely on the list being in order.
  const perm = made.map((_, i) => i).sort(() => rand() - 0.5);
  const nodes = perm.map((i) => made[i]);
  const producer = new Map(nodes.map((x, i) => [x.outputs[0], i]));
  return { nodes, producer, rand };
}

/** Every ancestor of `w` (itself included), by a walk back. */
function walk(nodes: { inputs: string[] }[], producer: Map<string, number>, w: number): Set<number> {
  const seen = new Set([w]), stack = [w];
  while (stack.length) {
    for (const x of nodes[stack.pop()!].inputs) {
      const p = producer.get(x);
      if (p !== undefined && !seen.has(p)) seen.add(p), stack.push(p);
    }
  }
  return seen;
}

Deno.test("in-place states: the readers a writer does not wait for are those off its ancestors, in one round or many", () => {
  const { nodes, producer, rand } = randomDag(300, 7);
  const queries = Array.from({ length: 40 }, () => ({
    node: Math.floor(rand() * nodes.length),
    of: Array.from({ length: 12 }, () => Math.floor(rand() * nodes.length)),
  }));
  const want = queries.map((q) => {
    const anc = walk(nodes, producer, q.node);
    return [...new Set(q.of)].filter((r) => !anc.has(r)).sort((a, b) => a - b);
  });
  const sorted = (xs: number[][]) => xs.map((x) => [...new Set(x)].sort((a, b) => a - b));
  assert.deepEqual(sorted(notAncestors(nodes, producer, queries)), want);
  // A bound of one word a node: 32 queried nodes a round, so several rounds.
  assert.deepEqual(sorted(notAncestors(nodes, producer, queries, nodes.length)), want);
  assert.ok(want.some((x) => x.length > 0) && want.some((x, i) => x.length < new Set(queries[i].of).size));
});

Deno.test("in-place states: a cycle in the lowered graph is refused", () => {
  const nodes = [{ inputs: ["b"], outputs: ["a"] }, { inputs: ["a"], outputs: ["b"] }];
  const producer = new Map([["a", 0], ["b", 1]]);
  assert.throws(() => notAncestors(nodes, producer, [{ node: 0, of: [1] }]), /cycle \(2 nodes on it\)/);
});
