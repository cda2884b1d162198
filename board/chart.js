/**
 * The loss chart (uPlot): the train loss, LLaMA-Factory's smoothing of it, and the eval loss, by step. Its element
 * carries `data-chart="loss"` and `data-points` = the number of train-loss points plotted.
 * @module
 */
import { html } from "htm/preact";
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import { t } from "./i18n.js";
import { smooth } from "./smooth.js";

/**
 * @typedef {{ step: number, value: number }} Point
 */

/**
 * uPlot's aligned columns: steps, raw loss, smoothed loss, eval loss (null where a series has no point).
 * @param {Point[]} losses
 * @param {Point[]} evals
 * @returns {(number | null)[][]}
 */
export function columns(losses, evals) {
  const steps = [...new Set([...losses.map((p) => p.step), ...evals.map((p) => p.step)])].sort((a, b) => a - b);
  const sm = smooth(losses.map((p) => p.value));
  const raw = new Map(losses.map((p, i) => [p.step, [p.value, sm[i]]]));
  const ev = new Map(evals.map((p) => [p.step, p.value]));
  return [
    steps,
    steps.map((s) => raw.get(s)?.[0] ?? null),
    steps.map((s) => raw.get(s)?.[1] ?? null),
    steps.map((s) => ev.get(s) ?? null),
  ];
}

/**
 * The chart.
 * @param {{ losses: Point[], evals: Point[] }} p
 */
export function LossChart(p) {
  const box = useRef(/** @type {HTMLDivElement | null} */ (null));
  const plot = useRef(/** @type {uPlot | null} */ (null));
  const data = columns(p.losses, p.evals);
  const labels = [t("chart.loss"), t("chart.smoothed"), t("chart.eval_loss")];

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const opts = {
      width: Math.max(el.clientWidth, 300),
      height: 260,
      scales: { x: { time: false } },
      axes: [{ label: t("chart.step") }, { label: t("chart.loss") }],
      series: [
        { label: t("chart.step") },
        { label: labels[0], stroke: "#9bb7e0", width: 1, spanGaps: true },
        { label: labels[1], stroke: "#1f5fbf", width: 2, spanGaps: true },
        { label: labels[2], stroke: "#d9480f", width: 2, spanGaps: true, points: { show: true } },
      ],
    };
    const u = new uPlot(opts, /** @type {any} */ (data), el);
    plot.current = u;
    const ro = new ResizeObserver(() => u.setSize({ width: Math.max(el.clientWidth, 300), height: 260 }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      u.destroy();
      plot.current = null;
    };
  }, [labels.join("|")]);

  useEffect(() => {
    plot.current?.setData(/** @type {any} */ (data));
  });

  return html`
    <figure class="chart">
      <figcaption data-i18n="chart.title">${t("chart.title")}</figcaption>
      <div ref=${box} data-chart="loss" data-points=${p.losses.length} role="img"
        aria-label=${t("chart.title")}></div>
    </figure>
  `;
}
