/**
 * Training logs in LLaMA-Factory's and HF Trainer's file formats:
 *
 * - `<output_dir>/trainer_log.jsonl` ({@linkcode TrainerLog}): one JSON object per log event, keys and formats as
 *   LLaMA-Factory's `LogCallback` writes them (LlamaBoard reads this file to draw progress and the loss curve);
 * - `trainer_state.json` ({@linkcode writeTrainerState}): HF's `TrainerState.save_to_json` (in the output folder and in
 *   every checkpoint);
 * - `train_results.json` / `eval_results.json` and the merged `all_results.json` ({@linkcode writeResults}):
 *   HF's `Trainer.save_metrics`.
 *
 * The JSON text is what Python's `json.dumps` produces (`", "`/`": "` separators, `indent`, `sort_keys`, ASCII
 * escapes, Python float repr like `5e-05` and `2.0`), so files diff cleanly against the reference tools'. Integer-
 * valued fields (steps, token counts) are written as ints, every other number as a Python float ({@linkcode pyJson}).
 * @module
 */
import { pyRound } from "../../util/py_round.ts";
import { writeFileAtomic } from "../../util/fs.ts";

/** LLaMA-Factory's `TRAINER_LOG`. */
export const TRAINER_LOG_FILE = "trainer_log.jsonl";
/** HF's `TRAINER_STATE_NAME`. */
export const TRAINER_STATE_NAME = "trainer_state.json";

/** Keys whose (integer) values Python writes as ints; all other numbers are written as Python floats. */
export const INT_KEYS: ReadonlySet<string> = new Set([
  "current_steps",
  "total_steps",
  "total_tokens",
  "step",
  "global_step",
  "max_steps",
  "logging_steps",
  "eval_steps",
  "save_steps",
  "train_batch_size",
  "num_train_epochs",
  "num_input_tokens_seen",
  "best_global_step",
  "train_samples",
  "eval_samples",
]);

