/**
 * Background runs over real HTTP with the tiny model: `POST /sessions/:id/run` answers 202 at once and trains while
 * `/events` streams the steps (with what a progress bar needs); `POST /sessions/:id/stop` ends the run at a step
 * boundary with a checkpoint, and a later `/run` continues exactly where it stopped (the losses of a run never
 * stopped); a failing run goes out as an `error` event and leaves the server serving.
 */
import assert from "node:assert/strict";
import { readEvents, type Reply, type Sse, startServer, tinyArgs } from "./testing.ts";

const data = (e: Sse) => JSON.parse(e.data);

/** Subscribes to a session's events until `done`; resolves once connected (the `state` event came). */
async function subscribe(url: string, id: string, onEvent?: (e: Sse) => void): Promise<{ events: Promise<Sse[]> }> {
  const res = await fetch(`${url}/sessions/${id}/events`);
  let connected!: () => void;
  const ready = new Promise<void>((r) => connected = r);
  const events = readEvents(res, (e) => e.event === "done", (e) => {
    if (e.event === "state") connected();
    onEvent?.(e);
  });
  await ready;
  return { events };
}

/** [step, loss] of each logged train step in trainer_log.jsonl. */
async function losses(call: (m: string, p: string) => Promise<Reply>, id: string): Promise<number[][]> {
  const entries: Record<string, number>[] = (await call("GET", `/sessions/${id}/log`)).json.entries;
  return entries.filter((e) => e.loss !== undefined).map((e) => [e.current_steps, e.loss]);
}

Deno.test("background run: 202 at once, progress events, stop with a checkpoint, run again to the end exactly", async () => {
  const t = await startServer();
  try {
    const args = (out: string) => tinyArgs(out, { max_steps: 30, save_steps: 100, eval_steps: 100 });
    // The reference: 30 steps never stopped.
    const ref = (await t.call("POST", "/sessions", args(`${t.tmp}/whole`))).json.id;
    assert.equal((await t.call("POST", `/sessions/${ref}/step`, { steps: 30 })).status, 200);
    const whole = await losses(t.call, ref);
    assert.deepEqual(whole.map(([s]) => s), Array.from({ length: 30 }, (_, i) => i + 1));

    const out = `${t.tmp}/run`;
    const { id } = (await t.call("POST", "/sessions", args(out))).json;
    let stopping: Promise<Reply> | undefined;
    const first = await subscribe(t.url, id, (e) => {
      // Stop once step 8 is done: mid-way, 22 steps to go.
      if (e.event === "step" && data(e).current_steps === 8) stopping = t.call("POST", `/sessions/${id}/stop`);
    });
    const run = await t.call("POST", `/sessions/${id}/run`);
    assert.equal(run.status, 202, run.text);
    assert.equal(run.json.state.busy, "step");
    const again = await t.call("POST", `/sessions/${id}/run`, { steps: 1 });
    assert.equal(again.status, 409, again.text);
    assert.match(again.json.error, /busy/);
    const evs = await first.events;
    const steps = evs.filter((e) => e.event === "step").map(data);
    for (const r of steps) {
      for (const k of ["current_steps", "total_steps", "loss", "lr", "throughput", "percentage"]) {
        assert.equal(typeof r[k], "number", `${k} in ${JSON.stringify(r)}`);
      }
      assert.match(r.elapsed_time, /^\d+:\d\d:\d\d$/);
      assert.match(r.remaining_time, /^\d+:\d\d:\d\d$/);
      assert.equal(r.total_steps, 30);
    }
    const done = data(evs.at(-1)!);
    const at = done.global_step;
    assert.ok(at >= 8 && at < 30, `stopped mid-way, at ${at}`);
    assert.deepEqual(done, { steps: at, global_step: at, total_steps: 30, finished: false });
    assert.deepEqual(steps.map((r) => r.current_steps), Array.from({ length: at }, (_, i) => i + 1));

    const stop = await stopping!;
    assert.equal(stop.status, 200, stop.text);
    assert.deepEqual(stop.json, {
      id,
      state: { ...stop.json.state, busy: null, global_step: at },
      checkpoint: `${out}/checkpoint-${at}`,
    });
    await Deno.stat(`${out}/checkpoint-${at}/adapter_model.safetensors`);
    await Deno.stat(`${out}/checkpoint-${at}/optimizer.safetensors`);
    const idle = await t.call("POST", `/sessions/${id}/stop`);
    assert.equal(idle.status, 409);
    assert.match(idle.json.error, /no background run to stop/);
    const row = (await t.call("GET", "/sessions")).json.sessions.find((s: { id: string }) => s.id === id);
    assert.deepEqual([row.status, row.runner, row.global_step], ["ready", "whetstone", at]);

    // Run again: it goes on from the step it stopped at, to the end, with the losses of the run never stopped.
    const second = await subscribe(t.url, id);
    assert.equal((await t.call("POST", `/sessions/${id}/run`, {})).status, 202);
    const end = data((await second.events).at(-1)!);
    assert.deepEqual(end, { steps: 30 - at, global_step: 30, total_steps: 30, finished: true });
    const resumed = await losses(t.call, id);
    assert.deepEqual(resumed.map(([s]) => s), whole.map(([s]) => s));
    resumed.forEach(([s, loss], i) => {
      const want = whole[i][1];
      assert.ok(Math.abs(loss - want) <= 1e-5 * Math.abs(want), `step ${s}: ${loss} vs ${want}`);
    });
    const finished = await t.call("POST", `/sessions/${id}/run`);
    assert.equal(finished.status, 409);
    assert.match(finished.json.error, /run all of its 30 steps/);
    await Deno.stat(`${out}/adapter_model.safetensors`);
  } finally {
    await t.close();
  }
});

