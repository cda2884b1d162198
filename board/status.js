/**
 * The session's status as the board shows it: "running" only while it trains. The server says "running" (and an
 * events stream's `state` has `busy`) while any operation holds the session — a generation, an evaluation, a save,
 * an export — and those end without an event, so a board that took them for training would say "running" (and
 * keep Export disabled) after them.
 * @module
 */

/** The operations that hold a session for a moment, not a training run. */
const MOMENTARY = new Set(["generate", "evaluate", "save", "export", "finish"]);

/**
 * The status GET /sessions/:id answered, as shown.
 * @example
 * ```js
 * shownStatus("running", "generate", 30, 30); // "finished"
 * shownStatus("running", "step", 12, 30); // "running"
 * ```
 * @param {string} status what the server said
 * @param {string | null | undefined} busy the operation holding the session
 * @param {number} step
 * @param {number} total
 * @returns {string}
 */
export function shownStatus(status, busy, step, total) {
  if (status !== "running" || !busy || !MOMENTARY.has(busy)) return status;
  return total > 0 && step >= total ? "finished" : "ready";
}

/**
 * The status after an events stream's `state` event, given the one shown before.
 * @param {{ busy?: string | null, finished?: boolean }} state
 * @param {string} before
 * @returns {string}
 */
export function stateStatus(state, before) {
  if (state.busy && !MOMENTARY.has(state.busy)) return "running";
  if (state.finished) return "finished";
  return before === "running" ? "ready" : before;
}
