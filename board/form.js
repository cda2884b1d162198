/**
 * The training form as the page holds it (a store), and its YAML: the config's text, and a YAML file read into
 * the form (form_config.js makes the config).
 * @module
 */
import { parse, stringify } from "yaml";
import { defaultValues, fromConfig, toConfig } from "./form_config.js";
import { createStore } from "./store.js";

export { defaultValues, fromConfig, toConfig };

/**
 * @typedef {import("./form_config.js").KeySpec} KeySpec
 * @typedef {import("./form_config.js").FormValues} FormValues
 */

/**
 * A config's YAML text.
 * @param {Record<string, unknown>} config
 */
export function toYaml(config) {
  return stringify(config, { lineWidth: 0 });
}

/**
 * The form read from YAML text: the defaults, overridden by the YAML's keys; keys without a field go to `extra`.
 * @param {string} text
 * @returns {{ values: FormValues, extra: Record<string, unknown> }}
 */
export function fromYaml(text) {
  const cfg = parse(text);
  if (!cfg || typeof cfg !== "object" || Array.isArray(cfg)) {
    throw new Error("expected a YAML mapping of training keys");
  }
  return fromConfig(cfg);
}

/** The form: its values, a loaded YAML's other keys, and the key table. */
export const form = createStore({
  values: defaultValues(),
  /** @type {Record<string, unknown>} */
  extra: {},
  /** @type {Record<string, KeySpec>} */
  keys: {},
});

/**
 * Sets form fields.
 * @param {FormValues} patch
 */
export function setValues(patch) {
  form.set((s) => ({ values: { ...s.values, ...patch } }));
}

/** The config the form makes now. */
export function currentConfig() {
  const s = form.get();
  return toConfig(s.values, s.extra, s.keys);
}