/** Python's `repr(float)`: shortest round-trip digits, exponent form below 1e-4 and from 1e16 on, `.0` on integers. */
export function pyFloat(x: number): string {
  if (Number.isNaN(x)) return "NaN";
  if (!Number.isFinite(x)) return x > 0 ? "Infinity" : "-Infinity";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const [mant, exp] = Math.abs(x).toExponential().split("e");
  const digits = mant.replace(".", "");
  const e = Number(exp);
  const sign = x < 0 ? "-" : "";
  if (e < -4 || e >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${m}e${e < 0 ? "-" : "+"}${String(Math.abs(e)).padStart(2, "0")}`;
  }
  if (e < 0) return `${sign}0.${"0".repeat(-e - 1)}${digits}`;
  const int = digits.slice(0, e + 1).padEnd(e + 1, "0");
  return `${sign}${int}.${digits.slice(e + 1) || "0"}`;
}

function pyString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\b") out += "\\b";
    else if (ch === "\f") out += "\\f";
    else if (c >= 0x20 && c <= 0x7e) out += ch;
    else {
      for (let i = 0; i < ch.length; i++) out += "\\u" + ch.charCodeAt(i).toString(16).padStart(4, "0");
    }
  }
  return out + '"';
}

/**
 * Python's `json.dumps(value, indent=indent, sort_keys=sortKeys)` (default `ensure_ascii=True`). Numbers under a key
 * in {@linkcode INT_KEYS} that are integers are written as ints, all other numbers as Python floats. `undefined`
 * object members are skipped (Python's `None` is `null`).
 */
export function pyJson(value: unknown, indent?: number, sortKeys = false, key = "", level = 0): string {
  if (value === null || value === undefined) return "null";
  if (typeof value === "boolean") return value ? "true" : "false";
  if (typeof value === "number") return INT_KEYS.has(key) && Number.isInteger(value) ? String(value) : pyFloat(value);
  if (typeof value === "bigint") return String(value);
  if (typeof value === "string") return pyString(value);
  const nl = indent === undefined ? "" : "\n" + " ".repeat(indent * (level + 1));
  const close = indent === undefined ? "" : "\n" + " ".repeat(indent * level);
  const sep = indent === undefined ? ", " : ",";
  if (Array.isArray(value)) {
    if (value.length === 0) return "[]";
    return "[" + value.map((v) => nl + pyJson(v, indent, sortKeys, key, level + 1)).join(sep) + close + "]";
  }
  if (typeof value === "object") {
    let entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
    if (sortKeys) entries = entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    if (entries.length === 0) return "{}";
    const items = entries.map(([k, v]) => nl + pyString(k) + ": " + pyJson(v, indent, sortKeys, k, level + 1));
    return "{" + items.join(sep) + close + "}";
  }
  throw new Error(`pyJson: expected a JSON value, got ${typeof value}`);
}

/**
 * Python's `str(timedelta(seconds=int(seconds)))`: "H:MM:SS" ("0:01:23", "12:00:00"), and "N day(s), H:MM:SS" from
 * one day on. Used for `elapsed_time` / `remaining_time` and the progress bar.
 */
export function formatTimedelta(seconds: number): string {
  const total = Math.trunc(Number.isFinite(seconds) ? seconds : 0);
  const days = Math.floor(total / 86400);
  const rest = total - days * 86400;
  const h = Math.floor(rest / 3600), m = Math.floor((rest % 3600) / 60), s = rest % 60;
  const hms = `${h}:${String(m).padStart(2, "0")}:${String(s).padStart(2, "0")}`;
  return days === 0 ? hms : `${days} day${Math.abs(days) !== 1 ? "s" : ""}, ${hms}`;
}

/** LLaMA-Factory's remaining-time estimate: `stepsLeft * elapsed / stepsDone` seconds (0 when nothing is done). */
export function estimateRemaining(elapsedSeconds: number, stepsDone: number, stepsLeft: number): number {
  return stepsDone > 0 ? Math.max(0, stepsLeft) * (elapsedSeconds / stepsDone) : 0;
}

/** One `trainer_log.jsonl` record, keys in LLaMA-Factory's order (absent keys are not written). */
export interface TrainerLogRecord {
  current_steps: number;
  total_steps: number;
  loss?: number;
  eval_loss?: number;
  predict_loss?: number;
  reward?: number;
  accuracy?: number;
  lr?: number;
  epoch?: number;
  percentage: number;
  elapsed_time: string;
  remaining_time: string;
  throughput?: number;
  total_tokens?: number;
  vram_allocated?: number;
  vram_reserved?: number;
}

/** What the trainer knows at a log event (HF's `log_history[-1]` plus the token count). */
export interface LogMetrics {
  loss?: number;
  eval_loss?: number;
  predict_loss?: number;
  reward?: number;
  /** LF's `accuracy` (from `rewards/accuracies`). */
  accuracy?: number;
  /** The logged learning rate (see schedule.ts `loggedLrAt`). */
  lr?: number;
  epoch?: number;
  /** Input tokens seen so far, all runs included (HF's `num_input_tokens_seen`); adds throughput/total_tokens. */
  totalTokens?: number;
  /** GiB, LF's `RECORD_VRAM` fields. */
  vram_allocated?: number;
  vram_reserved?: number;
}

/** Options of {@linkcode TrainerLog.open}. */
export interface TrainerLogOptions {
  /** `max_steps` of the run. */
  totalSteps: number;
  /**
   * The global step a resumed run starts from: records with `current_steps` greater than it (logged after the
   * checkpoint by the interrupted run) and torn lines are dropped, the rest kept and appended to. Undefined: a fresh
   * run, any existing file is removed (LLaMA-Factory's `overwrite_output_dir` behaviour).
   */
  resumeStep?: number;
  /** Tokens seen before the resume point (throughput counts only this session's tokens). */
  resumeTokens?: number;
  /** Clock in milliseconds (default `performance.now`); the session starts when the log is opened. */
  now?: () => number;
}

/**
 * Appends LLaMA-Factory `trainer_log.jsonl` records, one line per {@linkcode TrainerLog.log} call, written through
 * to the file at once. Timing follows LF's `LogCallback._timing` (whole seconds since the session started; remaining =
 * steps left × average step time), except that on resume the average counts only this session's steps (LF divides by
 * the global step, which underestimates the remaining time after a resume). Likewise `throughput` counts only this
 * session's tokens (`(totalTokens - resumeTokens) / elapsed`, rounded to 2 decimals).
 */
export class TrainerLog {
  readonly path: string;
  readonly totalSteps: number;
  #file: Deno.FsFile | undefined;
  #now: () => number;
  #start: number;
  #startStep: number;
  #startTokens: number;

  private constructor(path: string, file: Deno.FsFile, o: TrainerLogOptions) {
    this.path = path;
    this.totalSteps = o.totalSteps;
    this.#file = file;
    this.#now = o.now ?? (() => performance.now());
    this.#start = this.#now();
    this.#startStep = o.resumeStep ?? 0;
    this.#startTokens = o.resumeTokens ?? 0;
  }

  /** Opens (creating `outputDir` if needed) `<outputDir>/trainer_log.jsonl` for a fresh or resumed run. */
  static async open(outputDir: string, o: TrainerLogOptions): Promise<TrainerLog> {
    await Deno.mkdir(outputDir, { recursive: true });
    const path = `${outputDir.replace(/\/+$/, "")}/${TRAINER_LOG_FILE}`;
    let text: string | undefined;
    try {
      text = await Deno.readTextFile(path);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    if (text !== undefined && o.resumeStep === undefined) await Deno.remove(path);
    else if (text !== undefined) {
      const lines = text.split("\n");
      const kept = lines.filter((line) => {
        try {
          const r = JSON.parse(line);
          return typeof r?.current_steps === "number" && r.current_steps <= o.resumeStep!;
        } catch {
          return false; // empty or torn line
        }
      });
      const out = kept.map((l) => l + "\n").join("");
      if (out !== text) await writeFileAtomic(path, out);
    }
    const file = await Deno.open(path, { append: true, create: true });
    return new TrainerLog(path, file, o);
  }

  /** Seconds since the log was opened. */
  elapsedSeconds(): number {
    return (this.#now() - this.#start) / 1000;
  }

  /** `elapsed_time` / `remaining_time` strings at global step `step`. */
  timing(step: number): { elapsed: string; remaining: string } {
    const elapsed = this.elapsedSeconds();
    const remaining = estimateRemaining(elapsed, step - this.#startStep, this.totalSteps - step);
    return { elapsed: formatTimedelta(elapsed), remaining: formatTimedelta(remaining) };
  }

  /** Builds the record for global step `step` and appends it as one line. */
  log(step: number, m: LogMetrics = {}): TrainerLogRecord {
    if (!this.#file) throw new Error(`${this.path}: expected an open trainer log, got a closed one`);
    const { elapsed, remaining } = this.timing(step);
    const r: TrainerLogRecord = {
      current_steps: step,
      total_steps: this.totalSteps,
      loss: m.loss,
      eval_loss: m.eval_loss,
      predict_loss: m.predict_loss,
      reward: m.reward,
      accuracy: m.accuracy,
      lr: m.lr,
      epoch: m.epoch,
      percentage: this.totalSteps !== 0 ? pyRound((step / this.totalSteps) * 100, 2) : 100,
      elapsed_time: elapsed,
      remaining_time: remaining,
    };
    const secs = this.elapsedSeconds();
    if (m.totalTokens && secs > 0) {
      r.throughput = pyRound((m.totalTokens - this.#startTokens) / secs, 2);
      r.total_tokens = m.totalTokens;
    }
    if (m.vram_allocated !== undefined) r.vram_allocated = pyRound(m.vram_allocated, 2);
    if (m.vram_reserved !== undefined) r.vram_reserved = pyRound(m.vram_reserved, 2);
    for (const k of Object.keys(r) as (keyof TrainerLogRecord)[]) if (r[k] === undefined) delete r[k];
    const bytes = new TextEncoder().encode(pyJson(r) + "\n");
    for (let done = 0; done < bytes.length;) done += this.#file.writeSync(bytes.subarray(done));
    return r;
  }

  /** Closes the file (further {@linkcode TrainerLog.log} calls throw). */
  close(): void {
    this.#file?.close();
    this.#file = undefined;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** Reads `<outputDir>/trainer_log.jsonl` (torn or empty lines skipped; a missing file gives []). */
export async function readTrainerLog(outputDir: string): Promise<TrainerLogRecord[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(`${outputDir.replace(/\/+$/, "")}/${TRAINER_LOG_FILE}`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
  const out: TrainerLogRecord[] = [];
  for (const line of text.split("\n")) {
    try {
      if (line) out.push(JSON.parse(line));
    } catch { /* torn line */ }
  }
  return out;
}

/** One `log_history` entry: a training log (`loss`, `grad_norm`, `learning_rate`), an eval log, or the summary. */
export interface LogHistoryEntry {
  step: number;
  epoch?: number;
  loss?: number;
  grad_norm?: number;
  learning_rate?: number;
  eval_loss?: number;
  [key: string]: number | undefined;
}

/** HF's `TrainerState` (`trainer_state.json`); optional fields get HF's defaults in {@linkcode writeTrainerState}. */
export interface TrainerState {
  global_step: number;
  epoch: number;
  max_steps: number;
  num_train_epochs: number;
  logging_steps: number;
  save_steps: number;
  eval_steps?: number;
  train_batch_size?: number | null;
  num_input_tokens_seen?: number;
  total_flos?: number;
  log_history: LogHistoryEntry[];
  best_metric?: number | null;
  best_global_step?: number | null;
  best_model_checkpoint?: string | null;
  is_hyper_param_search?: boolean;
  is_local_process_zero?: boolean;
  is_world_process_zero?: boolean;
  trial_name?: string | null;
  trial_params?: Record<string, unknown> | null;
  stateful_callbacks?: Record<string, unknown> | null;
}

/**
 * Writes `<dir>/trainer_state.json` atomically, as HF's `TrainerState.save_to_json` does
 * (`json.dumps(asdict(state), indent=2, sort_keys=True) + "\n"`), filling HF's defaults for optional fields
 * (`stateful_callbacks` records a `TrainerControl` with `should_training_stop = global_step >= max_steps`).
 */
export async function writeTrainerState(dir: string, state: TrainerState): Promise<void> {
  const full: TrainerState = {
    eval_steps: 500,
    train_batch_size: null,
    num_input_tokens_seen: 0,
    total_flos: 0,
    best_metric: null,
    best_global_step: null,
    best_model_checkpoint: null,
    is_hyper_param_search: false,
    is_local_process_zero: true,
    is_world_process_zero: true,
    trial_name: null,
    trial_params: null,
    stateful_callbacks: {
      TrainerControl: {
        args: {
          should_epoch_stop: false,
          should_evaluate: false,
          should_log: false,
          should_save: true,
          should_training_stop: state.global_step >= state.max_steps,
        },
        attributes: {},
      },
    },
    ...state,
  };
  await writeFileAtomic(`${dir.replace(/\/+$/, "")}/${TRAINER_STATE_NAME}`, pyJson(full, 2, true) + "\n");
}

/** Reads `<dir>/trainer_state.json` (ours or HF's). */
export async function readTrainerState(dir: string): Promise<TrainerState> {
  const path = `${dir.replace(/\/+$/, "")}/${TRAINER_STATE_NAME}`;
  const s = JSON.parse(await Deno.readTextFile(path));
  if (typeof s?.global_step !== "number" || !Array.isArray(s.log_history)) {
    throw new Error(`${path}: expected a trainer state with global_step and log_history`);
  }
  return s;
}

/**
 * HF's `Trainer.save_metrics(split, metrics, combined=True)`: writes `<outputDir>/<split>_results.json`
 * (`json.dump(metrics, indent=4, sort_keys=True)`) and merges the metrics into `all_results.json`.
 */
export async function writeResults(
  outputDir: string,
  split: "train" | "eval" | "predict",
  metrics: Record<string, number | string>,
): Promise<void> {
  const dir = outputDir.replace(/\/+$/, "");
  await Deno.mkdir(dir, { recursive: true });
  await writeFileAtomic(`${dir}/${split}_results.json`, pyJson(metrics, 4, true));
  let all: Record<string, unknown> = {};
  try {
    all = JSON.parse(await Deno.readTextFile(`${dir}/all_results.json`));
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  await writeFileAtomic(`${dir}/all_results.json`, pyJson({ ...all, ...metrics }, 4, true));
}
