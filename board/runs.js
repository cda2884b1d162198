/**
 * The Runs tab: the sessions the server knows (GET /sessions) with status, step, loss and runner; open one (its
 * settings into the form, its log into the chart, its events followed while it runs) or resume a stopped one.
 * @module
 */
import { html } from "htm/preact";
import { useEffect, useState } from "preact/hooks";
import { ErrorLine, useAction } from "./action.js";
import { get } from "./api.js";
import { form, fromConfig } from "./form.js";
import { t } from "./i18n.js";
import { live, openSession } from "./live.js";
import { resume } from "./session_actions.js";
import { useStore } from "./store.js";

/**
 * Opens a run: the session, and its settings into the form.
 * @param {string} id
 */
export async function openRun(id) {
  await openSession(id);
  const cfg = live.get().config;
  if (cfg && typeof cfg === "object") {
    const { values, extra } = fromConfig(cfg);
    form.set({ values, extra });
  }
}

/** The tab. @param {{ onOpen: () => void }} p */
export function RunsTab(p) {
  const cur = useStore(live);
  const [act, run] = useAction();
  const [rows, setRows] = useState(/** @type {any[]} */ ([]));
  const refresh = async () => setRows((await get("/sessions")).sessions);
  useEffect(() => {
    run("refresh-runs", refresh);
  }, [cur.status, cur.id]);
  const loss = (/** @type {unknown} */ x) => typeof x === "number" ? x.toFixed(4) : "—";
  return html`
    <div class="runs">
      <div class="buttons">
        <button type="button" data-action="refresh-runs" data-i18n="runs.refresh" disabled=${act.busy !== ""}
          onClick=${() => run("refresh-runs", refresh)}>${t("runs.refresh")}</button>
      </div>
      <${ErrorLine} error=${act.error} />
      <table data-runs class="runs-table">
        <caption data-i18n="runs.title">${t("runs.title")}</caption>
        <thead>
          <tr>
            <th scope="col" data-i18n="runs.id">${t("runs.id")}</th>
            <th scope="col" data-i18n="runs.status">${t("runs.status")}</th>
            <th scope="col" data-i18n="runs.step">${t("runs.step")}</th>
            <th scope="col" data-i18n="runs.loss">${t("runs.loss")}</th>
            <th scope="col" data-i18n="runs.runner">${t("runs.runner")}</th>
            <th scope="col" data-i18n="runs.model">${t("runs.model")}</th>
            <th scope="col" data-i18n="runs.stage">${t("runs.stage")}</th>
            <th scope="col" data-i18n="runs.updated">${t("runs.updated")}</th>
            <th scope="col"><span class="sr-only" data-i18n="runs.actions">${t("runs.actions")}</span></th>
          </tr>
        </thead>
        <tbody>
            ${rows.length === 0
              ? html`
                <tr>
                  <td colspan="9" data-i18n="runs.empty">${t("runs.empty")}</td>
                </tr>
              `
              : ""}
            ${rows.map((r) =>
              html`
                <tr data-run-id=${r.id} data-run-status=${r.status} aria-current=${r.id === cur.id
                  ? "true"
                  : undefined}>
                  <td><code>${r.id}</code></td>
                  <td>${r.status}</td>
                  <td>${r.global_step}/${r.total_steps}</td>
                  <td>${loss(r.last_loss)}</td>
                  <td>${r.runner ?? "whetstone"}</td>
                  <td>${String(r.model_name_or_path ?? "")}</td>
                  <td>${String(r.stage ?? "")}/${String(r.finetuning_type ?? "")}</td>
                  <td>${String(r.updated_at ?? "").replace("T", " ").slice(0, 19)}</td>
                  <td>
                    <div class="buttons row-actions">
                                  <button type="button" data-action="open-run" data-i18n="runs.open" disabled=${act
                                    .busy !==
                                    ""}
                                    onClick=${() =>
                                      run("open-run", async () => {
                                        await openRun(r.id);
                                        p.onOpen();
                                      })}>${t("runs.open")}</button>
                                  ${r.status === "stopped"
                                    ? html`
                                      <button type="button" data-action="resume" data-i18n="train.resume" disabled=${act
                                        .busy !== ""}
                                        onClick=${() =>
                                          run("resume", async () => {
                                            await resume(r.id);
                                            await refresh();
                                          })}>${t("train.resume")}</button>
                                    `
                                    : ""}
                    </div>
                  </td>
                </tr>
              `
            )}
          </tbody>
      </table>
    </div>
  `;
}
