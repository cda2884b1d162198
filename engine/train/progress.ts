/**
 * A terminal progress display for training:
 *
 * ```
 * 12/100 [=====>                        ] 12% loss 2.3100 1840 tok/s 0:00:35<0:04:12
 * ```
 *
 * On a terminal (mode `"bar"`, or `"auto"` when stderr is a TTY) the line is redrawn in place, at most every
 * `minIntervalMs` (100 ms); otherwise (mode `"lines"`, or `"auto"` when stderr is not a TTY) a plain line is printed
 * every `every` steps and at the last step; mode `"none"` prints nothing. Times are `H:MM:SS` as in
 * `trainer_log.jsonl` (see {@linkcode formatTimedelta}); the remaining time is LLaMA-Factory's estimate from the steps
 * done in this session.
 * @module
 */
import { estimateRemaining, formatTimedelta } from "./outputs/trainer_log.ts";

/** Per-update values shown after the percentage. */
export interface ProgressInfo {
  loss?: number;
  tokensPerSec?: number;
}

/** Where the display goes (default `Deno.stderr`). */
export interface ProgressSink {
  writeSync(p: Uint8Array): number;
  isTerminal(): boolean;
}

/** Options of {@linkcode Progress}. */
export interface ProgressOptions {
  /** Total optimizer steps. */
  total: number;
  /** `"auto"` (default): `"bar"` on a TTY, else `"lines"`. */
  mode?: "auto" | "bar" | "lines" | "none";
  /** `"lines"`: print every this many steps (default `max(1, ceil(total / 20))`). */
  every?: number;
  /** `"bar"`: minimum time between redraws in ms (default 100). */
  minIntervalMs?: number;
  /** Bar width in characters (default 30). */
  width?: number;
  /** The global step this session starts from (a resumed run), for the time estimate. */
  startStep?: number;
  out?: ProgressSink;
  /** Clock in ms (default `performance.now`). */
  now?: () => number;
}

/** One progress line, e.g. `12/100 [===>   ] 12% loss 2.3100 1840 tok/s 0:00:35<0:04:12`. */
export function formatProgress(
  step: number,
  total: number,
  info: ProgressInfo,
  elapsedSeconds: number,
  remainingSeconds: number,
  width = 30,
): string {
  const frac = total > 0 ? Math.min(1, Math.max(0, step / total)) : 1;
  const filled = Math.floor(frac * width);
  const bar = filled >= width ? "=".repeat(width) : "=".repeat(Math.max(0, filled - 1)) + (filled > 0 ? ">" : "") +
    " ".repeat(width - filled);
  let s = `${step}/${total} [${bar}] ${Math.floor(frac * 100)}%`;
  if (info.loss !== undefined) s += ` loss ${info.loss.toFixed(4)}`;
  if (info.tokensPerSec !== undefined) s += ` ${Math.round(info.tokensPerSec)} tok/s`;
  return `${s} ${formatTimedelta(elapsedSeconds)}<${formatTimedelta(remainingSeconds)}`;
}

/** A progress display; call {@linkcode Progress.update} after each step and {@linkcode Progress.done} at the end. */
export class Progress {
  readonly mode: "bar" | "lines" | "none";
  readonly total: number;
  #out: ProgressSink;
  #now: () => number;
  #start: number;
  #startStep: number;
  #every: number;
  #minInterval: number;
  #width: number;
  #lastDraw = -Infinity;
  #drawn = false;
  #pending: { step: number; info: ProgressInfo } | undefined;
  #last: { step: number; info: ProgressInfo } | undefined;
  #enc = new TextEncoder();

  constructor(o: ProgressOptions) {
    this.total = o.total;
    this.#out = o.out ?? Deno.stderr;
    const mode = o.mode ?? "auto";
    this.mode = mode === "auto" ? (this.#out.isTerminal() ? "bar" : "lines") : mode;
    this.#now = o.now ?? (() => performance.now());
    this.#start = this.#now();
    this.#startStep = o.startStep ?? 0;
    this.#every = Math.max(1, o.every ?? Math.ceil(o.total / 20));
    this.#minInterval = o.minIntervalMs ?? 100;
    this.#width = o.width ?? 30;
  }

  /** The line for `step` now. */
  line(step: number, info: ProgressInfo = {}): string {
    const elapsed = (this.#now() - this.#start) / 1000;
    const remaining = estimateRemaining(elapsed, step - this.#startStep, this.total - step);
    return formatProgress(step, this.total, info, elapsed, remaining, this.#width);
  }

  #write(s: string): void {
    const b = this.#enc.encode(s);
    for (let done = 0; done < b.length;) done += this.#out.writeSync(b.subarray(done));
  }

  #draw(step: number, info: ProgressInfo): void {
    this.#write(`\r${this.line(step, info)}\x1b[K`);
    this.#lastDraw = this.#now();
    this.#drawn = true;
    this.#pending = undefined;
  }

  /** Reports that global step `step` is done. */
  update(step: number, info: ProgressInfo = {}): void {
    if (this.mode === "none") return;
    if (this.mode === "lines") {
      if (step % this.#every === 0 || step === this.total) this.#write(this.line(step, info) + "\n");
      return;
    }
    this.#last = { step, info };
    if (this.#now() - this.#lastDraw >= this.#minInterval || step >= this.total) this.#draw(step, info);
    else this.#pending = { step, info };
  }

  /** Prints a message on its own line without breaking the bar (the bar is redrawn below it). */
  println(message: string): void {
    if (this.mode !== "bar" || !this.#drawn) return this.#write(message + "\n");
    this.#write(`\r\x1b[K${message}\n`);
    this.#draw(this.#last!.step, this.#last!.info);
  }

  /** Draws a pending update and ends the bar's line. */
  done(): void {
    if (this.mode !== "bar") return;
    if (this.#pending) this.#draw(this.#pending.step, this.#pending.info);
    if (this.#drawn) this.#write("\n");
    this.#drawn = false;
  }
}
