import assert from "node:assert/strict";
import { badamBlocks, BadamSchedule, badamSwitch, type BadamSwitchMode } from "./badam.ts";

const G = JSON.parse(await Deno.readTextFile(new URL("../../fixtures/galore/badam_goldens.json", import.meta.url))) as {
  names: string[];
  blocks: { lf: string[][]; embed_and_head: string[][] };
  schedules: {
    blocks: number;
    interval: number;
    start: number | null;
    mode: BadamSwitchMode;
    active: number[];
    adam_step: number[];
  }[];
};

Deno.test("badam: blocks are BlockOptimizer's inferred prefixes (one per decoder layer under LF)", () => {
  const lf = badamBlocks(G.names);
  assert.deepEqual(lf.map((b) => b.prefixes), G.blocks.lf);
  assert.equal(lf.length, 12);
  assert.deepEqual(lf[1].params, G.names.filter((n) => n.startsWith("model.layers.1.")), "layers.1 is not layers.10");
  const covered = new Set(lf.flatMap((b) => b.params));
  assert.deepEqual(G.names.filter((n) => !covered.has(n)), [
    "model.embed_tokens.weight",
    "model.norm.weight",
    "lm_head.weight",
  ]);
  const all = badamBlocks(G.names, { includeEmbedding: true, includeLmHead: true });
  assert.deepEqual(all.map((b) => b.prefixes), G.blocks.embed_and_head);
  assert.deepEqual(all.at(-1)!.params, ["model.norm.weight", "lm_head.weight"]);
  assert.throws(() => badamBlocks(["a.weight"]), /no blocks/);
});

Deno.test("badam: the switch schedule and AdamW's step count match BlockOptimizer's", () => {
  for (const s of G.schedules) {
    const sch = new BadamSchedule(s.blocks, { switchMode: s.mode, switchInterval: s.interval, startBlock: s.start });
    const what = `${s.mode} every ${s.interval} from ${s.start}`;
    assert.deepEqual(s.active.map((_, i) => sch.blockAt(i + 1)), s.active, `${what}: blocks`);
    assert.deepEqual(s.active.map((_, i) => sch.stepInBlock(i + 1)), s.adam_step, `${what}: AdamW steps`);
    for (let n = 1; n < s.active.length; n++) {
      assert.equal(sch.switchesAfter(n), s.adam_step[n] === 1, `${what}: switch after step ${n}`);
    }
  }
});

Deno.test("badam: random mode draws seeded permutations, popped from the end", () => {
  const a = new BadamSchedule(5, { switchMode: "random", switchInterval: 1, seed: 7 });
  const order = Array.from({ length: 15 }, (_, i) => a.blockAt(i + 1));
  for (let e = 0; e < 3; e++) assert.deepEqual([...order.slice(5 * e, 5 * e + 5)].sort(), [0, 1, 2, 3, 4]);
  const b = new BadamSchedule(5, { switchMode: "random", switchInterval: 1, seed: 7 });
  assert.deepEqual(Array.from({ length: 15 }, (_, i) => b.blockAt(i + 1)), order, "same seed, same order");
  const c = new BadamSchedule(5, { switchMode: "random", switchInterval: 1, seed: 8 });
  assert.notDeepEqual(Array.from({ length: 15 }, (_, i) => c.blockAt(i + 1)), order);
  const d = new BadamSchedule(5, { switchMode: "random", switchInterval: 2, startBlock: 2, seed: 7 });
  assert.equal(d.blockAt(1), 2);
  assert.deepEqual([2, 4, 6, 8, 10].map((s) => d.blockAt(s)).sort(), [0, 1, 2, 3, 4]);
});

Deno.test("badam: a switch freezes the old block and resets the new one; bad settings are named", () => {
  const blocks = badamBlocks(G.names);
  const s = badamSwitch(blocks, 0, 1);
  assert.deepEqual(s.train, blocks[1].params);
  assert.deepEqual(s.freeze, blocks[0].params);
  assert.deepEqual(badamSwitch(blocks, 3, 3), { freeze: [], train: blocks[3].params }, "fixed: same block, reset");
  assert.deepEqual(badamSwitch(blocks, undefined, 0).freeze, []);
  const bad = (o: object) => () => new BadamSchedule(4, { switchMode: "ascending", switchInterval: 50, ...o });
  assert.throws(bad({ switchMode: "fixed" }), /fixed needs badam_start_block/);
  assert.throws(bad({ switchMode: "sideways" }), /must be one of ascending/);
  assert.throws(bad({ switchInterval: 0 }), /positive integer, got 0/);
  assert.throws(bad({ startBlock: 4 }), /in \[0, 4\), got 4/);
  assert.throws(() => new BadamSchedule(4, { switchMode: "ascending", switchInterval: 5 }).blockAt(0), /from 1/);
});
