/**
 * The Train tab: stage, datasets (with their preview), the common arguments, the groups, the YAML the form makes
 * (save / load), and the session buttons (plan, start, stop, resume) over the session panel.
 * @module
 */
import { html } from "htm/preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { ErrorLine, useAction } from "./action.js";
import { post } from "./api.js";
import { catalog, loadDatasets } from "./catalog.js";
import { download } from "./download.js";
import { Input, Label, Num, Select } from "./fields.js";
import { currentConfig, form, fromYaml, setValues, toYaml } from "./form.js";
import { t } from "./i18n.js";
import { live } from "./live.js";
import { Preview } from "./preview.js";
import { plan, resume, start, stop } from "./session_actions.js";
import { useStore } from "./store.js";
import { TrainGroups } from "./train_groups.js";
import { SessionPanel } from "./train_live.js";

/** The dataset multi-select (names from GET /datasets of dataset_dir). */
function Datasets() {
  const { values } = useStore(form);
  const cat = useStore(catalog);
  const chosen = /** @type {string[]} */ (values.dataset);
  const names = [...new Set([...cat.datasets.map((d) => d.name), ...chosen])];
  return html`<div class="field wide">
    <${Label} for="f-dataset" i18n="arg.dataset" />
    <select id="f-dataset" name="dataset" multiple size="4" onChange=${(/** @type {any} */ e) =>
    setValues({ dataset: [...e.currentTarget.selectedOptions].map((o) => o.value) })}>
      ${names.map((n) => html`<option value=${n} selected=${chosen.includes(n)}>${n}</option>`)}
    </select>
    ${cat.datasetError ? html`<small class="error">${cat.datasetError}</small>` : ""}
  </div>`;
}

/** The tab. */
export function TrainTab() {
  const { values } = useStore(form);
  const s = useStore(live);
  const [act, run] = useAction();
  const [previewed, setPreviewed] = useState(null);
  const file = useRef(/** @type {HTMLInputElement | null} */ (null));
  const yaml = toYaml(currentConfig());
  const dir = String(values.dataset_dir);
  useEffect(() => {
    const h = setTimeout(() => loadDatasets(dir), 300);
    return () => clearTimeout(h);
  }, [dir]);
  const stages = {
    pt: t("stage.pt"),
    sft: t("stage.sft"),
    rm: t("stage.rm"),
    ppo: t("stage.ppo"),
    dpo: t("stage.dpo"),
    kto: t("stage.kto"),
  };
  const running = s.status === "running";
  const onFile = (/** @type {any} */ e) => {
    const f = e.currentTarget.files?.[0];
    e.currentTarget.value = "";
    if (!f) return;
    run("load-yaml", async () => form.set(fromYaml(await f.text())));
  };
  const button = (
    /** @type {string} */ action,
    /** @type {string} */ key,
    /** @type {() => Promise<unknown>} */ fn,
    disabled = false,
    cls = "",
  ) =>
    html`
      <button type="button" data-action=${action} data-i18n=${key} class=${cls} disabled=${disabled || act.busy !== ""}
        aria-busy=${act.busy === action} onClick=${() => run(action, fn)}>${t(key)}</button>
    `;
  return html`
    <div class="train">
      <div class="grid">
        <${Select} name="stage" i18n="arg.stage" labels=${stages}
          onPick=${(/** @type {string} */ v) => setValues({ packing: v === "pt" })} />
        <${Input} name="dataset_dir" i18n="arg.dataset_dir" />
        <${Datasets} />
        <div class="field">
            <span class="spacer"></span>
            ${button(
              "preview",
              "train.preview",
              async () => setPreviewed(await post("/datasets/preview", { ...currentConfig(), n: 3 })),
            )}
          </div>
      </div>
      <${Preview} result=${previewed} />
      <div class="grid">
        <${Num} name="learning_rate" i18n="arg.learning_rate" min="0" />
        <${Num} name="num_train_epochs" i18n="arg.num_train_epochs" min="0" />
        <${Num} name="max_steps" i18n="arg.max_steps" min="-1" step="1" placeholder="-1" />
        <${Num} name="max_grad_norm" i18n="arg.max_grad_norm" min="0" />
        <${Num} name="max_samples" i18n="arg.max_samples" min="1" step="1" />
        <${Num} name="cutoff_len" i18n="arg.cutoff_len" min="1" step="1" />
        <${Num} name="per_device_train_batch_size" i18n="arg.per_device_train_batch_size" min="1" step="1" />
        <${Num} name="gradient_accumulation_steps" i18n="arg.gradient_accumulation_steps" min="1" step="1" />
        <${Num} name="val_size" i18n="arg.val_size" min="0" step="0.001" />
        <${Select} name="lr_scheduler_type" i18n="arg.lr_scheduler_type" />
      </div>
      <${TrainGroups} />
      <div class="grid">
        <div class="wide">
          <${Input} name="output_dir" i18n="arg.output_dir" />
        </div>
      </div>
      <div class="buttons" role="group" aria-label=${t("train.actions")}>
          ${button("save-yaml", "train.save_yaml", () => Promise.resolve(download("whetstone_train.yaml", yaml)))}
          <input ref=${file} type="file" accept=".yaml,.yml,.json" hidden id="load-yaml-file" aria-label=${t(
            "train.load_yaml",
          )}
            onChange=${onFile} />
          <button type="button" data-action="load-yaml" data-i18n="train.load_yaml" disabled=${act.busy !== ""}
            onClick=${() => file.current?.click()}>${t("train.load_yaml")}</button>
          ${button("plan", "train.plan", plan, running)}
          ${button("start", "train.start", start, running, "primary")}
          ${button("stop", "train.stop", stop, !running, "danger")}
          ${button("resume", "train.resume", () => resume(), running || !s.id || s.status === "finished")}
        </div>
      <${ErrorLine} error=${act.error} />
      <div class="two">
        <div class="field">
          <label for="yaml-preview" data-i18n="train.yaml">${t("train.yaml")}</label>
          <textarea id="yaml-preview" data-yaml readonly rows="16" value=${yaml}></textarea>
        </div>
        <${SessionPanel} />
      </div>
    </div>
  `;
}
