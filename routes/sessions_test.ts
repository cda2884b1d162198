/**
 * Sessions over real HTTP on loopback with the built-in tiny model and the demo data: creation and its errors,
 * stepping with server-sent events, the log, evaluation, generation, save, export, busy and finished sessions,
 * deletion, and 404s for unknown ids.
 */
import assert from "node:assert/strict";
import { readEvents, startServer, tinyArgs } from "./testing.ts";

Deno.test("sessions: create returns the plan; bad arguments are 400s naming the field; paths stay in the roots", async () => {
  const t = await startServer();
  try {
    const out = `${t.tmp}/run`;
    const res = await t.call("POST", "/sessions", tinyArgs(out));
    assert.equal(res.status, 201, res.text);
    const { id, plan, state } = res.json;
    assert.match(id, /^[0-9a-f]{12}$/);
    assert.equal(plan.total_steps, 6);
    assert.equal(plan.finetuning_type, "lora");
    assert.ok(plan.trainable_parameters > 0 && plan.trainable_parameters < plan.parameters, res.text);
    assert.ok(plan.memory.activations > 0 && plan.memory.total >= plan.memory.parameters + plan.memory.optimizer);
    assert.deepEqual([state.global_step, state.busy, state.output_dir], [0, null, out]);

    const bad = await t.call("POST", "/sessions", tinyArgs(`${t.tmp}/b`, { learning_rate: "abc", lerning_rate: 1 }));
    assert.equal(bad.status, 400);
    assert.equal(bad.json.field, "learning_rate");
    assert.equal(bad.json.problems.length, 2);
    assert.match(bad.json.error, /learning_rate: expected a number/);
    assert.match(bad.json.error, /unknown key "lerning_rate"; did you mean learning_rate\?/);
    const escape = await t.call("POST", "/sessions", tinyArgs("../../escape"));
    assert.deepEqual([escape.status, escape.json.field], [400, "output_dir"]);
    assert.match(escape.json.error, /outside the allowed roots/);
    const config = await t.call("POST", "/sessions", { config: "/etc/passwd" });
    assert.deepEqual([config.status, config.json.field], [400, "config"]);
    const data = await t.call("POST", "/sessions", tinyArgs(`${t.tmp}/d`, { dataset: "nope" }));
    assert.equal(data.status, 400);
    assert.match(data.json.error, /nope/);
    const twice = await t.call("POST", "/sessions", tinyArgs(out));
    assert.equal(twice.status, 409);
    assert.match(twice.json.error, new RegExp(`output folder of session ${id}`));

    const list = await t.call("GET", "/sessions");
    assert.deepEqual(list.json.sessions.map((s: { id: string; status: string }) => [s.id, s.status]), [[id, "ready"]]);
    const one = await t.call("GET", `/sessions/${id}`);
    assert.equal(one.json.plan.total_steps, 6);
    assert.equal(one.json.config.output_dir, out);
  } finally {
    await t.close();
  }
});

