/**
 * Running LLaMA-Factory itself, as LlamaBoard does (webui/runner.py): `llamafactory-cli train <yaml>` as a child
 * process (cwd and environment the server's, plus `LLAMABOARD_ENABLED=1` and `LLAMABOARD_WORKDIR=<output_dir>`),
 * its stdout and stderr kept as a log tail (and in `<output_dir>/llamafactory_cli.log`), its
 * `<output_dir>/trainer_log.jsonl` followed by polling (torn last lines held until complete) into `step` and
 * `eval` events, and its end as a `done` event with the exit code. Stopping is LlamaBoard's abort: SIGABRT to the
 * process tree, bottom-up (LF's LogCallback then stops at the step boundary and the trainer saves), then SIGKILL
 * once a grace period has passed.
 * @module
 */
import { join } from "node:path";

/** The command LlamaBoard runs. */
export const LF_CLI = "llamafactory-cli";
/** Where the child's stdout and stderr are written (besides the in-memory tail). */
export const LF_CLI_LOG = "llamafactory_cli.log";
/** How many characters of output the tail keeps (LlamaBoard shows the last 20,000 of running_log.txt). */
const TAIL_CHARS = 20_000;

/** The first executable named `name` on `PATH`, or null. */
export async function findOnPath(name = LF_CLI, path = Deno.env.get("PATH") ?? ""): Promise<string | null> {
  for (const dir of path.split(":")) {
    if (!dir) continue;
    const file = join(dir, name);
    try {
      const st = await Deno.stat(file);
      if (st.isFile && (st.mode === null || (st.mode & 0o111) !== 0)) return file;
    } catch { /* not there */ }
  }
  return null;
}

/** A trainer_log.jsonl record (LF's keys: current_steps, total_steps, loss, lr, epoch, percentage, ...). */
export type LogRecord = Record<string, unknown> & { current_steps?: number; total_steps?: number };

/** What a run tells its listeners. */
export type LfEvent =
  | { type: "step"; data: LogRecord }
  | { type: "eval"; data: LogRecord }
  | { type: "done"; data: { exit_code: number | null; signal: string | null; stopped: boolean } };

/**
 * Follows a growing JSON-lines file: each {@linkcode poll} reads what was appended since the last one and returns
 * the complete lines parsed (a line without its newline yet waits for the next poll). A file replaced or cut
 * (LF deletes trainer_log.jsonl when it overwrites the output folder) is read again from its start.
 */
export class JsonlFollower {
  #offset = 0;
  #ino: number | null = null;
  #partial = "";

  constructor(readonly path: string) {}

  /** Starts after what the file holds now (earlier runs' lines are not news). */
  async skipExisting(): Promise<void> {
    const st = await Deno.stat(this.path).catch(() => undefined);
    this.#offset = st?.size ?? 0;
    this.#ino = st?.ino ?? null;
  }

