import assert from "node:assert/strict";
import { add, exp, Graph, linearCrossEntropy, matmul, sum } from "../graph/mod.ts";
import { packIntervals } from "./pack.ts";
import { planGraph } from "./plan.ts";
import { layoutMemory, type MemoryLimits, plannedDeviceBytes, type Slot } from "./webgpu_memory.ts";
import { segmentLayout } from "../../kernels/segments.ts";

/** Asserts no two slots of things live at a common step share bytes of one arena. */
function assertDisjoint(slots: { slot: Slot; a: number; b: number; what: string }[]) {
  for (let i = 0; i < slots.length; i++) {
    for (let j = i + 1; j < slots.length; j++) {
      const [x, y] = [slots[i], slots[j]];
      if (x.slot.arena !== y.slot.arena || x.b < y.a || y.b < x.a) continue;
      const apart = x.slot.offset + x.slot.size <= y.slot.offset || y.slot.offset + y.slot.size <= x.slot.offset;
      assert.ok(apart, `${x.what} and ${y.what} overlap while both live`);
    }
  }
}

Deno.test("packIntervals: unbounded is one arena; a cap spreads items over arenas, each within it", () => {
  const items = [
    { size: 64, a: 0, b: 3 },
    { size: 64, a: 1, b: 2 },
    { size: 32, a: 2, b: 5 },
    { size: 64, a: 4, b: 5 },
    { size: 96, a: 0, b: 5 },
  ];
  const one = packIntervals(items);
  assert.equal(one.arenaBytes.length, 1);
  assert.ok(one.placements.every((p) => p.arena === 0));
  const capped = packIntervals(items, 128);
  assert.ok(capped.arenaBytes.length > 1, JSON.stringify(capped));
  assert.ok(capped.arenaBytes.every((b) => b <= 128));
  for (const pk of [one, capped]) {
    assertDisjoint(items.map((it, i) => ({
      slot: { ...pk.placements[i], size: it.size },
      a: it.a,
      b: it.b,
      what: `item ${i}`,
    })));
  }
  assert.throws(() => packIntervals([{ size: 256, a: 0, b: 0 }], 128), /256-byte item does not fit an arena of 128/);
});

Deno.test("segmentLayout: whole rows under the binding limit, 4 bytes an element whatever the dtype", () => {
  assert.equal(segmentLayout({ shape: [1024, 64], dtype: "f32" }, 256 * 1024), undefined);
  assert.deepEqual(segmentLayout({ shape: [1024, 64], dtype: "f32" }, 65536), { elems: 16384, count: 4, total: 65536 });
  // bf16: 128 KiB in all, over a 64 KiB binding; segments sized as for f32 so same-shaped values split alike.
  assert.deepEqual(segmentLayout({ shape: [1024, 64], dtype: "bf16" }, 65536), {
    elems: 16384,
    count: 4,
    total: 65536,
  });
  // A row over the limit: flat segments, a multiple of 4 elements.
  const flat = segmentLayout({ shape: [2, 100000], dtype: "f32" }, 65536)!;
  assert.equal(flat.elems % 4, 0);
  assert.ok(flat.elems * 4 <= 65536 && flat.count === Math.ceil(200000 / flat.elems));
  // An odd row: whole rows, an element count that is a multiple of 4.
  const odd = segmentLayout({ shape: [1000, 37], dtype: "f32" }, 4096)!;
  assert.equal(odd.elems % 37, 0);
  assert.equal(odd.elems % 4, 0);
});

function lmHeadGraph() {
  const g = new Graph();
  const x = g.input("x", [64, 32]);
  const w = g.param("w", [512, 32]);
  const labels = g.input("labels", [64], "i32");
  let h = x;
  for (let i = 0; i < 4; i++) h = exp(add(h, 1));
  const loss = linearCrossEntropy(h, w, labels);
  g.output("loss", loss);
  g.output("s", sum(matmul(h, h, { transB: true })));
  return g;
}

Deno.test("layoutMemory: scratch, inputs and constants are placed by liveness, under the buffer limit", () => {
  const g = lmHeadGraph();
  const lim: MemoryLimits = { maxBufferBytes: 48 * 1024, maxBindingBytes: 44 * 1024, align: 256 };
  const plan = planGraph(g, undefined, lim.align);
  // A made-up scratch of 40 KiB for every node with a kernel.
  const scratch = new Map(plan.steps.map((_, si) => [si, [40 * 1024]]));
  const layout = layoutMemory(plan, scratch, lim, new Map());
  assert.ok(layout.arenaBytes.length > 1, `${layout.arenaBytes}`);
  assert.ok(layout.arenaBytes.every((b) => b <= lim.maxBufferBytes), `${layout.arenaBytes}`);
  assert.equal(layout.totalBytes, layout.arenaBytes.reduce((a, b) => a + b, 0));
  const end = plan.steps.length;
  const live: { slot: Slot; a: number; b: number; what: string }[] = [];
  for (const [r, [a, b]] of plan.live) {
    for (const slot of layout.values.get(r)!) live.push({ slot, a, b, what: `value ${r}` });
  }
  for (const v of g.values) {
    if (v.kind !== "input" && v.kind !== "const") continue;
    for (const slot of layout.values.get(v.id)!) live.push({ slot, a: 0, b: end, what: `${v.kind} ${v.id}` });
  }
  plan.steps.forEach((_, step) => {
    for (const slot of layout.scratch.get(step)!) {
      live.push({ slot, a: step, b: step, what: `scratch of step ${step}` });
    }
  });
  assertDisjoint(live);
  assert.throws(
    () => layoutMemory(plan, new Map([[0, [128 * 1024]]]), lim, new Map()),
    /asks for a 131072-byte scratch buffer; this adapter binds at most 45056 bytes/,
  );
});

Deno.test("plannedDeviceBytes: counts the WebGPU kernels' scratch (the fused LM head's logits chunk)", () => {
  const g = lmHeadGraph();
  const withScratch = plannedDeviceBytes(g);
  const arenaOnly = planGraph(g).arenaBytes;
  // The forward's [64, 512] f32 logits chunk (128 KiB) lives in scratch, far above the values' own peak.
  assert.ok(arenaOnly < 64 * 512 * 4 && withScratch >= 64 * 512 * 4, `${withScratch} vs ${arenaOnly}`);
});
