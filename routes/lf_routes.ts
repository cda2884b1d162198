/**
 * The LLaMA-Factory runner's routes over the runs of routes/lf_sessions.ts: for a llamafactory run, `GET
 * /sessions/:id/events` streams its trainer_log.jsonl lines as `step` and `eval` events and its end as `done`, and
 * `POST /sessions/:id/stop` aborts it as LlamaBoard does; for any other session these two pass on to the next handler
 * (Whetstone's). `GET /health` lists the runners ({@linkcode runners}).
 * @module
 */
import { join } from "node:path";
import { Hono } from "../deps.ts";
import { latestCheckpoint } from "../engine/train/outputs/checkpoint.ts";
import { API, reply } from "./api.ts";
import type { ServerContext } from "./context.ts";
import { sseResponse } from "./sse.ts";

/** The runners `GET /health` lists: Whetstone's engine, and LLaMA-Factory when `llamafactory-cli` is on PATH. */
export async function runners(ctx: ServerContext): Promise<
  [{ name: "whetstone"; available: true }, { name: "llamafactory"; available: boolean; path: string | null }]
> {
  const path = await ctx.lf.cli();
  return [{ name: "whetstone", available: true }, { name: "llamafactory", available: path !== null, path }];
}

/** The newest checkpoint-N of `dir`, else `dir` itself when the trainer saved there, else null. */
async function savedIn(dir: string): Promise<string | null> {
  const ck = await latestCheckpoint(dir).catch(() => undefined);
  if (ck) return ck.path;
  for (const f of ["adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json"]) {
    if (await Deno.stat(join(dir, f)).then(() => true, () => false)) return dir;
  }
  return null;
}

/** `events` and `stop` for llamafactory runs; other sessions' requests pass on to the next handlers. */
export function lfRoutes(ctx: ServerContext): Hono {
  const r = new Hono();
  const lfMeta = async (id: string) => {
    const meta = await ctx.sessions.store.get(id);
    return meta?.runner === "llamafactory" ? meta : undefined;
  };

  r.get("/sessions/:id/events", async (c, next) => {
    const id = c.req.param("id");
    const meta = await lfMeta(id);
    if (!meta) return await next();
    const follow = c.req.query("follow") === "true";
    const t = ctx.lf.tracked(id);
    return sseResponse((w) =>
      new Promise<void>((resolve) => {
        w.send({ id, ...ctx.lf.state(id, meta.output_dir, meta) }, "state");
        const ping = setInterval(() => w.comment("ping"), 15_000);
        let off = () => {};
        const end = () => {
          clearInterval(ping);
          off();
          resolve();
        };
        w.signal.addEventListener("abort", end, { once: true });
        if (!t || !t.running) {
          const p = { global_step: meta.global_step, total_steps: meta.total_steps };
          const lf = meta.lf;
          w.send(
            t?.done ?? {
              steps: 0,
              ...p,
              finished: lf?.exit_code === 0 && !lf.stopped,
              exit_code: lf?.exit_code ?? null,
              signal: lf?.signal ?? null,
              stopped: lf?.stopped ?? true,
            },
            "done",
          );
          if (!follow) end();
          return;
        }
        off = t.on((type, data) => {
          w.send(data, type);
          if (type === "done" && !follow) end();
        });
      })
    );
  });

  r.post("/sessions/:id/stop", async (c, next) => {
    const id = c.req.param("id");
    const meta = await lfMeta(id);
    if (!meta) return await next();
    await ctx.sessions.stopExternal(id);
    const fresh = (await ctx.sessions.store.get(id)) ?? meta;
    return reply(c, API.stop, {
      id,
      state: ctx.lf.state(id, meta.output_dir, fresh),
      checkpoint: await savedIn(meta.output_dir),
    });
  });

  return r;
}
