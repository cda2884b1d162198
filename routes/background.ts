/**
 * Background training runs: `POST /sessions/:id/run` starts one (the session's steps run in the server while the
 * request answers 202 at once; progress goes out on `/sessions/:id/events`), `POST /sessions/:id/stop` ends it at
 * the next step boundary. A run is one `TrainSession.step(n)` call with an abort signal, so the session is busy
 * (`state.busy` "step", status "running") from its start to its end, and its events are the session's own: `step`
 * per step, `eval` and `save` at their steps, one `done` at the end. A run's error never reaches the server: it is
 * logged, and the session's `done` event carries it (the events route sends it as an `error` event too).
 * @module
 */
import type { TrainSession } from "../engine/mod.ts";
import { SessionBusyError, SessionFinishedError } from "../engine/mod.ts";

/** A run going on. */
interface Run {
  abort: AbortController;
  /** Settles (never rejects) once the run has ended and its end has been recorded. */
  ended: Promise<void>;
}

/** The background runs of the server's sessions, by session id. */
export class BackgroundRuns {
  readonly #runs = new Map<string, Run>();

  /** `log` gets a line for each run's start, end and error; `ended` records a run's end (the store's progress). */
  constructor(
    readonly log: (line: string) => void,
    readonly ended: (id: string) => Promise<void> = () => Promise.resolve(),
  ) {}

  /** True while session `id` runs in the background. */
  running(id: string): boolean {
    return this.#runs.has(id);
  }

  /**
   * Starts `steps` more steps of `session` (default: to the end) in the background. Throws at once (nothing started)
   * when the session is busy or finished.
   */
  start(id: string, session: TrainSession, steps?: number): void {
    // A finished session says so even while its last run's end is still being recorded (the run is still listed).
    if (session.finished) throw new SessionFinishedError(session.totalSteps);
    if (session.busy || this.#runs.has(id)) throw new SessionBusyError("run", session.busy ?? "a run");
    const n = steps ?? session.totalSteps - session.globalStep;
    const abort = new AbortController();
    const from = session.globalStep;
    // step() marks the session busy before its first await: no other operation can start in between.
    const stepping = session.step(n, undefined, { signal: abort.signal });
    this.log(`[${id}] background run: up to ${n} steps from step ${from}`);
    const ended = stepping.then(
      (records) => this.log(`[${id}] background run ended at step ${session.globalStep} (${records.length} steps)`),
      (e) => this.log(`[${id}] background run failed at step ${session.globalStep}: ${(e as Error).message}`),
    ).then(() => this.ended(id)).catch((e) => this.log(`[${id}] recording the run's end: ${(e as Error).message}`))
      .finally(() => {
        if (this.#runs.get(id) === run) this.#runs.delete(id);
      });
    const run: Run = { abort, ended };
    this.#runs.set(id, run);
  }

  /**
   * Asks session `id`'s run to stop at the next step boundary and waits until it has; false when none runs.
   */
  async stop(id: string): Promise<boolean> {
    const run = this.#runs.get(id);
    if (!run) return false;
    run.abort.abort();
    await run.ended;
    return true;
  }

  /** Stops every run and waits for them (the server closing). */
  async close(): Promise<void> {
    await Promise.all([...this.#runs.keys()].map((id) => this.stop(id)));
  }
}
