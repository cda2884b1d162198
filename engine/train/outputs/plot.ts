/**
 * Loss plots as LLaMA-Factory's `extras/ploting.py::plot_loss` draws them (`plot_loss: true`), written as hand-made
 * SVG (no dependencies): per key, `training_<key>.svg` (`/` in the key replaced by `_`) with the raw curve at 40 %
 * opacity and the EMA-smoothed curve ({@linkcode smooth}) in matplotlib's first colour, axes with ticks, the labels
 * "step" and the key, a legend, and the title "training <key> of <output_dir>", on a 640×480 canvas (matplotlib's
 * default figure at dpi 100). When ImageMagick's `convert` works, `training_<key>.png` is also made from the SVG;
 * if it is missing or fails, that step is skipped silently.
 * @module
 */

/**
 * LLaMA-Factory's `smooth`: TensorBoard-style EMA with `weight = 1.8 * (1 / (1 + exp(-0.05 * n)) - 0.5)` for `n`
 * values; `s[0] = x[0] * w + (1 - w) * x[0]`, `s[i] = s[i-1] * w + (1 - w) * x[i]`.
 */
export function smooth(scalars: readonly number[]): number[] {
  if (scalars.length === 0) return [];
  let last = scalars[0];
  const weight = 1.8 * (1 / (1 + Math.exp(-0.05 * scalars.length)) - 0.5);
  const out: number[] = [];
  for (const next of scalars) {
    last = last * weight + (1 - weight) * next;
    out.push(last);
  }
  return out;
}

/** Tick positions: "nice" steps (1, 2, 2.5, 5 × 10^k) covering [lo, hi], about `target` of them. */
export function niceTicks(lo: number, hi: number, target = 6): number[] {
  if (!(hi > lo) || hi - lo <= Math.max(Math.abs(lo), Math.abs(hi)) * 1e-12) return [lo];
  const raw = (hi - lo) / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let i = Math.ceil(lo / step - 1e-9); i * step <= hi + step * 1e-9; i++) out.push(i * step || 0);
  return out;
}

function tickLabel(v: number, step: number): string {
  const s = String(Number(step.toPrecision(6)));
  const decimals = s.includes("e") ? Math.max(0, 1 - Math.floor(Math.log10(step))) : (s.split(".")[1] ?? "").length;
  const out = v.toFixed(Math.min(decimals, 20));
  return /^-0(\.0*)?$/.test(out) ? out.slice(1) : out;
}

