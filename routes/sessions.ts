/**
 * Session lifecycle: `POST /sessions` (training arguments as in the YAML, optionally over a `config` file),
 * `GET /sessions`, `GET /sessions/:id`, `DELETE /sessions/:id`, `POST /sessions/:id/resume` (after a restart: from
 * the latest checkpoint) and `GET /sessions/:id/log` (the trainer_log.jsonl entries). `POST /sessions` with
 * `runner: "llamafactory"` starts a LLaMA-Factory run instead (routes/lf_sessions.ts).
 * @module
 */
import { Hono } from "../deps.ts";
import { readConfigFile, readTrainerLog } from "../engine/mod.ts";
import { API, on, reply } from "./api.ts";
import type { ServerContext } from "./context.ts";
import { badRequest } from "./http.ts";
import { lfOutputTail } from "./lf_sessions.ts";

/** The session lifecycle routes. */
export function sessionRoutes(ctx: ServerContext): Hono {
  const r = new Hono();

  on(r, API.createSession, async (c, { body }) => {
    const { config: file, ...rest } = body;
    let config: Record<string, unknown> = rest;
    if (typeof file === "string") {
      const path = await ctx.roots.path("config", file);
      let base: Record<string, unknown>;
      try {
        base = await readConfigFile(path);
      } catch (e) {
        throw badRequest("config", (e as Error).message);
      }
      config = { ...base, ...rest };
    }
    const { runner, ...args } = config;
    if (runner === "llamafactory") return reply(c, API.createSession, await ctx.lf.create(args));
    if (runner != null && runner !== "whetstone") throw badRequest("runner", `expected whetstone or llamafactory`);
    const { id, session } = await ctx.sessions.create(args);
    return reply(c, API.createSession, {
      id,
      plan: session.plan,
      state: session.state,
      warnings: session.args.warnings,
    });
  }, ctx.bodyLimit);

  on(r, API.listSessions, async (c) => reply(c, API.listSessions, { sessions: await ctx.sessions.list() }));

  on(r, API.getSession, async (c, { params }) => reply(c, API.getSession, await ctx.sessions.get(params.id)));

  on(r, API.deleteSession, async (c, { params }) => {
    const meta = await ctx.sessions.delete(params.id);
    return reply(c, API.deleteSession, { deleted: meta.id, output_dir: meta.output_dir, files: "kept" });
  });

  on(r, API.resume, async (c, { params: { id } }) => {
    const { session, resumedFrom } = await ctx.sessions.resume(id);
    return reply(c, API.resume, { id, resumed_from: resumedFrom, plan: session.plan, state: session.state });
  });

  on(r, API.log, async (c, { params: { id } }) => {
    const meta = await ctx.sessions.meta(id);
    const output = meta.runner === "llamafactory" ? { output: await lfOutputTail(meta.output_dir) } : {};
    return reply(c, API.log, { id, entries: await readTrainerLog(meta.output_dir), ...output });
  });

  return r;
}
