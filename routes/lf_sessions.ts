/**
 * The LLaMA-Factory runner as sessions: `POST /sessions {runner: "llamafactory", ...}` writes the run's YAML
 * (lf_yaml.ts), launches `llamafactory-cli train` (runner_lf.ts) and records the run in the session store
 * (`runner: "llamafactory"`), so that `GET /sessions` lists it, `GET /sessions/:id/log` reads its
 * trainer_log.jsonl, and it survives a restart as a record. For a llamafactory run, `GET /sessions/:id/events`
 * streams its trainer_log.jsonl lines as `step` and `eval` events and its end as `done`, and `POST
 * /sessions/:id/stop` aborts it as LlamaBoard does; for any other session these two pass on to the next handler
 * (Whetstone's); routes/lf_routes.ts answers those and lists the runners for `GET /health`.
 * @module
 */
import { join } from "node:path";
import type { SessionPlan } from "../engine/mod.ts";
import { KEY_TABLE } from "../engine/config/keys.ts";
import type { API, Reply } from "./api.ts";
import { badRequest, HttpError } from "./http.ts";
import { lfArgs, writeLfYaml } from "./lf_yaml.ts";
import type { Roots } from "./paths.ts";
import type { ExternalRun, SessionRegistry } from "./registry.ts";
import { findOnPath, LF_CLI, LF_CLI_LOG, type LfEvent, LfRun } from "./runner_lf.ts";
import type { SessionMeta } from "./store.ts";

type State = Reply<typeof API.createSession>["state"];
type DoneData = {
  steps: number;
  global_step: number;
  total_steps: number;
  finished: boolean;
  exit_code: number | null;
  signal: string | null;
  stopped: boolean;
  error?: string;
};

const num = (v: unknown): number | undefined => (typeof v === "number" && Number.isFinite(v) ? v : undefined);

/** A launched run as the registry sees it, relaying the run's events once the store has them. */
class TrackedRun implements ExternalRun {
  readonly #listeners = new Set<(type: string, data: unknown) => void>();
  #chain: Promise<void> = Promise.resolve();
  #settled = false;
  steps = 0;
  done: DoneData | null = null;

  constructor(readonly id: string, readonly run: LfRun, readonly registry: SessionRegistry) {
    run.on((e) => this.#onEvent(e));
  }

  get running(): boolean {
    return !this.#settled;
  }

  progress(): { global_step: number; total_steps: number; last_loss: number | null } {
    const s = this.run.lastStep;
    return {
      global_step: num(s?.current_steps) ?? 0,
      total_steps: num(s?.total_steps) ?? 0,
      last_loss: num(s?.loss) ?? null,
    };
  }

  stop(): Promise<void> {
    return this.run.stop().then(() => this.#chain);
  }

  on(listener: (type: string, data: unknown) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #relay(type: string, data: unknown): void {
    for (const l of [...this.#listeners]) l(type, data);
  }

  /** Store writes run one after another; a listener hears an event once the store has it. */
  #record(update: (meta: SessionMeta) => SessionMeta): Promise<void> {
    return this.#chain = this.#chain.then(async () => {
      const meta = await this.registry.store.get(this.id);
      if (meta) await this.registry.store.put({ ...update(meta), updated_at: new Date().toISOString() });
    }).catch((e) => this.registry.log(`[${this.id}] cannot record the run: ${(e as Error).message}`));
  }

  #onEvent(e: LfEvent): void {
    if (e.type === "step") {
      this.steps++;
      const p = this.progress();
      this.#record((m) => ({ ...m, ...p })).then(() => this.#relay("step", e.data));
    } else if (e.type === "eval") {
      this.#chain = this.#chain.then(() => this.#relay("eval", e.data)); // after the step before it
    } else if (e.type === "done") {
      const p = this.progress();
      const { exit_code, signal, stopped } = e.data;
      const failed = !stopped && exit_code !== 0;
      const last = this.run.tail.trim().split("\n").at(-1) ?? "";
      this.done = {
        steps: this.steps,
        global_step: p.global_step,
        total_steps: p.total_steps,
        finished: exit_code === 0 && !stopped,
        exit_code,
        signal,
        stopped,
        ...(failed ? { error: `llamafactory-cli exited with ${exit_code ?? signal}: ${last}` } : {}),
      };
      const ended = { exit_code, signal, stopped, ended_at: new Date().toISOString() };
      this.#record((m) => ({ ...m, ...p, lf: { ...m.lf!, ...ended } })).then(() => {
        this.#settled = true;
        this.#relay("done", this.done);
      });
    }
  }
}

