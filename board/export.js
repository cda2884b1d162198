/**
 * The Export tab: writes the current session's model (POST /sessions/:id/export) or the top bar's model with its
 * adapter (POST /models/export) to export_dir — merged weights in export_size GB shards, as infer_dtype, optionally
 * also as ONNX, or the adapter alone — and lists the files written.
 * @module
 */
import { html } from "htm/preact";
import { useState } from "preact/hooks";
import { bytes, ErrorLine, useAction } from "./action.js";
import { post } from "./api.js";
import { Label } from "./fields.js";
import { form } from "./form.js";
import { t } from "./i18n.js";
import { live } from "./live.js";
import { useStore } from "./store.js";

/** The tab. */
export function ExportTab() {
  const s = useStore(live);
  const { values } = useStore(form);
  const [act, run] = useAction();
  const [source, setSource] = useState("session");
  const [opts, setOpts] = useState({ export_dir: "", export_size: "5", infer_dtype: "auto" });
  const [onnx, setOnnx] = useState(false);
  const [adapterOnly, setAdapterOnly] = useState(false);
  const [result, setResult] = useState(/** @type {any} */ (null));
  const fromSession = source === "session";

  const doExport = async () => {
    if (!opts.export_dir.trim()) throw new Error(`export_dir: ${t("export.need_dir")}`);
    /** @type {Record<string, unknown>} */
    const body = { export_dir: opts.export_dir.trim(), infer_dtype: opts.infer_dtype };
    if (opts.export_size.trim()) body.export_size = Number(opts.export_size);
    if (onnx) body.export_onnx = true;
    if (adapterOnly) body.adapter_only = true;
    if (fromSession) {
      if (!s.id) throw new Error(t("eval.no_session"));
      setResult(await post(`/sessions/${s.id}/export`, body));
    } else {
      const model = String(values.model_name_or_path).trim();
      if (!model) throw new Error(t("chat.no_model"));
      body.model_name_or_path = model;
      if (values.adapter_name_or_path) body.adapter_name_or_path = values.adapter_name_or_path;
      if (values.template) body.template = values.template;
      setResult(await post("/models/export", body));
    }
  };
  const text = (
    /** @type {"export_dir" | "export_size"} */ k,
    /** @type {string} */ type,
    /** @type {string} */ i18n,
  ) =>
    html`
      <div class="field">
        <${Label} for=${`export-${k}`} i18n=${i18n} />
        <input id=${`export-${k}`} name=${k} type=${type} step="any" min="0" value=${opts[k]}
          onInput=${(/** @type {any} */ e) => setOpts({ ...opts, [k]: e.currentTarget.value })} />
      </div>
    `;
  return html`
    <div class="export">
      <fieldset class="grid">
        <legend data-i18n="export.source">${t("export.source")}</legend>
        <div class="field check">
          <input type="radio" id="export-from-session" name="export_source" value="session" checked=${fromSession}
            onChange=${() => setSource("session")} />
          <label for="export-from-session"><span data-i18n="export.from_session">${t("export.from_session")}</span>
              <code>${s.id ?? "—"}</code></label>
        </div>
        <div class="field check">
          <input type="radio" id="export-from-model" name="export_source" value="model" checked=${!fromSession}
            onChange=${() => setSource("model")} />
          <label for="export-from-model"><span data-i18n="export.from_model">${t("export.from_model")}</span>
              <code>${values.model_name_or_path || "—"}${values.adapter_name_or_path
                ? ` + ${values.adapter_name_or_path}`
                : ""}</code></label>
        </div>
      </fieldset>
      <div class="grid">
          ${text("export_dir", "text", "arg.export_dir")} ${text("export_size", "number", "arg.export_size")}
          <div class="field">
            <${Label} for="export-infer_dtype" i18n="arg.infer_dtype" />
            <select id="export-infer_dtype" name="infer_dtype" value=${opts.infer_dtype}
              onChange=${(/** @type {any} */ e) => setOpts({ ...opts, infer_dtype: e.currentTarget.value })}>
              ${["auto", "float16", "bfloat16", "float32"].map((d) =>
                html`<option value=${d} selected=${d === opts.infer_dtype}>${d}</option>`
              )}
            </select>
          </div>
          <div class="field check">
            <input id="export-export_onnx" name="export_onnx" type="checkbox" checked=${onnx}
              onChange=${(/** @type {any} */ e) => setOnnx(e.currentTarget.checked)} />
            <${Label} for="export-export_onnx" i18n="arg.export_onnx" />
          </div>
          <div class="field check">
            <input id="export-adapter_only" name="adapter_only" type="checkbox" checked=${adapterOnly}
              onChange=${(/** @type {any} */ e) => setAdapterOnly(e.currentTarget.checked)} />
            <${Label} for="export-adapter_only" i18n="arg.adapter_only" />
          </div>
        </div>
      <div class="buttons">
        <button type="button" data-action="export" data-i18n="export.export" class="primary"
          disabled=${act.busy !== "" || (fromSession && s.status === "running")} aria-busy=${act.busy === "export"}
          onClick=${() => run("export", doExport)}>${t("export.export")}</button>
      </div>
      <${ErrorLine} error=${act.error} />
      <div hidden=${!result}>
        <p><span data-i18n="export.written">${t("export.written")}</span> <code>${result?.export_dir}</code>
            ${result?.dtype ? ` (${result.dtype})` : ""}</p>
        <ul data-export-files>
            ${(result?.files ?? []).map((/** @type {any} */ f) =>
              html`<li data-file=${f.path ?? f}><code>${f.path ?? f}</code> ${
                typeof f.bytes === "number" ? bytes(f.bytes) : ""
              }</li>`
            )}
          </ul>
      </div>
    </div>
  `;
}
