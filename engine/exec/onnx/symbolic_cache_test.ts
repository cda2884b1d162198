/**
 * The on-disk cache of symbolic models (symbolic_cache.ts): entries round-trip exactly, a corrupt entry is a miss
 * and is removed, a second executor loads the model instead of probing the graph and computes the same outputs;
 * large constants flatten as digests (symbolic_fit.ts).
 */
import assert from "node:assert/strict";
import { add, Graph, matmul, mul, reshape } from "../../graph/mod.ts";
import { OnnxExecutor } from "./executor.ts";
import { buildSymbolic } from "./symbolic.ts";
import { decodeEntry, encodeEntry, readSymbolic, symbolicKey, writeSymbolic } from "./symbolic_cache.ts";
import { DIGEST_ABOVE, flattenGraph } from "./symbolic_fit.ts";

let traces = 0;

/** x [B, L, 4] → (rows [B·L, 4] · w [4, 3]) · 0.5 + c → [B, L, 3]; c a [3] constant with -0 in it. */
function trace(s: Record<string, number>): Graph {
  traces++;
  const g = new Graph();
  const x = g.input("x", [s.B, s.L, 4]);
  const y = matmul(reshape(x, [s.B * s.L, 4]), g.param("w", [4, 3]));
  g.output("y", reshape(add(mul(y, 0.5), g.constant([-0, 1.25, -3], [3])), [s.B, s.L, 3]));
  return g;
}

Deno.test("symbolic cache: an entry round-trips exactly; a why too", async () => {
  const built = buildSymbolic(trace({ B: 2, L: 5 }), { sizes: { B: 2, L: 5 }, trace }, {});
  assert.ok("model" in built);
  const { model: _, ...sm } = built;
  const bytes = new Uint8Array([1, 2, 3, 250]);
  const back = await decodeEntry(await encodeEntry({ sm, bytes, nodes: 7 }));
  assert.ok(!("why" in back));
  assert.deepEqual(back, { sm, bytes, nodes: 7 });
  // Polynomials are float64 bytes: -0 stays -0 (JSON would make it 0).
  assert.ok(sm.polys.some((p) => Object.is(p[0], -0)) && back.sm.polys.some((p) => Object.is(p[0], -0)));
  assert.deepEqual(await decodeEntry(await encodeEntry({ why: "no model" })), { why: "no model" });
});

Deno.test("symbolic cache: a corrupt or truncated entry is a miss and is removed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "whetstone-symcache-" });
  try {
    await writeSymbolic(dir, "k", { why: "because" });
    assert.deepEqual(await readSymbolic(dir, "k"), { why: "because" });
    const file = await Deno.readFile(`${dir}/k.sym`);
    file[file.length - 2] ^= 1;
    await Deno.writeFile(`${dir}/k.sym`, file);
    assert.equal(await readSymbolic(dir, "k"), undefined);
    await assert.rejects(Deno.stat(`${dir}/k.sym`), Deno.errors.NotFound);
    await Deno.writeFile(`${dir}/t.sym`, file.subarray(0, 20));
    assert.equal(await readSymbolic(dir, "t"), undefined);
    assert.equal(await readSymbolic(dir, "absent"), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("symbolic cache: keys differ by sizes and options; large constants flatten as digests", async () => {
  const flat = flattenGraph(trace({ B: 2, L: 5 }));
  const k = await symbolicKey(flat, { B: 2, L: 5 }, "a");
  assert.match(k!, /^[0-9a-f]{64}$/);
  assert.notEqual(await symbolicKey(flat, { B: 2, L: 6 }, "a"), k);
  assert.notEqual(await symbolicKey(flat, { B: 2, L: 5 }, "b"), k);
  assert.equal(await symbolicKey(flat, { B: 2, L: 5 }, "a"), k);
  const big = (v: number) => {
    const g = new Graph();
    const data = Array.from({ length: DIGEST_ABOVE + 1 }, (_, i) => (i % 7) - v);
    g.output("y", add(g.input("x", [DIGEST_ABOVE + 1]), g.constant(data, [DIGEST_ABOVE + 1])));
    return flattenGraph(g);
  };
  const [a, b] = [big(0), big(1)];
  assert.ok(a.nums.length < 20, `${a.nums.length} numbers`);
  assert.notEqual(a.skeleton, b.skeleton);
  assert.equal(a.skeleton, big(0).skeleton);
});

Deno.test("OnnxExecutor: a second executor loads the symbolic model from the disk cache, same outputs", async () => {
  const dir = await Deno.makeTempDir({ prefix: "whetstone-symcache-" });
  try {
    const run = async () => {
      const ex = await OnnxExecutor.create({ modelCache: { dir, minNodes: 0 } });
      ex.setParam("w", Array.from({ length: 12 }, (_, i) => i / 7 - 0.5), [4, 3]);
      const ys: number[][] = [];
      for (const [B, L] of [[2, 5], [3, 8]]) {
        const c = await ex.compile(trace({ B, L }), { symbolic: { sizes: { B, L }, trace } });
        ys.push([...(await c.run({ x: Array.from({ length: B * L * 4 }, (_, i) => Math.sin(i)) })).y]);
      }
      return { ys, sessions: ex.sessions };
    };
    traces = 0;
    const first = await run();
    const probed = traces;
    assert.ok(probed > 2, `${probed} traces`); // the two compiles' own, and the probes
    traces = 0;
    const second = await run();
    assert.equal(traces, 2); // the two compiles' own traces, no probe
    assert.deepEqual(second.ys, first.ys);
    assert.deepEqual(second.sessions, { created: 1, reused: 1, fallbacks: [] });
    assert.equal([...Deno.readDirSync(`${dir}/symbolic`)].filter((e) => e.name.endsWith(".sym")).length, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
