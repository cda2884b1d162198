/**
 * Sessions survive a restart: their records stay in Deno KV, a new server lists them as stopped, and a resume
 * loads the latest checkpoint, after which the steps repeat those of a run never stopped.
 */
import assert from "node:assert/strict";
import { startServer, tinyArgs } from "./testing.ts";

Deno.test("restart: a restarted server lists the sessions and resumes one from its latest checkpoint", async () => {
  const first = await startServer();
  const tmp = first.tmp;
  let id: string, whole: number[];
  try {
    // The reference: 4 steps never stopped.
    const ref = (await first.call("POST", "/sessions", tinyArgs(`${tmp}/whole`))).json.id;
    whole = (await first.call("POST", `/sessions/${ref}/step`, { steps: 4 })).json.steps.map((s: { loss: number }) =>
      s.loss
    );
    await first.call("DELETE", `/sessions/${ref}`);
    // The session to restart: 2 steps, saved (checkpoint-2), then a third step that no checkpoint holds.
    id = (await first.call("POST", "/sessions", tinyArgs(`${tmp}/cut`, { save_steps: 100 }))).json.id;
    await first.call("POST", `/sessions/${id}/step`, { steps: 2 });
    assert.equal((await first.call("POST", `/sessions/${id}/save`)).json.checkpoint, `${tmp}/cut/checkpoint-2`);
    await first.call("POST", `/sessions/${id}/step`, { steps: 1 });
  } finally {
    await first.close(true);
  }

  const second = await startServer({ tmp });
  try {
    const list = (await second.call("GET", "/sessions")).json.sessions;
    assert.equal(list.length, 1);
    assert.deepEqual([list[0].id, list[0].status, list[0].global_step], [id, "stopped", 3]);
    const step = await second.call("POST", `/sessions/${id}/step`, { steps: 1 });
    assert.equal(step.status, 409);
    assert.match(step.json.error, /not loaded .* POST \/sessions\/\w+\/resume/);
    const log = await second.call("GET", `/sessions/${id}/log`);
    assert.deepEqual(log.json.entries.map((e: { current_steps: number }) => e.current_steps), [1, 2, 3, 3]);

    const res = await second.call("POST", `/sessions/${id}/resume`);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.resumed_from, `${tmp}/cut/checkpoint-2`);
    assert.equal(res.json.state.global_step, 2);
    assert.equal((await second.call("POST", `/sessions/${id}/resume`)).status, 409);
    const steps = (await second.call("POST", `/sessions/${id}/step`, { steps: 2 })).json.steps;
    assert.deepEqual(steps.map((s: { current_steps: number }) => s.current_steps), [3, 4]);
    steps.forEach((s: { loss: number }, i: number) => {
      const want = whole[2 + i];
      assert.ok(Math.abs(s.loss - want) <= 1e-5 * Math.abs(want), `step ${3 + i}: ${s.loss} vs ${want}`);
    });
    const after = await second.call("GET", `/sessions/${id}/log`);
    assert.deepEqual(after.json.entries.map((e: { current_steps: number }) => e.current_steps), [1, 2, 3, 3, 4]);
    assert.equal((await second.call("GET", `/sessions/${id}`)).json.status, "ready");
  } finally {
    await second.close();
  }
});
