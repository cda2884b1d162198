/**
 * The top bar: language, model (a model found under the roots or a hub id), adapter/checkpoint, finetuning type,
 * quantization bit, template (set from the model's guessed template), executor (with the server's choice and
 * reason) and runner (Whetstone, or LLaMA-Factory when the server has it).
 * @module
 */
import { html } from "htm/preact";
import { catalog, lfAvailable } from "./catalog.js";
import { Input, Label, Select } from "./fields.js";
import { form, setValues } from "./form.js";
import { i18n, LANG_NAMES, LANGS, setLang, t } from "./i18n.js";
import { useStore } from "./store.js";

/** Picks a model: its guessed template goes to the template field. @param {string} path */
function pickModel(path) {
  const row = catalog.get().models.find((m) => m.path === path);
  if (row?.template) setValues({ template: row.template });
}

/** The top bar. */
export function TopBar() {
  const { lang } = useStore(i18n);
  const cat = useStore(catalog);
  const { values } = useStore(form);
  const exec = cat.health?.executor;
  const adapters = ["", ...cat.adapters.map((a) => a.path)];
  const templates = ["", ...cat.templates];
  const lf = lfAvailable();
  return html`<header class="topbar">
    <h1 data-i18n="app.title">${t("app.title")}</h1>
    <div class="grid">
      <div class="field">
        <${Label} for="lang" i18n="top.lang" />
        <select id="lang" name="lang" value=${lang} onChange=${(/** @type {any} */ e) =>
    setLang(e.currentTarget.value)}>
          ${LANGS.map((l) => html`<option value=${l} selected=${l === lang}>${LANG_NAMES[l]}</option>`)}
        </select>
      </div>
      <div class="wide" onChange=${(/** @type {any} */ e) => pickModel(e.target.value)}>
        <${Input} name="model_name_or_path" i18n="top.model" list="model-list" placeholder="Qwen/Qwen2.5-0.5B-Instruct" />
        <datalist id="model-list">${
    cat.models.map((m) => html`<option value=${m.path}>${m.model_type}</option>`)
  }</datalist>
      </div>
      <${Select} name="adapter_name_or_path" i18n="top.adapter" choices=${adapters}
        labels=${{ "": t("top.none") }} />
      <${Select} name="finetuning_type" i18n="top.finetuning_type" />
      <${Select} name="quantization_bit" i18n="top.quantization_bit" choices=${["", "4", "8"]}
        labels=${{ "": t("top.none") }} />
      ${
    cat.templates.length
      ? html`<${Select} name="template" i18n="top.template" choices=${templates} labels=${{ "": t("top.auto") }} />`
      : html`<${Input} name="template" i18n="top.template" placeholder=${t("top.auto")} />`
  }
      <div class="wide">
        <${Select} name="executor" i18n="top.executor" choices=${["auto", "webgpu", "onnx"]} />
        <small data-executor-choice title=${exec?.reason ?? ""}>
          ${exec ? html`<span data-i18n="top.server_picks">${t("top.server_picks")}</span> <b>${exec.auto}</b>` : ""}
          ${
    exec?.reason
      ? html`
        — ${exec.reason}
      `
      : ""
  }
        </small>
      </div>
      <div class="field">
        <${Label} for="runner" i18n="top.runner" />
        <select id="runner" name="runner" value=${cat.runner}
          onChange=${(/** @type {any} */ e) => catalog.set({ runner: e.currentTarget.value })}>
          <option value="whetstone" selected=${cat.runner === "whetstone"}>Whetstone</option>
          <option value="llamafactory" disabled=${!lf} selected=${cat.runner === "llamafactory"}>
            LLaMA-Factory${lf ? "" : ` (${t("top.unavailable")})`}
          </option>
        </select>
      </div>
    </div>
    ${cat.error ? html`<p class="error" role="alert">${cat.error}</p>` : ""}
    ${
    values.quantization_bit && values.finetuning_type !== "lora"
      ? html`<p class="warn" data-i18n="top.qlora_note">${t("top.qlora_note")}</p>`
      : ""
  }
  </header>`;
}
