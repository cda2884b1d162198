/**
 * The server's training sessions: those loaded in memory (each a {@link TrainSession}) and those only recorded
 * in the store (after a restart), with the rules of creating, resuming and deleting them.
 * @module
 */
import { checkOutputDir, parseTrainArgs, type SessionPlan, type TrainArgs, TrainSession } from "../engine/mod.ts";
import { HttpError } from "./http.ts";
import type { Roots } from "./paths.ts";
import type { SessionMeta, SessionStore } from "./store.ts";

/** A session's status: loading, ready (loaded, idle), running (an operation is running), finished, or stopped
 * (recorded but not loaded: resume it). */
export type SessionStatus = "ready" | "running" | "finished" | "stopped";

/** A session as listed. */
export interface SessionInfo {
  id: string;
  /** Who trains it: Whetstone's engine, or `llamafactory-cli` (routes/lf_sessions.ts). */
  runner: "whetstone" | "llamafactory";
  status: SessionStatus;
  busy: string | null;
  created_at: string;
  updated_at: string;
  output_dir: string;
  model_name_or_path: unknown;
  stage: unknown;
  finetuning_type: unknown;
  global_step: number;
  total_steps: number;
  last_loss: number | null;
}

/** A session trained outside the engine: a `llamafactory-cli train` process (routes/lf_sessions.ts). */
export interface ExternalRun {
  /** Whether the process still runs. */
  readonly running: boolean;
  /** Steps and loss from its trainer_log.jsonl. */
  progress(): { global_step: number; total_steps: number; last_loss: number | null };
  /** Ends it (LlamaBoard's abort); resolves once the process has ended. */
  stop(): Promise<void>;
}

const LF_ONLY =
  "is a LLaMA-Factory run (llamafactory-cli): open its adapter in POST /chat/models or POST /models/export";

const PATH_KEYS = ["model_name_or_path", "dataset_dir", "output_dir", "cache_dir"] as const;

/** A listed row: the record's fields, with the runner's status, busy operation and progress. */
function row(
  meta: SessionMeta,
  runner: SessionInfo["runner"],
  status: SessionStatus,
  busy: string | null,
  progress: Pick<SessionInfo, "global_step" | "total_steps" | "last_loss">,
): SessionInfo {
  return {
    id: meta.id,
    runner,
    status,
    busy,
    created_at: meta.created_at,
    updated_at: meta.updated_at,
    output_dir: meta.output_dir,
    model_name_or_path: meta.config.model_name_or_path,
    stage: meta.config.stage ?? "sft",
    finetuning_type: meta.config.finetuning_type ?? "lora",
    ...progress,
  };
}

/** Loaded sessions over the store. */
export class SessionRegistry {
  readonly #live = new Map<string, TrainSession>();
  /** Output folders being loaded into a session (so that two sessions never share one). */
  readonly #claimed = new Set<string>();
  /** The llamafactory runs started by this server, by session id. */
  readonly external = new Map<string, ExternalRun>();

  constructor(readonly store: SessionStore, readonly roots: Roots, readonly log: (line: string) => void) {}