/** Rounds a coordinate to 2 decimals for compact SVG. */
function r(v: number): number {
  return +v.toFixed(2);
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** Data range with matplotlib's 5 % margins (a flat range is widened so it has a height). */
function range(values: readonly number[]): [number, number] {
  let lo = Math.min(...values), hi = Math.max(...values);
  // Equal values, or equal but for rounding (the smoothed copy of a single point is 1 ulp off): widen.
  if (hi - lo <= Math.max(Math.abs(lo), Math.abs(hi)) * 1e-9) {
    const d = lo === 0 ? 0.5 : Math.abs(lo) * 0.05;
    lo -= d;
    hi += d;
  }
  const pad = (hi - lo) * 0.05;
  return [lo - pad, hi + pad];
}

const W = 640, H = 480;
// matplotlib's default subplot box: left .125, right .9, bottom .11, top .88
const X0 = 80, X1 = 576, Y0 = 427.2, Y1 = 57.6, XM = 328, YM = 242.4;
const COLOR = "#1f77b4";

/** The SVG text of one plot: `values[i]` at `steps[i]`, raw and smoothed, titled `title`, y axis `key`. */
export function lossSvg(steps: readonly number[], values: readonly number[], key: string, title: string): string {
  if (steps.length !== values.length || steps.length === 0) {
    throw new Error(
      `lossSvg: expected as many steps as values (at least one), got ${steps.length} and ${values.length}`,
    );
  }
  const smoothed = smooth(values);
  const [xl, xh] = range(steps);
  const [yl, yh] = range([...values, ...smoothed]);
  const px = (x: number) => X0 + ((x - xl) / (xh - xl)) * (X1 - X0);
  const py = (y: number) => Y0 - ((y - yl) / (yh - yl)) * (Y0 - Y1);
  const pts = (ys: readonly number[]) => ys.map((y, i) => `${px(steps[i]).toFixed(2)},${py(y).toFixed(2)}`).join(" ");
  const font = `font-family="DejaVu Sans, Arial, sans-serif"`;
  const out: string[] = [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">`,
    `<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`,
    `<text x="${XM}" y="${r(Y1 - 8)}" text-anchor="middle" font-size="12" ${font}>${esc(title)}</text>`,
  ];
  const xt = niceTicks(xl, xh), yt = niceTicks(yl, yh);
  const xs = xt.length > 1 ? xt[1] - xt[0] : 1, ys = yt.length > 1 ? yt[1] - yt[0] : 1;
  out.push(`<g stroke="#000000" stroke-width="0.8">`);
  for (const t of xt) {
    out.push(`<line x1="${px(t).toFixed(2)}" y1="${Y0}" x2="${px(t).toFixed(2)}" y2="${r(Y0 + 3.5)}"/>`);
  }
  for (const t of yt) out.push(`<line x1="${X0 - 3.5}" y1="${py(t).toFixed(2)}" x2="${X0}" y2="${py(t).toFixed(2)}"/>`);
  out.push(`</g>`, `<g font-size="10" ${font}>`);
  for (const t of xt) {
    out.push(`<text x="${px(t).toFixed(2)}" y="${r(Y0 + 15)}" text-anchor="middle">${tickLabel(t, xs)}</text>`);
  }
  for (const t of yt) {
    out.push(`<text x="${X0 - 6}" y="${(py(t) + 3.5).toFixed(2)}" text-anchor="end">${tickLabel(t, ys)}</text>`);
  }
  out.push(
    `</g>`,
    `<text x="${XM}" y="${r(Y0 + 32)}" text-anchor="middle" font-size="10" ${font}>step</text>`,
    `<text x="${X0 - 48}" y="${YM}" text-anchor="middle" font-size="10" ${font} ` +
      `transform="rotate(-90 ${X0 - 48} ${YM})">${esc(key)}</text>`,
    `<polyline class="original" fill="none" stroke="${COLOR}" stroke-opacity="0.4" stroke-width="1.5" ` +
      `points="${pts(values)}"/>`,
    `<polyline class="smoothed" fill="none" stroke="${COLOR}" stroke-width="1.5" points="${pts(smoothed)}"/>`,
    `<rect x="${X0}" y="${Y1}" width="${r(X1 - X0)}" height="${r(Y0 - Y1)}" fill="none" stroke="#000000" ` +
      `stroke-width="0.8"/>`,
  );
  const lx = X1 - 100, ly = r(Y1 + 10);
  out.push(
    `<g font-size="10" ${font}>`,
    `<rect x="${lx}" y="${ly}" width="92" height="40" fill="#ffffff" fill-opacity="0.8" stroke="#cccccc" rx="2"/>`,
    `<line x1="${lx + 6}" y1="${r(ly + 13)}" x2="${lx + 26}" y2="${
      r(ly + 13)
    }" stroke="${COLOR}" stroke-opacity="0.4" ` +
      `stroke-width="1.5"/>`,
    `<text x="${lx + 32}" y="${r(ly + 16.5)}">original</text>`,
    `<line x1="${lx + 6}" y1="${r(ly + 29)}" x2="${lx + 26}" y2="${r(ly + 29)}" stroke="${COLOR}" stroke-width="1.5"/>`,
    `<text x="${lx + 32}" y="${r(ly + 32.5)}">smoothed</text>`,
    `</g>`,
    `</svg>`,
  );
  return out.join("\n") + "\n";
}

/** Options of {@linkcode plotLoss}. */
export interface PlotOptions {
  /** Also make a PNG with ImageMagick when it works (default true). */
  png?: boolean;
  /** The ImageMagick command (default `convert`). */
  convertCommand?: string;
}

/** Files written by {@linkcode plotLoss}. */
export interface PlotFiles {
  svg: string;
  png?: string;
}

/** Converts an SVG to PNG with ImageMagick; false (and no PNG left behind) if it is missing or fails. */
async function toPng(svg: string, png: string, command: string): Promise<boolean> {
  try {
    const { success } = await new Deno.Command(command, {
      args: ["-background", "white", "-density", "96", svg, png],
      stdout: "null",
      stderr: "null",
    }).output();
    if (success && (await Deno.stat(png)).size > 0) return true;
  } catch { /* not installed or not runnable */ }
  await Deno.remove(png).catch(() => {});
  return false;
}

/**
 * Plots `key` over `history` to `<outputDir>/training_<key>.svg` (+ `.png`, see the module docs). Entries without a
 * finite `key` value are skipped, as LF skips records without the key, so a whole `log_history` can be passed. A plain
 * `{ step, loss }[]` list (no other fields) is plotted as is under the name `key` (e.g. eval losses with
 * `key = "eval_loss"`). Returns the files written, or undefined when there is nothing to plot (LF then warns
 * "No metric <key> to plot.").
 */
export async function plotLoss(
  outputDir: string,
  history: readonly { step: number; [key: string]: number | undefined }[],
  key = "loss",
  opts: PlotOptions = {},
): Promise<PlotFiles | undefined> {
  // A plain `{ step, loss }[]` list is plotted under the name `key`.
  const plain = history.every((h) => Object.keys(h).every((k) => k === "step" || k === "loss"));
  const field = plain ? "loss" : key;
  const rows = history.filter((h) => Number.isFinite(h[field]));
  if (rows.length === 0) return undefined;
  const dir = outputDir.replace(/\/+$/, "");
  const base = `${dir}/training_${key.replaceAll("/", "_")}`;
  const svg = lossSvg(rows.map((r) => r.step), rows.map((r) => r[field]!), key, `training ${key} of ${outputDir}`);
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeTextFile(`${base}.svg`, svg);
  const files: PlotFiles = { svg: `${base}.svg` };
  if ((opts.png ?? true) && await toPng(`${base}.svg`, `${base}.png`, opts.convertCommand ?? "convert")) {
    files.png = `${base}.png`;
  }
  return files;
}

/** {@linkcode plotLoss} for each key (LF's default keys for sft: `loss`, `eval_loss`); keys with no values are skipped. */
export async function plotLosses(
  outputDir: string,
  history: readonly { step: number; [key: string]: number | undefined }[],
  keys: readonly string[] = ["loss", "eval_loss"],
  opts: PlotOptions = {},
): Promise<PlotFiles[]> {
  const out: PlotFiles[] = [];
  for (const k of keys) {
    const f = await plotLoss(outputDir, history, k, opts);
    if (f) out.push(f);
  }
  return out;
}