/** The plan's part that the arguments give (LF's defaults where absent); the rest only LF knows. */
function partialPlan(args: Record<string, unknown>): Partial<SessionPlan> {
  const given = (k: string) => args[k] ?? KEY_TABLE[k]?.def;
  const str = (k: string) => (typeof given(k) === "string" ? given(k) as string : undefined);
  const int = (k: string) => num(given(k));
  const plan: Partial<SessionPlan> = {
    stage: str("stage"),
    finetuning_type: str("finetuning_type"),
    executor: "llamafactory",
    per_device_train_batch_size: int("per_device_train_batch_size"),
    gradient_accumulation_steps: int("gradient_accumulation_steps"),
    max_length: int("cutoff_len"),
  };
  const maxSteps = num(args.max_steps);
  if (maxSteps && maxSteps > 0) plan.total_steps = maxSteps;
  return Object.fromEntries(Object.entries(plan).filter(([, v]) => v !== undefined));
}

/** The llamafactory runs of a server. */
export class LfRuns {
  readonly #tracked = new Map<string, TrackedRun>();

  constructor(
    readonly registry: SessionRegistry,
    readonly roots: Roots,
    readonly opts: { searchPath?: string; env?: Record<string, string>; pollMs?: number; graceMs?: number } = {},
  ) {}

  /** Where llamafactory-cli is (on the server's PATH), or null. */
  cli(): Promise<string | null> {
    return findOnPath(LF_CLI, this.opts.searchPath ?? Deno.env.get("PATH") ?? "");
  }

  /** Writes the YAML and launches `llamafactory-cli train` on it; the answer of `POST /sessions`. */
  async create(config: Record<string, unknown>): Promise<Reply<typeof API.createSession>> {
    const cli = await this.cli();
    if (!cli) {
      throw badRequest(
        "runner",
        `${LF_CLI} is not on the server's PATH (install LLaMA-Factory in the server's environment); GET /health ` +
          "lists the runners",
      );
    }
    const { args, outputDir, warnings } = await lfArgs(config, this.roots);
    for (const [id, t] of this.#tracked) {
      if (t.running && t.run.launch.outputDir === outputDir) {
        throw new HttpError(
          409,
          `output_dir: ${outputDir} is the output folder of running session ${id}`,
          "output_dir",
        );
      }
    }
    for (const [id, s] of this.registry.loaded()) {
      if (s.args.output_dir === outputDir) {
        throw new HttpError(409, `output_dir: ${outputDir} is the output folder of session ${id}`, "output_dir");
      }
    }
    const yaml = await writeLfYaml(outputDir, args);
    let run: LfRun;
    try {
      const { env, pollMs, graceMs } = this.opts;
      run = await LfRun.start({ cli, yaml, outputDir, cwd: Deno.cwd(), env, pollMs, graceMs });
    } catch (e) {
      throw new HttpError(500, `cannot start ${cli}: ${(e as Error).message}`);
    }
    const id = crypto.randomUUID().replaceAll("-", "").slice(0, 12);
    const now = new Date().toISOString();
    const plan = partialPlan(args);
    await this.registry.store.put({
      id,
      created_at: now,
      updated_at: now,
      config: args,
      output_dir: outputDir,
      global_step: 0,
      total_steps: plan.total_steps ?? 0,
      last_loss: null,
      plan,
      runner: "llamafactory",
      lf: { yaml, command: run.command, pid: run.pid, exit_code: null, signal: null, stopped: false, ended_at: null },
    });
    const tracked = new TrackedRun(id, run, this.registry);
    this.#tracked.set(id, tracked);
    this.registry.external.set(id, tracked);
    this.registry.log(`[${id}] ${run.command.join(" ")} (pid ${run.pid})`);
    return { id, runner: "llamafactory", plan, state: this.state(id, outputDir), warnings, yaml, command: run.command };
  }

  /** The run `id` started by this server, if any. */
  tracked(id: string): TrackedRun | undefined {
    return this.#tracked.get(id);
  }

  /** A run's state in the shape of a session's. */
  state(id: string, outputDir: string, meta?: SessionMeta): State {
    const t = this.#tracked.get(id);
    const s = t?.run.lastStep;
    const p = t?.progress();
    return {
      global_step: p?.global_step ?? meta?.global_step ?? 0,
      total_steps: p?.total_steps || meta?.total_steps || 0,
      epoch: num(s?.epoch) ?? 0,
      total_tokens: num(s?.total_tokens) ?? 0,
      busy: t?.running ? "llamafactory-cli train" : null,
      finished: t ? (t.done?.finished ?? false) : meta?.lf?.exit_code === 0 && !meta.lf.stopped,
      last_loss: p ? p.last_loss : meta?.last_loss ?? null,
      output_dir: outputDir,
    };
  }
}

/** The last 20,000 characters of a llamafactory run's stdout and stderr (its llamafactory_cli.log); "" when none. */
export async function lfOutputTail(outputDir: string): Promise<string> {
  try {
    const bytes = await Deno.readFile(join(outputDir, LF_CLI_LOG));
    return new TextDecoder().decode(bytes.subarray(Math.max(0, bytes.length - 80_000))).slice(-20_000);
  } catch {
    return "";
  }
}
