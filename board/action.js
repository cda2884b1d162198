/**
 * A hook running a button's action: which one runs now, and the last error (shown in a role="alert" element).
 * @module
 */
import { html } from "htm/preact";
import { useState } from "preact/hooks";

/**
 * @typedef {{ busy: string, error: string }} ActionState
 * @typedef {(name: string, fn: () => Promise<unknown>) => Promise<void>} RunAction
 */

/**
 * The state of a tab's actions and the function running one.
 * @returns {[ActionState, RunAction]}
 */
export function useAction() {
  const [state, setState] = useState({ busy: "", error: "" });
  /** @type {RunAction} */
  const run = async (name, fn) => {
    setState({ busy: name, error: "" });
    try {
      await fn();
      setState({ busy: "", error: "" });
    } catch (e) {
      console.error(e);
      setState({ busy: "", error: /** @type {Error} */ (e).message });
    }
  };
  return [state, run];
}

/**
 * The error of the last action, if any.
 * @param {{ error: string }} p
 */
export function ErrorLine(p) {
  return p.error ? html`<p class="error" role="alert" data-error>${p.error}</p>` : null;
}

/**
 * Bytes as text (KiB, MiB, GiB).
 * @param {number | null | undefined} n
 */
export function bytes(n) {
  if (typeof n !== "number" || !Number.isFinite(n)) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(2)} ${units[i]}`;
}