Deno.test("sessions: step with events, log, evaluate, generate, save, export, busy, finished, delete", async () => {
  const t = await startServer();
  try {
    const out = `${t.tmp}/run`;
    const { id } = (await t.call("POST", "/sessions", tinyArgs(out, { max_steps: 12 }))).json;

    // Events: `state` on connect, then one `step` per step, `eval` and `save` at step 3, and `done`.
    const events = await fetch(`${t.url}/sessions/${id}/events`);
    assert.equal(events.headers.get("content-type"), "text/event-stream; charset=utf-8");
    let connected!: () => void;
    const ready = new Promise<void>((r) => connected = r);
    const seen = readEvents(events, (e) => e.event === "done", (e) => e.event === "state" && connected());
    await ready;
    const step = await t.call("POST", `/sessions/${id}/step`, { steps: 4 });
    assert.equal(step.status, 200, step.text);
    const records = step.json.steps;
    assert.deepEqual(records.map((r: { current_steps: number }) => r.current_steps), [1, 2, 3, 4]);
    for (const r of records) {
      assert.ok(Number.isFinite(r.loss) && r.grad_norm > 0 && r.lr >= 0 && r.throughput > 0, JSON.stringify(r));
      for (const k of ["total_steps", "epoch", "percentage", "elapsed_time", "remaining_time", "total_tokens"]) {
        assert.ok(k in r, `a step record lacks ${k}`);
      }
    }
    assert.ok(records[3].loss < records[0].loss, "the loss falls");
    const evs = await seen;
    assert.deepEqual(evs.map((e) => e.event), ["state", "step", "step", "step", "eval", "save", "step", "done"]);
    assert.deepEqual(evs.filter((e) => e.event === "step").map((e) => JSON.parse(e.data)), records);
    assert.deepEqual(JSON.parse(evs.at(-1)!.data), { steps: 4, global_step: 4, total_steps: 12, finished: false });

    const log = (await t.call("GET", `/sessions/${id}/log`)).json.entries;
    assert.deepEqual(log.map((l: { current_steps: number }) => l.current_steps), [1, 2, 3, 3, 4]);
    assert.ok(log[3].eval_loss > 0);

    const ev = await t.call("POST", `/sessions/${id}/evaluate`);
    assert.equal(ev.status, 200);
    assert.ok(ev.json.eval_loss > 0 && Math.abs(ev.json.perplexity - Math.exp(ev.json.eval_loss)) < 1e-9);
    assert.equal(ev.json.current_steps, 4);

    const chat = { messages: [{ role: "user", content: "What is Whetstone?" }], max_new_tokens: 8, do_sample: false };
    const g1 = await t.call("POST", `/sessions/${id}/generate`, chat);
    assert.equal(g1.status, 200, g1.text);
    assert.equal(typeof g1.json.text, "string");
    assert.ok(["stop", "length"].includes(g1.json.finish_reason));
    assert.ok(g1.json.usage.prompt_tokens > 5 && g1.json.usage.completion_tokens <= 8);
    const g2 = await t.call("POST", `/sessions/${id}/generate`, chat);
    assert.equal(g2.json.text, g1.json.text, "greedy answers repeat");
    const badChat = await t.call("POST", `/sessions/${id}/generate`, {
      messages: [{ role: "assistant", content: "x" }],
    });
    assert.deepEqual([badChat.status, badChat.json.field], [400, "messages[0].role"]);

    const saved = await t.call("POST", `/sessions/${id}/save`);
    assert.equal(saved.json.checkpoint, `${out}/checkpoint-4`);
    await Deno.stat(`${out}/checkpoint-4/adapter_model.safetensors`);
    await Deno.stat(`${out}/checkpoint-4/optimizer.safetensors`);
    await Deno.stat(`${out}/adapter_config.json`);

    const exp = await t.call("POST", `/sessions/${id}/export`, {
      export_dir: `${t.tmp}/merged`,
      infer_dtype: "float32",
    });
    assert.equal(exp.status, 200, exp.text);
    assert.equal(JSON.parse(await Deno.readTextFile(`${t.tmp}/merged/config.json`)).torch_dtype, "float32");
    for (const dir of [".", out, `${out}/inner`, t.tmp]) {
      const no = await t.call("POST", `/sessions/${id}/export`, { export_dir: dir });
      assert.deepEqual([no.status, no.json.field], [400, "export_dir"], `${dir}: ${no.text}`);
    }

    for (const body of [{ steps: 0 }, { stepz: 1 }, { steps: 1.5 }]) {
      const no = await t.call("POST", `/sessions/${id}/step`, body);
      assert.equal(no.status, 400, JSON.stringify(body));
      assert.equal(no.json.field, Object.keys(body)[0]);
    }
    // While steps run, the session is busy: another step, a generation or a delete get a 409.
    const running = t.call("POST", `/sessions/${id}/step`, { steps: 6 });
    for (let i = 0; i < 400; i++) {
      if ((await t.call("GET", `/sessions/${id}`)).json.status === "running") break;
      await new Promise((r) => setTimeout(r, 5));
    }
    const busy = await t.call("POST", `/sessions/${id}/step`, { steps: 1 });
    assert.equal(busy.status, 409, busy.text);
    assert.match(busy.json.error, /busy \(step is running\)/);
    assert.equal((await t.call("POST", `/sessions/${id}/generate`, chat)).status, 409);
    assert.equal((await t.call("DELETE", `/sessions/${id}`)).status, 409);
    assert.equal((await running).json.state.global_step, 10);
    const rest = await t.call("POST", `/sessions/${id}/step`, { steps: 10 });
    assert.deepEqual(rest.json.steps.map((r: { current_steps: number }) => r.current_steps), [11, 12]);
    assert.equal(rest.json.state.finished, true);
    await Deno.stat(`${out}/all_results.json`);
    const over = await t.call("POST", `/sessions/${id}/step`);
    assert.equal(over.status, 409);
    assert.match(over.json.error, /run all of its 12 steps/);
    assert.equal((await t.call("GET", "/sessions")).json.sessions[0].status, "finished");

    const del = await t.call("DELETE", `/sessions/${id}`);
    assert.deepEqual(del.json, { deleted: id, output_dir: out, files: "kept" });
    assert.equal((await t.call("GET", `/sessions/${id}`)).status, 404);
    assert.equal((await t.call("DELETE", `/sessions/${id}`)).status, 404);
    await Deno.stat(`${out}/adapter_model.safetensors`);
  } finally {
    await t.close();
  }
});

Deno.test("sessions: unknown ids get a 404 on every session route", async () => {
  const t = await startServer();
  try {
    const routes: [string, string, unknown?][] = [
      ["GET", "/sessions/nope"],
      ["DELETE", "/sessions/nope"],
      ["POST", "/sessions/nope/resume"],
      ["GET", "/sessions/nope/log"],
      ["GET", "/sessions/nope/events"],
      ["POST", "/sessions/nope/step", { steps: 1 }],
      ["POST", "/sessions/nope/evaluate"],
      ["POST", "/sessions/nope/generate", { messages: [{ role: "user", content: "x" }] }],
      ["POST", "/sessions/nope/save"],
      ["POST", "/sessions/nope/export", { export_dir: "out/x" }],
    ];
    for (const [method, path, body] of routes) {
      const r = await t.call(method, path, body);
      assert.equal(r.status, 404, `${method} ${path}: ${r.text}`);
      assert.match(r.json.error, /no session "nope"/);
    }
  } finally {
    await t.close();
  }
});
