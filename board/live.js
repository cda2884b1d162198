/**
 * The current session, live: its status, plan, train and eval losses, stage metrics, progress and log tail, read
 * from GET /sessions/:id and its trainer log, then followed on GET /sessions/:id/events?follow=true. The session
 * id is kept in localStorage, so a reload reopens it with its chart.
 * @module
 */
import { call, errorOf, get } from "./api.js";
import { readSse } from "./sse.js";
import { shownStatus, stateStatus } from "./status.js";
import { createStore } from "./store.js";

const KEY = "whetstone.session";
const LOG_LINES = 200;

/**
 * @typedef {{ step: number, value: number }} Point
 * @typedef {{
 *   id: string | null, status: string, runner: string, plan: any, warnings: string[], config: any,
 *   losses: Point[], evals: Point[], metrics: Record<string, number>, step: number, total: number,
 *   percentage: number, elapsed: string, remaining: string, throughput: number | null, log: string[],
 *   following: boolean
 * }} Live
 */

/** @returns {Live} */
const empty = () => ({
  id: null,
  status: "",
  runner: "",
  plan: null,
  warnings: [],
  config: null,
  losses: [],
  evals: [],
  metrics: {},
  step: 0,
  total: 0,
  percentage: 0,
  elapsed: "",
  remaining: "",
  throughput: null,
  log: [],
  following: false,
});

/** The current session's live state. */
export const live = createStore(empty());

/** The session id kept from the last visit, if any. */
export const keptSession = () => localStorage.getItem(KEY);

/** Fields of a step record that are not stage metrics. */
const BASIC = new Set([
  "current_steps",
  "total_steps",
  "loss",
  "eval_loss",
  "lr",
  "epoch",
  "percentage",
  "elapsed_time",
  "remaining_time",
  "throughput",
  "total_tokens",
  "grad_norm",
  "vram_allocated",
  "vram_reserved",
]);

/**
 * Points merged by step (a later value for a step replaces the earlier one).
 * @param {Point[]} list
 * @param {Point} p
 */
function merge(list, p) {
  const out = list.filter((x) => x.step !== p.step);
  out.push(p);
  return out.sort((a, b) => a.step - b.step);
}

/** @param {string} line */
function logLine(line) {
  live.set((s) => ({ log: [...s.log, line].slice(-LOG_LINES) }));
}

/** @param {unknown} x */
const fmt = (x) => typeof x === "number" ? (Number.isInteger(x) ? String(x) : x.toPrecision(4)) : String(x);

/**
 * Applies a trainer record (a step, an eval or a trainer_log.jsonl line) to the live state.
 * @param {Record<string, any>} rec
 * @param {boolean} [quiet] no log line (the log was read whole)
 */
export function applyRecord(rec, quiet = false) {
  const step = rec.current_steps ?? rec.step ?? 0;
  live.set((s) => {
    /** @type {Partial<Live>} */
    const patch = {
      step: Math.max(s.step, step),
      total: rec.total_steps ?? s.total,
      percentage: rec.percentage ?? s.percentage,
      elapsed: rec.elapsed_time ?? s.elapsed,
      remaining: rec.remaining_time ?? s.remaining,
      throughput: rec.throughput ?? s.throughput,
    };
    if (typeof rec.loss === "number") patch.losses = merge(s.losses, { step, value: rec.loss });
    if (typeof rec.eval_loss === "number") patch.evals = merge(s.evals, { step, value: rec.eval_loss });
    // Stage metrics of the steps (an evaluation's, eval_loss and perplexity, are the chart's).
    const metrics = typeof rec.eval_loss === "number"
      ? []
      : Object.entries(rec).filter(([k, v]) => !BASIC.has(k) && typeof v === "number");
    if (metrics.length) patch.metrics = { ...s.metrics, ...Object.fromEntries(metrics) };
    return patch;
  });
  if (quiet) return;
  const parts = Object.entries(rec).filter(([k, v]) =>
    !["current_steps", "total_steps", "percentage", "elapsed_time", "remaining_time"].includes(k) && v !== null
  ).map(([k, v]) => `${k}=${fmt(v)}`);
  logLine(`[${step}/${rec.total_steps ?? "?"}] ${parts.join(" ")}`);
}

