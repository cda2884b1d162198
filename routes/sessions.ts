/**
 * Session lifecycle: `POST /sessions` (training arguments as in the YAML, optionally over a `config` file),
 * `GET /sessions`, `GET /sessions/:id`, `DELETE /sessions/:id`, `POST /sessions/:id/resume` (after a restart: from
 * the latest checkpoint) and `GET /sessions/:id/log` (the trainer_log.jsonl entries).
 * @module
 */
import { Hono } from "../deps.ts";
import { readConfigFile, readTrainerLog } from "../engine/mod.ts";
import type { ServerContext } from "./context.ts";
import { badRequest, Fields, readJson } from "./http.ts";

/** The session lifecycle routes. */
export function sessionRoutes(ctx: ServerContext): Hono {
  const r = new Hono();

  r.post("/sessions", async (c) => {
    const body = await readJson(c, ctx.bodyLimit);
    let config = body;
    const file = new Fields(body).str("config");
    if (file !== undefined) {
      const path = await ctx.roots.path("config", file);
      let base: Record<string, unknown>;
      try {
        base = await readConfigFile(path);
      } catch (e) {
        throw badRequest("config", (e as Error).message);
      }
      const { config: _, ...rest } = body;
      config = { ...base, ...rest };
    }
    const { id, session } = await ctx.sessions.create(config);
    return c.json({ id, plan: session.plan, state: session.state, warnings: session.args.warnings }, 201);
  });

  r.get("/sessions", async (c) => c.json({ sessions: await ctx.sessions.list() }));

  r.get("/sessions/:id", async (c) => c.json(await ctx.sessions.get(c.req.param("id"))));

  r.delete("/sessions/:id", async (c) => {
    const meta = await ctx.sessions.delete(c.req.param("id"));
    return c.json({ deleted: meta.id, output_dir: meta.output_dir, files: "kept" });
  });

  r.post("/sessions/:id/resume", async (c) => {
    const id = c.req.param("id");
    const { session, resumedFrom } = await ctx.sessions.resume(id);
    return c.json({ id, resumed_from: resumedFrom, plan: session.plan, state: session.state });
  });

  r.get("/sessions/:id/log", async (c) => {
    const id = c.req.param("id");
    const meta = await ctx.sessions.meta(id);
    return c.json({ id, entries: await readTrainerLog(meta.output_dir) });
  });

  return r;
}
