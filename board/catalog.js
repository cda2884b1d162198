/**
 * What the server offers the page: its health (executor choice, runners), the models and adapters under its roots,
 * the chat templates, the datasets of a folder, and the runner chosen for new sessions.
 * @module
 */
import { get } from "./api.js";
import { createStore } from "./store.js";

/**
 * @typedef {{ path: string, model_type: string | null, template?: string | null }} ModelRow
 * @typedef {{ path: string, base_model_name_or_path: string | null }} AdapterRow
 * @typedef {{ name: string, ranking?: boolean, formatting?: string, error?: string }} DatasetRow
 */

/** The server's offer. */
export const catalog = createStore({
  /** @type {any} */ health: null,
  /** @type {ModelRow[]} */ models: [],
  /** @type {AdapterRow[]} */ adapters: [],
  /** @type {string[]} */ templates: [],
  /** @type {DatasetRow[]} */ datasets: [],
  datasetError: "",
  runner: "whetstone",
  error: "",
});

/** Loads health, models and templates (each on its own: one failing leaves the others). */
export async function loadCatalog() {
  const errors = [];
  const [health, models, templates] = await Promise.allSettled([get("/health"), get("/models"), get("/templates")]);
  /** @type {Record<string, unknown>} */
  const patch = {};
  if (health.status === "fulfilled") patch.health = health.value;
  else errors.push(`/health: ${health.reason.message}`);
  if (models.status === "fulfilled") {
    patch.models = models.value.models;
    patch.adapters = models.value.adapters;
  } else errors.push(`/models: ${models.reason.message}`);
  if (templates.status === "fulfilled") patch.templates = templates.value.templates ?? [];
  patch.error = errors.join("; ");
  catalog.set(patch);
}

/**
 * Loads the datasets of `dir` (its dataset_info.json).
 * @param {string} dir
 */
export async function loadDatasets(dir) {
  try {
    const res = await get(`/datasets?dataset_dir=${encodeURIComponent(dir || "data")}`);
    catalog.set({ datasets: res.datasets, datasetError: "" });
  } catch (e) {
    catalog.set({ datasets: [], datasetError: /** @type {Error} */ (e).message });
  }
}

/** Whether the LLaMA-Factory runner is available (GET /health `runners`). */
export function lfAvailable() {
  const runners = catalog.get().health?.runners;
  return Array.isArray(runners) && runners.some((r) => r.name === "llamafactory" && r.available);
}