/** @type {AbortController | undefined} */
let following;

/** Stops following the session's events. */
export function unfollow() {
  following?.abort();
  following = undefined;
  live.set({ following: false });
}

/** Reads the session's status again (GET /sessions/:id). */
export async function refreshStatus() {
  const id = live.get().id;
  if (!id) return;
  const s = await get(`/sessions/${id}`);
  if (live.get().id !== id) return;
  live.set({
    status: shownStatus(s.status, s.busy, s.global_step ?? 0, s.total_steps ?? 0),
    runner: s.runner ?? "whetstone",
    plan: s.plan ?? live.get().plan,
    config: s.config ?? live.get().config,
    step: Math.max(live.get().step, s.global_step ?? 0),
    total: s.total_steps ?? live.get().total,
  });
}

/** @type {number | undefined} */
let settling;

/**
 * Reads the status again once events pause (an operation without a `done` event, e.g. POST /step, ends silently).
 * @param {string} id
 */
function settle(id) {
  clearTimeout(settling);
  settling = setTimeout(() => {
    if (live.get().id === id) refreshStatus().catch(() => {});
  }, 2000);
}

/**
 * Follows the session's events until it is closed or another session is opened; resolves when the stream ends.
 * @param {string} id
 */
export async function follow(id) {
  unfollow();
  const ac = new AbortController();
  following = ac;
  live.set({ following: true });
  try {
    const res = await call(`/sessions/${id}/events?follow=true`, { signal: ac.signal });
    if (!res.ok) {
      const err = await errorOf(res);
      if (res.status !== 409) logLine(`events: ${err.message}`);
      return;
    }
    for await (const ev of readSse(res)) {
      if (ac.signal.aborted || live.get().id !== id) break;
      let data;
      try {
        data = JSON.parse(ev.data);
      } catch {
        continue;
      }
      if (ev.event === "state") {
        live.set((s) => ({
          status: stateStatus(data, s.status),
          step: data.global_step ?? s.step,
          total: data.total_steps ?? s.total,
        }));
      } else if (ev.event === "step") {
        if (live.get().status !== "running") live.set({ status: "running" });
        applyRecord(data);
        settle(id);
      } else if (ev.event === "eval") applyRecord(data);
      else if (ev.event === "save") logLine(`save: ${data.checkpoint} (step ${data.step})`);
      else if (ev.event === "error") logLine(`error: ${data.error}`);
      else if (ev.event === "done") {
        // A pending re-read from the last step would land later and could see the next operation's `busy`.
        clearTimeout(settling);
        logLine(`done: ${JSON.stringify(data)}`);
        await refreshStatus().catch(() => {});
      }
    }
  } catch (e) {
    if (!ac.signal.aborted) logLine(`events: ${/** @type {Error} */ (e).message}`);
  } finally {
    if (following === ac) {
      following = undefined;
      live.set({ following: false });
    }
  }
}

/**
 * Opens a session: its status and plan, its trainer log into the chart, then its events while it is loaded.
 * @param {string} id
 * @param {{ plan?: any, warnings?: string[] }} [known] what POST /sessions answered
 */
export async function openSession(id, known = {}) {
  unfollow();
  localStorage.setItem(KEY, id);
  live.set({ ...empty(), id, plan: known.plan ?? null, warnings: known.warnings ?? [] });
  await refreshStatus();
  if (live.get().status !== "stopped") follow(id);
  const { entries } = await get(`/sessions/${id}/log`);
  if (live.get().id !== id) return;
  for (const e of entries) applyRecord(e, true);
  if (entries.length) logLine(`log: ${entries.length} entries of trainer_log.jsonl`);
}

/** Forgets the current session (a new one will be planned). */
export function closeSession() {
  unfollow();
  localStorage.removeItem(KEY);
  live.set(empty());
}
