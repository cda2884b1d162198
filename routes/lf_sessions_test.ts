import assert from "node:assert/strict";
import { parseYaml } from "../deps.ts";
import { isLfKey } from "./lf_yaml.ts";
import { makeTinyAdapter, standin, STANDIN_DIR } from "./lf_testing.ts";
import { readEvents, type Sse, startServer, type TestServer } from "./testing.ts";

/** A llamafactory run's arguments on the demo data. */
const lfArgs = (outputDir: string, extra: Record<string, unknown> = {}) => ({
  runner: "llamafactory",
  config: "examples/demo_lora_sft.yaml",
  output_dir: outputDir,
  max_steps: 5,
  ...extra,
});

async function events(t: TestServer, id: string, stop = (e: Sse) => e.event === "done"): Promise<Sse[]> {
  const res = await fetch(`${t.url}/sessions/${id}/events`);
  assert.equal(res.status, 200);
  return await readEvents(res, stop);
}

Deno.test("health lists the runners; llamafactory is available when llamafactory-cli is on PATH", async () => {
  const t = await startServer(standin());
  const none = await startServer({ llamafactory: { searchPath: "/nonexistent" } });
  try {
    const h = await t.call("GET", "/health");
    assert.deepEqual(h.json.runners, [
      { name: "whetstone", available: true },
      { name: "llamafactory", available: true, path: `${STANDIN_DIR}/llamafactory-cli` },
    ]);
    const h2 = await none.call("GET", "/health");
    assert.deepEqual(h2.json.runners[1], { name: "llamafactory", available: false, path: null });
    const r = await none.call("POST", "/sessions", lfArgs(`${none.tmp}/none`));
    assert.equal(r.status, 400);
    assert.equal(r.json.field, "runner");
  } finally {
    await t.close();
    await none.close();
  }
});

Deno.test("a llamafactory run: LF-only YAML, trainer_log.jsonl as step/eval events, done, listed, logged, restarted", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "whetstone-api-" });
  const adapter = `${tmp}/adapter`;
  await makeTinyAdapter(adapter);
  const opts = standin({ STANDIN_ADAPTER: adapter, STANDIN_STEPS: "5", STANDIN_SLEEP: "0.15", STANDIN_EVAL_AT: "3" });
  const t = await startServer({ ...opts, tmp });
  const out = `${t.tmp}/lf-run`;
  const bad = await t.call("POST", "/sessions", lfArgs(out, { not_an_lf_key: 1 }));
  assert.equal(bad.status, 400);
  assert.equal(bad.json.field, "not_an_lf_key");
  const outside = await t.call("POST", "/sessions", lfArgs("/etc/lf"));
  assert.equal(outside.status, 400);
  assert.equal(outside.json.field, "output_dir");

  const r = await t.call("POST", "/sessions", lfArgs(out, { executor: "webgpu", dataset: ["whetstone_demo"] }));
  assert.equal(r.status, 201, r.text);
  const id = r.json.id;
  assert.equal(r.json.runner, "llamafactory");
  assert.equal(r.json.yaml, `${out}/training_args.yaml`);
  assert.deepEqual(r.json.command.slice(1), ["train", `${out}/training_args.yaml`]);
  assert.ok(r.json.warnings.some((w: string) => w.startsWith("executor:")));
  assert.equal(r.json.plan.executor, "llamafactory");
  assert.equal(r.json.plan.total_steps, 5);
  assert.equal(r.json.state.busy, "llamafactory-cli train");
  const yaml = parseYaml(await Deno.readTextFile(`${out}/training_args.yaml`)) as Record<string, unknown>;
  for (const k of Object.keys(yaml)) assert.ok(isLfKey(k), `${k} is not an LF key`);
  assert.equal(yaml.executor, undefined);
  assert.equal(yaml.do_train, true);
  assert.equal(yaml.dataset, "whetstone_demo");
  assert.equal(yaml.output_dir, out);
  assert.match(String(yaml.model_name_or_path), /fixtures\/tiny\/model$/);

  const again = await t.call("POST", "/sessions", lfArgs(out));
  assert.equal(again.status, 409);
  assert.equal(again.json.field, "output_dir");

  const ev = await events(t, id);
  assert.equal(ev[0].event, "state");
  const steps = ev.filter((e) => e.event === "step").map((e) => JSON.parse(e.data));
  assert.ok(steps.length >= 4, `${steps.length} step events`); // the first may precede the subscription
  assert.deepEqual(steps.at(-1), {
    current_steps: 5,
    total_steps: 5,
    loss: 2.5,
    lr: 4.5e-05,
    epoch: 1,
    percentage: 100,
    elapsed_time: "0:00:05",
    remaining_time: "0:00:01",
  });
  const done = JSON.parse(ev.at(-1)!.data);
  assert.deepEqual(done, {
    steps: 5,
    global_step: 5,
    total_steps: 5,
    finished: true,
    exit_code: 0,
    signal: null,
    stopped: false,
  });
  const evals = ev.filter((e) => e.event === "eval").map((e) => JSON.parse(e.data));
  assert.deepEqual(evals.map((e) => [e.current_steps, e.eval_loss]), [[3, 2.5]]);
  const order = ev.map((e) => e.event === "step" ? JSON.parse(e.data).current_steps : e.event);
  assert.deepEqual(order.slice(order.indexOf("eval") - 1, order.indexOf("eval") + 2), [3, "eval", 4]);
  const row = (await t.call("GET", "/sessions")).json.sessions.find((s: { id: string }) => s.id === id);
  assert.equal(row.runner, "llamafactory");
  assert.equal(row.status, "finished");
  assert.equal(row.global_step, 5);
  assert.equal(row.last_loss, 2.5);
  const log = await t.call("GET", `/sessions/${id}/log`);
  assert.deepEqual(log.json.entries.map((e: { current_steps: number }) => e.current_steps), [1, 2, 3, 3, 4, 5]);
  assert.match(log.json.output, /Running training[\s\S]*Saving model checkpoint/);
  assert.ok((await Deno.stat(`${out}/adapter_model.safetensors`)).isFile);
  const live = await t.call("POST", `/sessions/${id}/step`, {});
  assert.equal(live.status, 409);
  assert.match(live.json.error, /LLaMA-Factory run/);

  await t.close(true);
  const t2 = await startServer({ ...opts, tmp: t.tmp });
  try {
    const row2 = (await t2.call("GET", "/sessions")).json.sessions.find((s: { id: string }) => s.id === id);
    assert.equal(row2.status, "finished");
    assert.equal(row2.runner, "llamafactory");
    const got = await t2.call("GET", `/sessions/${id}`);
    assert.equal(got.json.plan.executor, "llamafactory");
    assert.equal((await t2.call("POST", `/sessions/${id}/resume`)).status, 409);
    const ev = await events(t2, id);
    assert.deepEqual(ev.map((e) => e.event), ["state", "done"]);
    assert.equal(JSON.parse(ev[1].data).exit_code, 0);
    assert.equal((await t2.call("DELETE", `/sessions/${id}`)).status, 200);
  } finally {
    await t2.close();
  }
});