  /** The records appended since the last poll. */
  async poll(): Promise<LogRecord[]> {
    const st = await Deno.stat(this.path).catch(() => undefined);
    if (!st) return [];
    if ((st.ino !== null && this.#ino !== null && st.ino !== this.#ino) || st.size < this.#offset) {
      this.#offset = 0;
      this.#partial = "";
    }
    this.#ino = st.ino;
    if (st.size === this.#offset) return [];
    const f = await Deno.open(this.path, { read: true });
    let text: string;
    try {
      await f.seek(this.#offset, Deno.SeekMode.Start);
      const buf = new Uint8Array(st.size - this.#offset);
      let got = 0;
      while (got < buf.length) {
        const n = await f.read(buf.subarray(got));
        if (n === null) break;
        got += n;
      }
      this.#offset += got;
      text = new TextDecoder().decode(buf.subarray(0, got), { stream: false });
    } finally {
      f.close();
    }
    const lines = (this.#partial + text).split("\n");
    this.#partial = lines.pop() ?? "";
    const out: LogRecord[] = [];
    for (const line of lines) {
      if (!line.trim()) continue;
      try {
        const rec = JSON.parse(line);
        if (rec && typeof rec === "object" && !Array.isArray(rec)) out.push(rec);
      } catch { /* not JSON: skipped, as LlamaBoard skips it */ }
    }
    return out;
  }
}

/** The pids of `pid`'s descendants, deepest first (from /proc; empty where there is none). */
async function descendants(pid: number): Promise<number[]> {
  const children = new Map<number, number[]>();
  try {
    for await (const e of Deno.readDir("/proc")) {
      if (!/^\d+$/.test(e.name)) continue;
      try {
        const stat = await Deno.readTextFile(`/proc/${e.name}/stat`);
        const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        children.set(ppid, [...(children.get(ppid) ?? []), Number(e.name)]);
      } catch { /* gone */ }
    }
  } catch {
    return [];
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      walk(c);
      out.push(c);
    }
  };
  walk(pid);
  return out;
}

/** Sends `signal` to `pid`'s descendants (bottom-up) and then to `pid`, as LlamaBoard's `abort_process`. */
async function signalTree(pid: number, signal: Deno.Signal): Promise<void> {
  for (const p of [...await descendants(pid), pid]) {
    try {
      Deno.kill(p, signal);
    } catch { /* already gone */ }
  }
}

/** How a run is launched. */
export interface LfLaunch {
  /** The llamafactory-cli executable. */
  cli: string;
  /** The YAML written for it. */
  yaml: string;
  outputDir: string;
  /** Default: the server's. */
  cwd?: string;
  /** Variables added to the server's environment (the tests' stand-in knobs). */
  env?: Record<string, string>;
  /** trainer_log.jsonl poll interval (default 500 ms). */
  pollMs?: number;
  /** How long {@linkcode LfRun.stop} waits after SIGABRT before SIGKILL (default 30 s). */
  graceMs?: number;
}

/** One `llamafactory-cli train` process and what it has logged. */
export class LfRun {
  readonly #child: Deno.ChildProcess;
  readonly #follower: JsonlFollower;
  readonly #listeners = new Set<(e: LfEvent) => void>();
  #tail = "";
  #stopping = false;
  /** The last step record and the last eval record. */
  lastStep: LogRecord | null = null;
  lastEval: LogRecord | null = null;
  /** The exit code (null while running, or when a signal ended it). */
  exitCode: number | null = null;
  signal: string | null = null;
  running = true;
  /** Resolves when the process has ended and the log has been read to its end. */
  readonly ended: Promise<void>;
  readonly command: string[];
  readonly pid: number;

  private constructor(readonly launch: LfLaunch, child: Deno.ChildProcess, follower: JsonlFollower) {
    this.#child = child;
    this.#follower = follower;
    this.pid = child.pid;
    this.command = [launch.cli, "train", launch.yaml];
    this.ended = this.#watch();
  }

  /** Spawns `llamafactory-cli train <yaml>`. */
  static async start(launch: LfLaunch): Promise<LfRun> {
    const follower = new JsonlFollower(join(launch.outputDir, "trainer_log.jsonl"));
    await follower.skipExisting();
    const child = new Deno.Command(launch.cli, {
      args: ["train", launch.yaml],
      cwd: launch.cwd,
      env: { ...launch.env, LLAMABOARD_ENABLED: "1", LLAMABOARD_WORKDIR: launch.outputDir },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    return new LfRun(launch, child, follower);
  }

  /** Whether {@linkcode stop} was called. */
  get stopped(): boolean {
    return this.#stopping;
  }

  /** The last characters of the child's stdout and stderr. */
  get tail(): string {
    return this.#tail;
  }

  /** Subscribes to the run's events; returns the unsubscribe function. */
  on(listener: (e: LfEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #emit(e: LfEvent): void {
    for (const l of [...this.#listeners]) {
      try {
        l(e);
      } catch { /* a listener's error is its own */ }
    }
  }

  async #drain(stream: ReadableStream<Uint8Array>, file: Deno.FsFile | undefined): Promise<void> {
    const dec = new TextDecoder();
    for await (const chunk of stream) {
      await file?.write(chunk).catch(() => {});
      this.#tail = (this.#tail + dec.decode(chunk, { stream: true })).slice(-TAIL_CHARS);
    }
  }

  async #pollLog(): Promise<void> {
    for (const rec of await this.#follower.poll().catch(() => [])) {
      if ("eval_loss" in rec) {
        this.lastEval = rec;
        this.#emit({ type: "eval", data: rec });
      } else {
        this.lastStep = rec;
        this.#emit({ type: "step", data: rec });
      }
    }
  }

  async #watch(): Promise<void> {
    const file = await Deno.open(join(this.launch.outputDir, LF_CLI_LOG), { write: true, create: true, append: true })
      .catch(() => undefined);
    const drained = Promise.all([this.#drain(this.#child.stdout, file), this.#drain(this.#child.stderr, file)]);
    let polling = true;
    const poller = (async () => {
      while (polling) {
        await this.#pollLog();
        await new Promise((r) => setTimeout(r, this.launch.pollMs ?? 500));
      }
    })();
    const status = await this.#child.status;
    await drained.catch(() => {});
    file?.close();
    polling = false;
    await poller;
    await this.#pollLog();
    this.exitCode = status.signal ? null : status.code;
    this.signal = status.signal;
    this.running = false;
    this.#emit({ type: "done", data: { exit_code: this.exitCode, signal: this.signal, stopped: this.#stopping } });
  }

  /** LlamaBoard's abort: SIGABRT to the process tree, SIGKILL after the grace period; resolves once it ended. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.#stopping = true;
    await signalTree(this.pid, "SIGABRT");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const grace = new Promise<"late">((r) => timer = setTimeout(() => r("late"), this.launch.graceMs ?? 30_000));
    const how = await Promise.race([this.ended.then(() => "ended" as const), grace]);
    clearTimeout(timer);
    if (how === "late") {
      await signalTree(this.pid, "SIGKILL");
      await this.ended;
    }
  }
}
