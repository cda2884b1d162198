/**
 * The current session's panel on the Train tab: id and status, planned memory, progress (step, ETA, tokens/s),
 * the loss chart, the stage metrics and the log tail.
 * @module
 */
import { html } from "htm/preact";
import { bytes } from "./action.js";
import { LossChart } from "./chart.js";
import { t } from "./i18n.js";
import { live } from "./live.js";
import { useStore } from "./store.js";

/** @param {number} x */
const num = (x) => Number.isInteger(x) ? String(x) : x.toPrecision(4);

/** The planned memory and plan summary. @param {{ plan: any }} p */
function Memory(p) {
  const m = p.plan?.memory;
  return html`<div data-memory class="memory">
    ${
    p.plan
      ? html`
        <table>
          <caption data-i18n="plan.title">${t("plan.title")}</caption>
          <tbody>
            <tr>
              <th data-i18n="plan.total">${t("plan.total")}</th>
              <td data-memory-total=${m?.total ?? ""}>${bytes(m?.total)}</td>
            </tr>
            <tr>
              <th data-i18n="plan.parameters">${t("plan.parameters")}</th>
              <td>${bytes(m?.parameters)}</td>
            </tr>
            <tr>
              <th data-i18n="plan.optimizer">${t("plan.optimizer")}</th>
              <td>${bytes(m?.optimizer)}</td>
            </tr>
            <tr>
              <th data-i18n="plan.activations">${t("plan.activations")}</th>
              <td>${bytes(m?.activations)}</td>
            </tr>
            <tr>
              <th data-i18n="plan.trainable">${t("plan.trainable")}</th>
              <td>${p.plan.trainable_parameters?.toLocaleString()} / ${p.plan.parameters?.toLocaleString()}
                      (${p.plan.trainable_percent?.toFixed?.(4)}%)</td>
            </tr>
            <tr>
              <th data-i18n="plan.records">${t("plan.records")}</th>
              <td>${p.plan.train_records ?? "—"} / ${p.plan.eval_records ?? "—"}</td>
            </tr>
            <tr>
              <th data-i18n="plan.steps">${t("plan.steps")}</th>
              <td>${p.plan.total_steps ?? "—"}</td>
            </tr>
            <tr>
              <th data-i18n="plan.executor">${t("plan.executor")}</th>
              <td>${p.plan.executor ?? "—"}</td>
            </tr>
          </tbody>
        </table>
      `
      : html`<p data-i18n="plan.none">${t("plan.none")}</p>`
  }
  </div>`;
}

/** The session panel. */
export function SessionPanel() {
  const s = useStore(live);
  const pct = s.total ? Math.min(100, (100 * s.step) / s.total) : 0;
  const metrics = Object.entries(s.metrics);
  return html`<section class="session" aria-label=${t("session.title")}>
    <p class="status-line">
      <span data-i18n="session.id">${t("session.id")}</span>: <code data-session-id>${s.id ?? "—"}</code>
      · <span data-i18n="session.status">${t("session.status")}</span>:
      <b data-status class=${`status-${s.status}`}>${s.status}</b>
      ${
    s.runner
      ? html`
        · <span data-i18n="session.runner">${t("session.runner")}</span>: ${s.runner}
      `
      : ""
  }
    </p>
    ${s.warnings.length ? html`<ul class="warn">${s.warnings.map((w) => html`<li>${w}</li>`)}</ul>` : ""}
    <${Memory} plan=${s.plan} />
    <div data-progress data-step=${s.step} data-total=${s.total} class="progress">
      <label for="train-progress" data-i18n="session.progress">${t("session.progress")}</label>
      <progress id="train-progress" max="100" value=${pct}></progress>
      <span>${s.step}/${s.total || "?"} (${pct.toFixed(1)}%)</span>
      ${
    s.elapsed
      ? html`
        · <span data-i18n="session.elapsed">${t("session.elapsed")}</span> ${s.elapsed}
      `
      : ""
  }
      ${
    s.remaining
      ? html`
        · <span data-i18n="session.eta">${t("session.eta")}</span> ${s.remaining}
      `
      : ""
  }
      ${
    s.throughput !== null
      ? html`
        · ${num(s.throughput)} <span data-i18n="session.tokens_per_second">${t("session.tokens_per_second")}</span>
      `
      : ""
  }
    </div>
    <${LossChart} losses=${s.losses} evals=${s.evals} />
    ${
    metrics.length
      ? html`
        <table data-stage-metrics class="metrics">
          <caption data-i18n="session.metrics">${t("session.metrics")}</caption>
          <tbody>${metrics.map(([k, v]) =>
            html`
              <tr>
                <th>${k}</th>
                <td>${num(v)}</td>
              </tr>
            `
          )}</tbody>
        </table>
      `
      : ""
  }
    <details open class="log">
      <summary data-i18n="session.log">${t("session.log")}</summary>
      <pre data-log aria-live="off">${s.log.join("\n")}</pre>
    </details>
  </section>`;
}