  async #args(config: Record<string, unknown>, where: string): Promise<TrainArgs> {
    const a = parseTrainArgs(config, [], where);
    await this.roots.confineArgs(a);
    return a;
  }

  #claim(id: string | undefined, outputDir: string): void {
    for (const [other, s] of this.#live) {
      if (other !== id && s.args.output_dir === outputDir) {
        throw new HttpError(409, `output_dir: ${outputDir} is the output folder of session ${other}`, "output_dir");
      }
    }
    if (this.#claimed.has(outputDir)) {
      throw new HttpError(409, `output_dir: ${outputDir} is being loaded by another request`, "output_dir");
    }
    this.#claimed.add(outputDir);
  }

  async #load(id: string, a: TrainArgs, config: Record<string, unknown>, created?: string): Promise<TrainSession> {
    this.#claim(id, a.output_dir);
    let session: TrainSession;
    try {
      session = await TrainSession.create(a, { log: (s) => this.log(`[${id}] ${s}`) });
    } catch (e) {
      if (e instanceof HttpError) throw e;
      throw new HttpError(400, `cannot load the session: ${(e as Error).message}`);
    } finally {
      this.#claimed.delete(a.output_dir);
    }
    this.#live.set(id, session);
    const now = new Date().toISOString();
    await this.store.put({
      id,
      created_at: created ?? now,
      updated_at: now,
      config,
      output_dir: a.output_dir,
      global_step: session.globalStep,
      total_steps: session.totalSteps,
      last_loss: null,
      plan: session.plan,
    });
    return session;
  }

  /** Creates a session from training arguments (YAML keys); resumes as `deno task train` would. */
  async create(config: Record<string, unknown>): Promise<{ id: string; session: TrainSession }> {
    const a = await this.#args(config, "request");
    const { resumeFrom } = await checkOutputDir(a, "request");
    if (resumeFrom && !a.resume_from_checkpoint) a.resume_from_checkpoint = resumeFrom;
    // Kept with paths resolved, so that a resume finds the same files whatever the roots' order then.
    const kept: Record<string, unknown> = { ...config };
    for (const k of PATH_KEYS) if (a[k]) kept[k] = a[k];
    if (a.adapter_name_or_path) kept.adapter_name_or_path = a.adapter_name_or_path.join(",");
    delete kept.resume_from_checkpoint;
    const id = crypto.randomUUID().replaceAll("-", "").slice(0, 12);
    return { id, session: await this.#load(id, a, kept) };
  }

  /** Loads a recorded session again from the latest checkpoint of its output folder (from scratch without one). */
  async resume(id: string): Promise<{ session: TrainSession; resumedFrom: string | null }> {
    const meta = await this.meta(id);
    if (meta.runner === "llamafactory") {
      throw new HttpError(409, `session ${id} ${LF_ONLY}; to continue it, start a llamafactory run on its output_dir`);
    }
    if (this.#live.has(id)) throw new HttpError(409, `session ${id} is already loaded`);
    const a = await this.#args(meta.config, `session ${id}`);
    const latest = await TrainSession.latestCheckpoint(a);
    a.resume_from_checkpoint = latest ?? false;
    const session = await this.#load(id, a, meta.config, meta.created_at);
    return { session, resumedFrom: latest ?? null };
  }

  /** The stored record of `id` (404 when unknown). */
  async meta(id: string): Promise<SessionMeta> {
    const meta = await this.store.get(id);
    if (!meta) throw new HttpError(404, `no session ${JSON.stringify(id)} (GET /sessions lists them)`);
    return meta;
  }

  /** The loaded session `id` (404 when unknown, 409 when recorded but not loaded). */
  async live(id: string): Promise<TrainSession> {
    const s = this.#live.get(id);
    if (s) return s;
    const meta = await this.meta(id);
    if (meta.runner === "llamafactory") throw new HttpError(409, `session ${id} ${LF_ONLY}`);
    throw new HttpError(409, `session ${id} is not loaded (the server restarted): POST /sessions/${id}/resume first`);
  }

  /** The loaded sessions. */
  loaded(): [string, TrainSession][] {
    return [...this.#live];
  }

  /** Records a loaded session's progress in the store. */
  async touch(id: string): Promise<void> {
    const s = this.#live.get(id), meta = await this.store.get(id);
    if (!s || !meta) return;
    const st = s.state;
    await this.store.put({
      ...meta,
      updated_at: new Date().toISOString(),
      global_step: st.global_step,
      total_steps: st.total_steps,
      last_loss: st.last_loss,
    });
  }

  /** A llamafactory run as listed: status from its process, or from how it ended (recorded). */
  #infoExternal(meta: SessionMeta): SessionInfo {
    const run = this.external.get(meta.id);
    const p = run?.progress();
    const ended = meta.lf;
    const status: SessionStatus = run?.running
      ? "running"
      : ended && ended.exit_code === 0 && !ended.stopped
      ? "finished"
      : "stopped";
    return row(meta, "llamafactory", status, run?.running ? "llamafactory-cli train" : null, {
      global_step: p?.global_step ?? meta.global_step,
      total_steps: p?.total_steps ?? meta.total_steps,
      last_loss: p ? p.last_loss : meta.last_loss,
    });
  }

  #info(meta: SessionMeta): SessionInfo {
    if (meta.runner === "llamafactory") return this.#infoExternal(meta);
    const s = this.#live.get(meta.id);
    const st = s?.state;
    const status: SessionStatus = !s ? "stopped" : st!.busy ? "running" : st!.finished ? "finished" : "ready";
    return row(meta, "whetstone", status, st?.busy ?? null, {
      global_step: st?.global_step ?? meta.global_step,
      total_steps: st?.total_steps ?? meta.total_steps,
      last_loss: st?.last_loss ?? meta.last_loss,
    });
  }

  async list(): Promise<SessionInfo[]> {
    return (await this.store.list()).map((m) => this.#info(m));
  }

  /** One session with its plan, state and arguments. */
  async get(
    id: string,
  ): Promise<SessionInfo & { plan: SessionPlan | Partial<SessionPlan>; config: Record<string, unknown> }> {
    const meta = await this.meta(id);
    return { ...this.#info(meta), plan: this.#live.get(id)?.plan ?? meta.plan, config: meta.config };
  }

  /** Forgets a session (its files stay); 409 while an operation runs on it. */
  async delete(id: string): Promise<SessionMeta> {
    const meta = await this.meta(id);
    if (this.external.get(id)?.running) {
      throw new HttpError(409, `session ${id} is running (llamafactory-cli train); POST /sessions/${id}/stop first`);
    }
    this.external.delete(id);
    const s = this.#live.get(id);
    if (s?.busy) throw new HttpError(409, `session ${id} is busy (${s.busy} is running); delete it afterwards`);
    s?.close();
    this.#live.delete(id);
    await this.store.delete(id);
    return meta;
  }

  /**
   * Stops a run started outside the engine (a llamafactory run) and returns true; false when `id` is not one (a
   * Whetstone session: its stop is the background runner's). 404 when unknown.
   */
  async stopExternal(id: string): Promise<boolean> {
    const meta = await this.meta(id);
    if (meta.runner !== "llamafactory") return false;
    await this.external.get(id)?.stop();
    return true;
  }

  /** Stops the llamafactory runs still running (the server is closing). */
  async stopExternalRuns(): Promise<void> {
    await Promise.all([...this.external.values()].filter((r) => r.running).map((r) => r.stop()));
  }

  /** Closes every loaded session (idle or not) and the store. */
  close(): void {
    for (const s of this.#live.values()) {
      try {
        s.close();
      } catch { /* busy: its executor goes with the process */ }
    }
    this.#live.clear();
    this.store.close();
  }
}
