/**
 * The Evaluate & Predict tab, on the current session: evaluate (POST /sessions/:id/evaluate: eval_loss,
 * perplexity) and predict (POST /sessions/:id/predict: BLEU-4, ROUGE-1/2/L, the predictions, the files written).
 * @module
 */
import { html } from "htm/preact";
import { useState } from "preact/hooks";
import { ErrorLine, useAction } from "./action.js";
import { post } from "./api.js";
import { Label } from "./fields.js";
import { t } from "./i18n.js";
import { catalog } from "./catalog.js";
import { form } from "./form.js";
import { live } from "./live.js";
import { useStore } from "./store.js";

/** @param {unknown} v */
const show = (v) => typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(4)) : String(v ?? "—");

/**
 * A number input of this tab (its own state).
 * @param {{ name: string, i18n: string, value: string, set: (v: string) => void, step?: string }} p
 */
function Field(p) {
  const id = `predict-${p.name}`;
  return html`
    <div class="field">
      <${Label} for=${id} i18n=${p.i18n} />
      <input id=${id} name=${p.name} type="number" step=${p.step ?? "any"} value=${p.value}
        onInput=${(/** @type {any} */ e) => p.set(e.currentTarget.value)} />
    </div>
  `;
}

/**
 * The datasets to predict on (`eval_dataset`; LLaMA-Factory predicts on an eval_dataset only): those of the form's
 * dataset_dir, the training datasets chosen until the user picks others.
 * @param {{ chosen: string[] | null, set: (v: string[]) => void }} p
 */
function EvalDatasets(p) {
  const cat = useStore(catalog);
  const { values } = useStore(form);
  const chosen = p.chosen ?? /** @type {string[]} */ (values.dataset ?? []);
  const names = [...new Set([...cat.datasets.map((d) => d.name), ...chosen])];
  return html`
    <div class="field wide">
      <${Label} for="predict-eval_dataset" i18n="arg.eval_dataset" />
      <select id="predict-eval_dataset" name="eval_dataset" multiple size="3" onChange=${(/** @type {any} */ e) =>
        p.set([...e.currentTarget.selectedOptions].map((o) => o.value))}>
          ${names.map((n) => html`<option value=${n} selected=${chosen.includes(n)}>${n}</option>`)}
        </select>
    </div>
  `;
}

/** The tab. */
export function EvaluateTab() {
  const s = useStore(live);
  const { values } = useStore(form);
  const [evalDs, setEvalDs] = useState(/** @type {string[] | null} */ (null));
  const [act, run] = useAction();
  const [opts, setOpts] = useState({ max_samples: "", max_new_tokens: "512", temperature: "0.95", top_p: "0.7" });
  const [doSample, setDoSample] = useState(true);
  const [metrics, setMetrics] = useState(/** @type {Record<string, unknown> | null} */ (null));
  const [pred, setPred] = useState(/** @type {any} */ (null));
  const set = (/** @type {string} */ k) => (/** @type {string} */ v) => setOpts({ ...opts, [k]: v });
  const need = () => {
    if (!s.id) throw new Error(t("eval.no_session"));
    return s.id;
  };
  const evaluate = async () => {
    const res = await post(`/sessions/${need()}/evaluate`);
    const progress = ["current_steps", "total_steps", "percentage", "epoch"];
    setMetrics(
      Object.fromEntries(Object.entries(res).filter(([k, v]) => !progress.includes(k) && typeof v === "number")),
    );
  };
  const predict = async () => {
    /** @type {Record<string, unknown>} */
    const body = { do_sample: doSample };
    const ds = evalDs ?? /** @type {string[]} */ (values.dataset ?? []);
    if (ds.length) body.eval_dataset = ds.join(",");
    for (const [k, v] of Object.entries(opts)) if (v.trim() !== "") body[k] = Number(v);
    const res = await post(`/sessions/${need()}/predict`, body);
    setPred(res);
    setMetrics(res.metrics ?? null);
  };
  const busy = act.busy !== "" || s.status === "running";
  return html`<div class="evaluate">
    <p><span data-i18n="eval.session">${t("eval.session")}</span>: <code>${s.id ?? "—"}</code> (${s.status || "—"})</p>
    <div class="grid">
      <${EvalDatasets} chosen=${evalDs} set=${setEvalDs} />
      <${Field} name="max_samples" i18n="arg.max_samples" value=${opts.max_samples} set=${
    set("max_samples")
  } step="1" />
      <${Field} name="max_new_tokens" i18n="arg.max_new_tokens" value=${opts.max_new_tokens} set=${
    set("max_new_tokens")
  } step="1" />
      <${Field} name="temperature" i18n="arg.temperature" value=${opts.temperature} set=${set("temperature")} />
      <${Field} name="top_p" i18n="arg.top_p" value=${opts.top_p} set=${set("top_p")} />
      <div class="field check">
        <input id="predict-do_sample" name="do_sample" type="checkbox" checked=${doSample}
          onChange=${(/** @type {any} */ e) => setDoSample(e.currentTarget.checked)} />
        <${Label} for="predict-do_sample" i18n="arg.do_sample" />
      </div>
    </div>
    <div class="buttons">
      <button type="button" data-action="evaluate" data-i18n="eval.evaluate" disabled=${busy} aria-busy=${
    act.busy === "evaluate"
  }
        onClick=${() => run("evaluate", evaluate)}>${t("eval.evaluate")}</button>
      <button type="button" data-action="predict" data-i18n="eval.predict" disabled=${busy} aria-busy=${
    act.busy === "predict"
  }
        onClick=${() => run("predict", predict)}>${t("eval.predict")}</button>
    </div>
    <${ErrorLine} error=${act.error} />
    <table data-metrics class="metrics" hidden=${!metrics}>
      <caption data-i18n="eval.metrics">${t("eval.metrics")}</caption>
      <tbody>${
    Object.entries(metrics ?? {}).map(([k, v]) =>
      html`
        <tr data-metric=${k}>
          <th>${k}</th>
          <td>${show(v)}</td>
        </tr>
      `
    )
  }</tbody>
    </table>
    ${
    pred?.files?.length
      ? html`<ul data-predict-files>${
        pred.files.map((/** @type {any} */ f) => html`<li><code>${f.path ?? f}</code></li>`)
      }</ul>`
      : ""
  }
    <table data-predictions class="predictions" hidden=${!pred}>
      <caption data-i18n="eval.predictions">${t("eval.predictions")}</caption>
      <thead><tr>
        <th data-i18n="eval.prompt">${t("eval.prompt")}</th>
        <th data-i18n="eval.predict_col">${t("eval.predict_col")}</th>
        <th data-i18n="eval.label">${t("eval.label")}</th>
      </tr></thead>
      <tbody>${
    (pred?.predictions ?? []).map((/** @type {any} */ r) =>
      html`
        <tr>
          <td>
            <pre>${r.prompt}</pre>
          </td>
          <td>
            <pre>${r.predict}</pre>
          </td>
          <td>
            <pre>${r.label}</pre>
          </td>
        </tr>
      `
    )
  }</tbody>
    </table>
  </div>`;
}
