/**
 * What every router shares: the settings, the path roots, the sessions, and the model served by
 * `/v1/chat/completions` (loaded on first use).
 * @module
 */
import { join } from "node:path";
import { type BatcherLimits, ChatEngine } from "../engine/mod.ts";
import { BackgroundRuns } from "./background.ts";
import { ChatModels } from "./chat_models.ts";
import { LfRuns } from "./lf_sessions.ts";
import type { ServerOptions } from "./options.ts";
import { Roots } from "./paths.ts";
import { SessionRegistry } from "./registry.ts";
import { SessionStore } from "./store.ts";

/** Default request body limit: 1 MiB. */
export const DEFAULT_BODY_LIMIT = 1 << 20;

/** The server's shared state. */
export class ServerContext {
  #chat: Promise<ChatEngine> | undefined;
  /** The sessions' background training runs (`POST /sessions/:id/run`). */
  readonly runs: BackgroundRuns;

  private constructor(
    readonly options: ServerOptions,
    readonly roots: Roots,
    readonly sessions: SessionRegistry,
    readonly bodyLimit: number,
    log: (line: string) => void,
    /** The llamafactory runs (routes/lf_sessions.ts). */
    readonly lf: LfRuns,
    /** Models loaded for chat by `POST /chat/models` (routes/chat_models.ts). */
    readonly chatModels: ChatModels,
  ) {
    this.runs = new BackgroundRuns(log, (id) => sessions.touch(id));
  }

  /** Resolves the roots and opens the session store. */
  static async create(options: ServerOptions = {}): Promise<ServerContext> {
    const roots = await Roots.of(options.roots ?? [Deno.cwd()]);
    const store = await SessionStore.open(join(options.stateDir ?? "out/.whetstone", "sessions.kv"));
    const log = options.log ?? ((s: string) => console.error(s));
    const sessions = new SessionRegistry(store, roots, log);
    return new ServerContext(
      options,
      roots,
      sessions,
      options.bodyLimit ?? DEFAULT_BODY_LIMIT,
      log,
      new LfRuns(sessions, roots, options.llamafactory),
      new ChatModels(roots),
    );
  }

  /** The id of the served chat model, if one is configured. */
  get chatModelName(): string | undefined {
    const m = this.options.chatModel;
    return m ? m.name ?? m.model : undefined;
  }

  /** The continuous-batching limits every chat engine answers under (`--max-batch`, `--max-queue`). */
  get batchLimits(): BatcherLimits {
    return { maxBatch: this.options.batch?.maxBatch ?? 8, maxQueue: this.options.batch?.maxQueue ?? 64 };
  }

  /** The served chat model (loaded once); undefined when none is configured. */
  chat(): Promise<ChatEngine> | undefined {
    const m = this.options.chatModel;
    if (!m) return undefined;
    if (!this.#chat) {
      this.#chat = ChatEngine.load(m.model, m).then((e) => (e.setBatchLimits(this.batchLimits), e));
      this.#chat.catch(() => this.#chat = undefined); // a failed load is tried again next time
    }
    return this.#chat;
  }

  /** Stops the background runs; closes the sessions, the store and the served model. */
  async close(): Promise<void> {
    await this.runs.close();
    await this.sessions.stopExternalRuns();
    this.sessions.close();
    this.chatModels.close();
    const chat = await this.#chat?.catch(() => undefined);
    chat?.model.executor.dispose();
  }
}