Deno.test("stop aborts a llamafactory run mid-run (SIGABRT, as LlamaBoard), and kills one that ignores it", async () => {
  for (const ignore of ["0", "1"]) {
    const tmp = await Deno.makeTempDir({ prefix: "whetstone-api-" });
    const adapter = `${tmp}/adapter`;
    await makeTinyAdapter(adapter);
    const env = { STANDIN_ADAPTER: adapter, STANDIN_STEPS: "200", STANDIN_SLEEP: "0.1", STANDIN_IGNORE_ABORT: ignore };
    const t = await startServer({ ...standin(env), tmp });
    const out = `${t.tmp}/lf-stop`;
    try {
      const r = await t.call("POST", "/sessions", lfArgs(out, { max_steps: 200 }));
      assert.equal(r.status, 201, r.text);
      const id = r.json.id;
      const res = await fetch(`${t.url}/sessions/${id}/events`);
      const all: Sse[] = [];
      const reading = readEvents(res, (e) => e.event === "done", (e) => all.push(e));
      while (!all.some((e) => e.event === "step")) await new Promise((r) => setTimeout(r, 20));
      const busy = await t.call("DELETE", `/sessions/${id}`);
      assert.equal(busy.status, 409);
      const stop = await t.call("POST", `/sessions/${id}/stop`);
      assert.equal(stop.status, 200, stop.text);
      assert.equal(stop.json.state.busy, null);
      assert.equal(stop.json.state.finished, false);
      assert.ok(stop.json.state.global_step < 200);
      const done = JSON.parse((await reading).at(-1)!.data);
      assert.equal(done.stopped, true);
      assert.equal(done.finished, false);
      if (ignore === "1") {
        assert.equal(done.signal, "SIGKILL");
        assert.equal(stop.json.checkpoint, null);
      } else {
        assert.equal(done.exit_code, 0); // LF's callback stops at the step boundary and the trainer saves
        assert.equal(stop.json.checkpoint, out);
      }
      const row = (await t.call("GET", "/sessions")).json.sessions.find((s: { id: string }) => s.id === id);
      assert.equal(row.status, "stopped");
    } finally {
      await t.close();
    }
  }
});
