/**
 * Session metadata that outlives the server: one Deno KV record per session (`["sessions", id]`) in an embedded
 * database file under the state folder. The weights live in the session's checkpoints; a restarted server lists
 * the sessions from here and resumes one from its latest checkpoint.
 * @module
 */
import { dirname } from "node:path";
import type { SessionPlan } from "../engine/mod.ts";

/** What is kept of a session. */
export interface SessionMeta {
  id: string;
  created_at: string;
  updated_at: string;
  /** The training arguments as given, with paths resolved (re-parsed when the session is resumed). */
  config: Record<string, unknown>;
  output_dir: string;
  global_step: number;
  total_steps: number;
  last_loss: number | null;
  /** What is known before training starts (llamafactory runs: the part read from their arguments). */
  plan: SessionPlan | Partial<SessionPlan>;
  /** Who trains it: Whetstone's engine (absent: "whetstone") or LLaMA-Factory (routes/lf_sessions.ts). */
  runner?: "whetstone" | "llamafactory";
  /** llamafactory runs: the YAML, the command line, and how the process ended (null fields while it runs). */
  lf?: LfRecord;
}

/** How a llamafactory run was launched and how it ended. */
export interface LfRecord {
  yaml: string;
  command: string[];
  pid: number;
  exit_code: number | null;
  signal: string | null;
  stopped: boolean;
  ended_at: string | null;
}

/** The session records of one state folder. */
export class SessionStore {
  private constructor(readonly path: string, readonly kv: Deno.Kv) {}

  /** Opens (creating it and its folder if needed) the database file at `path`. */
  static async open(path: string): Promise<SessionStore> {
    if (typeof Deno.openKv !== "function") {
      throw new Error(
        'Deno KV is not enabled in this Deno: run with --unstable-kv (deno.json\'s "unstable": ["kv"] turns it on)',
      );
    }
    await Deno.mkdir(dirname(path), { recursive: true });
    return new SessionStore(path, await Deno.openKv(path));
  }

  async put(meta: SessionMeta): Promise<void> {
    await this.kv.set(["sessions", meta.id], meta);
  }

  async get(id: string): Promise<SessionMeta | undefined> {
    return (await this.kv.get<SessionMeta>(["sessions", id])).value ?? undefined;
  }

  /** Every session, oldest first. */
  async list(): Promise<SessionMeta[]> {
    const out: SessionMeta[] = [];
    for await (const e of this.kv.list<SessionMeta>({ prefix: ["sessions"] })) out.push(e.value);
    return out.sort((a, b) => a.created_at.localeCompare(b.created_at));
  }

  async delete(id: string): Promise<void> {
    await this.kv.delete(["sessions", id]);
  }

  close(): void {
    this.kv.close();
  }
}