Deno.test("background run: a failing run is an `error` event; the server goes on, the session is idle", async () => {
  const lines: string[] = [];
  const t = await startServer({ log: (l) => lines.push(l) });
  try {
    const out = `${t.tmp}/fails`;
    const { id } = (await t.call("POST", "/sessions", tinyArgs(out, { max_steps: 12, save_steps: 4 }))).json;
    // The checkpoint at step 4 cannot be written: output_dir is now a file.
    await Deno.remove(out, { recursive: true });
    await Deno.writeTextFile(out, "not a folder");
    const { events } = await subscribe(t.url, id);
    assert.equal((await t.call("POST", `/sessions/${id}/run`, { steps: 10 })).status, 202);
    const evs = await events;
    assert.deepEqual(evs.map((e) => e.event).slice(-2), ["error", "done"]);
    const error = data(evs.at(-2)!);
    assert.equal(error.global_step, 4);
    assert.ok(error.error.length > 0);
    assert.equal(data(evs.at(-1)!).error, error.error);
    assert.equal((await t.call("GET", "/health")).status, 200);
    const s = (await t.call("GET", `/sessions/${id}`)).json;
    assert.deepEqual([s.status, s.busy, s.global_step], ["ready", null, 4]);
    assert.ok(lines.some((l) => l.includes(`[${id}] background run failed at step 4`)), lines.join("\n"));
    // Nothing runs now: stop is a 409.
    assert.equal((await t.call("POST", `/sessions/${id}/stop`)).status, 409);
  } finally {
    await t.close();
  }
});

Deno.test("background run: closing the server stops the runs first", async () => {
  const t = await startServer();
  const { id } = (await t.call("POST", "/sessions", tinyArgs(`${t.tmp}/run`, { max_steps: 1000 }))).json;
  assert.equal((await t.call("POST", `/sessions/${id}/run`)).status, 202);
  const session = await t.server.context.sessions.live(id);
  assert.equal(t.server.context.runs.running(id), true);
  await t.close(true);
  assert.equal(t.server.context.runs.running(id), false);
  assert.ok(session.globalStep < 1000 && session.busy === undefined);
  await Deno.remove(t.tmp, { recursive: true });
});

Deno.test("background run: bad bodies are 400s naming the field; unknown sessions 404", async () => {
  const t = await startServer();
  try {
    for (const body of [{ steps: 0 }, { steps: 1.5 }, { stepz: 1 }]) {
      const r = await t.call("POST", "/sessions/nope/run", body);
      assert.deepEqual([r.status, r.json.field], [400, Object.keys(body)[0]], r.text);
    }
    for (const path of ["/sessions/nope/run", "/sessions/nope/stop"]) {
      assert.equal((await t.call("POST", path)).status, 404);
    }
  } finally {
    await t.close();
  }
});
