/**
 * What the Train tab's buttons do to a session: plan (POST /sessions), start (POST /sessions/:id/run, planning
 * first when needed), stop (POST /sessions/:id/stop) and resume (POST /sessions/:id/run; after a server restart
 * POST /sessions/:id/resume first).
 * @module
 */
import { del, post } from "./api.js";
import { catalog } from "./catalog.js";
import { currentConfig } from "./form.js";
import { follow, live, openSession, refreshStatus } from "./live.js";

/** The session this page planned last and the config it was planned with. */
let planned = { id: "", json: "" };

/** The body of POST /sessions: the form's config, and the runner when it is not Whetstone. */
function body() {
  const config = currentConfig();
  const runner = catalog.get().runner;
  return runner === "whetstone" ? config : { ...config, runner };
}

/** Plans a session from the form (replacing an untouched one this page planned with other settings). */
export async function plan() {
  const b = body(), json = JSON.stringify(b);
  const cur = live.get();
  if (cur.id && cur.id === planned.id && planned.json !== json && cur.step === 0 && cur.status !== "running") {
    await del(`/sessions/${cur.id}`).catch(() => {});
  } else if (cur.id && cur.id === planned.id && planned.json === json && cur.status !== "stopped") {
    return cur.id;
  }
  const res = await post("/sessions", b);
  planned = { id: res.id, json };
  await openSession(res.id, { plan: res.plan, warnings: res.warnings ?? [] });
  return res.id;
}

/** Whether Start runs the current session rather than a new one. */
function keepCurrent() {
  const cur = live.get();
  if (!cur.id || cur.status === "finished") return false;
  return cur.id !== planned.id || planned.json === JSON.stringify(body());
}

/** Starts (or continues) training in the background. */
export async function start() {
  const id = keepCurrent() ? /** @type {string} */ (live.get().id) : await plan();
  await run(id);
}

/** @param {string} id */
async function run(id) {
  if (live.get().status === "stopped") {
    const res = await post(`/sessions/${id}/resume`);
    live.set({ plan: res.plan ?? live.get().plan });
  }
  await post(`/sessions/${id}/run`, {});
  live.set({ status: "running" });
  if (!live.get().following) follow(id);
}

/** Stops the running session at the next step boundary (a checkpoint is written). */
export async function stop() {
  const id = live.get().id;
  if (!id) throw new Error("no session: plan or open one first");
  const res = await post(`/sessions/${id}/stop`);
  if (res.checkpoint) live.set((s) => ({ log: [...s.log, `stop: checkpoint ${res.checkpoint}`] }));
  await refreshStatus();
}

/**
 * Resumes a session (the current one unless given): loads it again when the server restarted, then runs it.
 * @param {string} [id]
 */
export async function resume(id) {
  if (id && id !== live.get().id) await openSession(id);
  const cur = live.get().id;
  if (!cur) throw new Error("no session: plan or open one first");
  await run(cur);
}
