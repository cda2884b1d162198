import assert from "node:assert/strict";
import {
  cleanCheckpointLeftovers,
  latestCheckpoint,
  listCheckpoints,
  loadJsonState,
  loadOptimizerState,
  pruneCheckpoints,
  RNG_FILE,
  saveJsonState,
  saveOptimizerState,
  SCHEDULER_FILE,
  TRAINER_STATE_FILE,
  writeCheckpointAtomic,
} from "./checkpoint.ts";

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

/** A checkpoint writer: some payload, then the marker last. */
function writer(step: number, payload = "weights") {
  return async (tmp: string) => {
    await Deno.writeTextFile(`${tmp}/model.bin`, `${payload}@${step}`);
    await saveJsonState(tmp, SCHEDULER_FILE, { step });
    await Deno.writeTextFile(`${tmp}/${TRAINER_STATE_FILE}`, JSON.stringify({ global_step: step }));
  };
}

Deno.test("writeCheckpointAtomic writes checkpoint-N; list/latest sort by step", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (const s of [10, 2, 100]) await writeCheckpointAtomic(dir, s, writer(s), { fsync: s === 10 });
    assert.deepEqual(await names(dir), ["checkpoint-10", "checkpoint-100", "checkpoint-2"]);
    assert.deepEqual((await listCheckpoints(dir)).map((c) => c.step), [2, 10, 100]);
    const last = await latestCheckpoint(dir);
    assert.equal(last?.name, "checkpoint-100");
    assert.equal(await Deno.readTextFile(`${last!.path}/model.bin`), "weights@100");
    assert.deepEqual(await loadJsonState(last!.path, SCHEDULER_FILE), { step: 100 });
    assert.equal(await latestCheckpoint(`${dir}/missing`), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a save killed mid-write leaves the previous checkpoints intact and is ignored", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeCheckpointAtomic(dir, 5, writer(5));
    // write() throws halfway: the temp folder is removed, checkpoint-5 untouched, no checkpoint-10.
    await assert.rejects(
      writeCheckpointAtomic(dir, 10, async (tmp) => {
        await Deno.writeTextFile(`${tmp}/model.bin`, "half");
        throw new Error("killed");
      }),
      /killed/,
    );
    assert.deepEqual(await names(dir), ["checkpoint-5"]);
    // Replacing checkpoint-5 with a failing write keeps the old one.
    await assert.rejects(writeCheckpointAtomic(dir, 5, () => Promise.reject(new Error("disk full"))), /disk full/);
    assert.equal(await Deno.readTextFile(`${dir}/checkpoint-5/model.bin`), "weights@5");
    // A write that forgets the marker is refused.
    await assert.rejects(
      writeCheckpointAtomic(dir, 6, (tmp) => Deno.writeTextFile(`${tmp}/model.bin`, "x")),
      /expected write\(\) to create trainer_state.json/,
    );

    // A process killed mid-save (no cleanup ran): a leftover temp folder, a checkpoint-N folder without marker
    // (e.g. copied by hand), and a checkpoint moved aside just before its replacement was renamed in.
    await writeCheckpointAtomic(dir, 7, writer(7));
    await Deno.mkdir(`${dir}/.checkpoint-10.tmp-deadbeef`);
    await Deno.writeTextFile(`${dir}/.checkpoint-10.tmp-deadbeef/model.bin`, "half");
    await Deno.mkdir(`${dir}/checkpoint-20`);
    await Deno.writeTextFile(`${dir}/checkpoint-20/model.bin`, "partial");
    await Deno.rename(`${dir}/checkpoint-7`, `${dir}/.checkpoint-7.old-0123abcd`);
    assert.deepEqual((await listCheckpoints(dir)).map((c) => c.name), ["checkpoint-5"]);
    assert.equal((await latestCheckpoint(dir))?.step, 5);

    // The next cleanup (run by every write) deletes the temp folder and restores the moved-aside checkpoint.
    assert.deepEqual((await cleanCheckpointLeftovers(dir)).sort(), [
      ".checkpoint-10.tmp-deadbeef",
      ".checkpoint-7.old-0123abcd",
    ]);
    assert.deepEqual((await listCheckpoints(dir)).map((c) => c.step), [5, 7]);
    await Deno.mkdir(`${dir}/.checkpoint-3.tmp-00ff`);
    await writeCheckpointAtomic(dir, 8, writer(8));
    assert.deepEqual(await names(dir), ["checkpoint-20", "checkpoint-5", "checkpoint-7", "checkpoint-8"]);
    assert.equal(await Deno.readTextFile(`${dir}/checkpoint-5/model.bin`), "weights@5");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeCheckpointAtomic replaces an existing checkpoint", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeCheckpointAtomic(dir, 4, writer(4, "old"));
    await writeCheckpointAtomic(dir, 4, writer(4, "new"));
    assert.deepEqual(await names(dir), ["checkpoint-4"]);
    assert.equal(await Deno.readTextFile(`${dir}/checkpoint-4/model.bin`), "new@4");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pruneCheckpoints rotates like HF: oldest first, newest and protected kept", async () => {
  const dir = await Deno.makeTempDir();
  try {
    for (const s of [1, 2, 3, 4, 5]) await writeCheckpointAtomic(dir, s, writer(s), { fsync: false });
    const steps = async () => (await listCheckpoints(dir)).map((c) => c.step);
    assert.deepEqual(await pruneCheckpoints(dir, 0), []);
    assert.deepEqual(await pruneCheckpoints(dir, undefined), []);
    assert.deepEqual(await pruneCheckpoints(dir, 5), []);
    // best = checkpoint-2 is protected; keeps max(3, 2) = 3.
    const deleted = await pruneCheckpoints(dir, 3, [`${dir}/checkpoint-2/`]);
    assert.deepEqual(deleted, [`${dir}/checkpoint-1`, `${dir}/checkpoint-3`]);
    assert.deepEqual(await steps(), [2, 4, 5]);
    // limit 1 with a protected best keeps 2 (the best and the newest).
    await pruneCheckpoints(dir, 1, [2]);
    assert.deepEqual(await steps(), [2, 5]);
    await pruneCheckpoints(dir, 1);
    assert.deepEqual(await steps(), [5]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("optimizer state round-trips through optimizer.safetensors; JSON states atomically", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const m = new Float32Array([1, -2.5, 3e-8]);
    const v = new Float32Array(new ArrayBuffer(32), 8, 3).fill(0.25); // a view with an offset
    await saveOptimizerState(dir, new Map([["w.exp_avg", m], ["w.exp_avg_sq", v]]), { step: "12" });
    const { tensors, metadata } = await loadOptimizerState(dir);
    assert.deepEqual([...tensors.keys()].sort(), ["w.exp_avg", "w.exp_avg_sq"]);
    assert.deepEqual(tensors.get("w.exp_avg"), m);
    assert.deepEqual(tensors.get("w.exp_avg_sq"), new Float32Array([0.25, 0.25, 0.25]));
    assert.deepEqual(metadata, { step: "12" });
    await saveJsonState(dir, RNG_FILE, { seed: 42, epoch: 1, index: [3, 1, 2] });
    await saveJsonState(dir, RNG_FILE, { seed: 42, epoch: 2 });
    assert.deepEqual(await loadJsonState(dir, RNG_FILE), { seed: 42, epoch: 2 });
    assert.deepEqual(await names(dir), ["optimizer.safetensors", "rng_state.json"]); // no temp files left
    await Deno.writeTextFile(`${dir}/bad.json`, "{");
    await assert.rejects(loadJsonState(dir, "bad.json"), /bad.json: expected JSON/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a process SIGKILLed mid-save leaves no checkpoint-N and the previous one intact", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await writeCheckpointAtomic(dir, 1, writer(1));
    const mod = new URL("./checkpoint.ts", import.meta.url).href;
    const code = `import { writeCheckpointAtomic } from ${JSON.stringify(mod)};
      await writeCheckpointAtomic(${JSON.stringify(dir)}, 2, async (tmp) => {
        await Deno.writeTextFile(tmp + "/model.bin", "half");
        console.log("writing");
        await new Promise(() => setInterval(() => {}, 1000));
      });`;
    const child = new Deno.Command(Deno.execPath(), { args: ["eval", code], stdout: "piped", stderr: "inherit" })
      .spawn();
    const reader = child.stdout.getReader();
    const { value } = await reader.read();
    assert.match(new TextDecoder().decode(value), /writing/);
    child.kill("SIGKILL");
    await child.status;
    reader.releaseLock();
    await child.stdout.cancel();
    const left = await names(dir);
    assert.equal(left.length, 2);
    assert.match(left[0], /^\.checkpoint-2\.tmp-/);
    assert.deepEqual((await listCheckpoints(dir)).map((c) => c.name), ["checkpoint-1"]);
    assert.equal(await Deno.readTextFile(`${dir}/checkpoint-1/model.bin`), "weights@1");
    await cleanCheckpointLeftovers(dir);
    assert.deepEqual(await names(dir), ["checkpoint-1"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
