/**
 * The data preview (POST /datasets/preview): the first examples of the chosen datasets as the trainer sees them,
 * each view's tokens as spans of trained and masked text.
 * @module
 */
import { html } from "htm/preact";
import { t } from "./i18n.js";

/**
 * @typedef {{ text: string, ids: number[], trained: boolean }} Span
 * @typedef {{ name: string, spans: Span[], length: number, trainedTokens: number }} View
 * @typedef {{ index: number, source: { dataset: string, row: number }, views: View[], dropped?: string }} Row
 */

/**
 * The preview of one request's answer (nothing before the first preview).
 * @param {{ result: { dataset: string[], template: string, cutoff_len: number, warnings: string[], rows: Row[] } | null }} p
 */
export function Preview(p) {
  const r = p.result;
  if (!r) return html`<div data-preview hidden></div>`;
  return html`<div data-preview class="preview" aria-live="polite">
    <p>
      <span data-i18n="preview.legend">${t("preview.legend")}</span>
      <span class="trained">${t("preview.trained")}</span> <span class="masked">${t("preview.masked")}</span>
      · template ${r.template ?? "—"} · cutoff_len ${r.cutoff_len}
    </p>
    ${r.warnings?.map((w) => html`<p class="warn">${w}</p>`)}
    ${
    r.rows.map((row) =>
      html`<article class="example" data-row=${row.index}>
        <h4>${row.source?.dataset} #${row.source?.row}</h4>
        ${
        row.dropped
          ? html`<p class="warn"><span data-i18n="preview.dropped">${t("preview.dropped")}</span>: ${row.dropped}</p>`
          : ""
      }
        ${
        row.views.map((v) =>
          html`
            <div class="view">
              <small>${v.name} · ${v.length} ${t("preview.tokens")} · ${v.trainedTokens} ${t("preview.trained")}</small>
              <pre>${v.spans.map((s) =>
                html`<span class=${s.trained ? "trained" : "masked"} data-trained=${String(s.trained)}>${s.text}</span>`
              )}</pre>
            </div>
          `
        )
      }
      </article>`
    )
  }
  </div>`;
}
