/**
 * Working a loaded session: `POST /sessions/:id/step {steps}`, `POST /sessions/:id/run {steps}` and `POST
 * /sessions/:id/stop` (a background run: routes/background.ts), `GET /sessions/:id/events` (server-sent events:
 * `state` first, then `step`, `eval`, `save`, `error` and `done`), `POST /sessions/:id/evaluate`, `POST
 * /sessions/:id/generate` (chat with the model being trained), `POST /sessions/:id/save` and `POST
 * /sessions/:id/export` (merged, with ONNX, or the adapter alone). One operation runs on a session at a time:
 * another gets a 409; generations are the exception, they run together in one continuous batch.
 * @module
 */
import { isAbsolute, sep } from "node:path";
import { Hono } from "../deps.ts";
import { hubOptionsOf, parseExportArgs, resolveModel } from "../engine/mod.ts";
import { API, on, reply } from "./api.ts";
import type { ServerContext } from "./context.ts";
import { badRequest, HttpError } from "./http.ts";
import { generatingOptions, parseMessages, parseTools } from "./messages.ts";
import { sseResponse } from "./sse.ts";

const inside = (child: string, parent: string) => child === parent || child.startsWith(parent + sep);

/** The files under `dir` (paths relative to it, sorted) with their sizes. */
async function filesIn(dir: string): Promise<{ path: string; bytes: number }[]> {
  const out: { path: string; bytes: number }[] = [];
  const walk = async (rel: string) => {
    for await (const e of Deno.readDir(rel ? `${dir}/${rel}` : dir)) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory) await walk(p);
      else if (e.isFile) out.push({ path: p, bytes: (await Deno.stat(`${dir}/${p}`)).size });
    }
  };
  await walk("");
  return out.sort((a, b) => a.path < b.path ? -1 : 1);
}

/** The routes that act on a loaded session. */
export function trainingRoutes(ctx: ServerContext): Hono {
  const r = new Hono();

  on(r, API.step, async (c, { params: { id }, body }) => {
    const s = await ctx.sessions.live(id);
    const records = await s.step(body.steps ?? 1);
    await ctx.sessions.touch(id);
    return reply(c, API.step, { id, steps: records, state: s.state, tokens_per_second: s.stats.tokensPerSecond });
  }, ctx.bodyLimit);

  on(r, API.run, async (c, { params: { id }, body }) => {
    const s = await ctx.sessions.live(id);
    ctx.runs.start(id, s, body.steps ?? undefined);
    return reply(c, API.run, { id, state: s.state });
  }, ctx.bodyLimit);

  on(r, API.stop, async (c, { params: { id } }) => {
    const s = await ctx.sessions.live(id);
    if (!(await ctx.runs.stop(id))) {
      const what = s.busy ? ` (${s.busy} is running, not a background run)` : "";
      throw new HttpError(
        409,
        `session ${id} has no background run to stop${what}; POST /sessions/${id}/run starts one`,
      );
    }
    const { checkpoint } = await s.save();
    await ctx.sessions.touch(id);
    return reply(c, API.stop, { id, state: s.state, checkpoint });
  });

  on(r, API.events, async (_c, { params: { id }, query }) => {
    const follow = query.follow === "true";
    const s = await ctx.sessions.live(id);
    return sseResponse((w) =>
      new Promise<void>((resolve) => {
        w.send({ id, ...s.state }, "state");
        const ping = setInterval(() => w.comment("ping"), 15_000);
        const end = () => {
          clearInterval(ping);
          off();
          resolve();
        };
        const off = s.on((e) => {
          if (e.type === "done" && e.data.error !== undefined) {
            w.send({ error: e.data.error, global_step: e.data.global_step }, "error");
          }
          w.send(e.data, e.type);
          if (e.type === "done" && !follow) end();
        });
        w.signal.addEventListener("abort", end, { once: true });
      })
    );
  });

  on(r, API.evaluate, async (c, { params: { id } }) => {
    const s = await ctx.sessions.live(id);
    if (!s.plan.eval_records) {
      throw new HttpError(400, "no evaluation data: create the session with val_size or eval_dataset");
    }
    const rec = await s.evaluate();
    await ctx.sessions.touch(id);
    return reply(c, API.evaluate, { id, ...rec });
  });

  on(r, API.generate, async (c, { params: { id }, body }) => {
    const s = await ctx.sessions.live(id);
    const { messages, system } = parseMessages(body.messages);
    const tools = parseTools(body.tools);
    // Generations on a session batch together (engine/nn/batcher.ts); a step, save or export running is a 409.
    s.chat.setBatchLimits(ctx.batchLimits);
    s.chat.checkRoom();
    const res = await s.generate(messages, { ...generatingOptions(body), system, tools, signal: c.req.raw.signal });
    return reply(c, API.generate, {
      id,
      text: res.text,
      finish_reason: res.finishReason,
      usage: {
        prompt_tokens: res.promptTokens,
        completion_tokens: res.completionTokens,
        total_tokens: res.promptTokens + res.completionTokens,
      },
    });
  }, ctx.bodyLimit);

  on(r, API.save, async (c, { params: { id } }) => {
    const s = await ctx.sessions.live(id);
    const out = await s.save();
    await ctx.sessions.touch(id);
    return reply(c, API.save, { id, ...out });
  });

  on(r, API.export, async (c, { params: { id }, body }) => {
    const s = await ctx.sessions.live(id);
    const dirText = body.export_dir;
    const size = body.export_size ?? 5;
    const inferDtype = body.infer_dtype ?? "auto";
    const dir = await ctx.roots.path("export_dir", dirText);
    // exportModel replaces the folder whole: never a root, the session's outputs, its model, or a non-model folder.
    if (ctx.roots.dirs.some((root) => inside(root, dir))) {
      throw badRequest("export_dir", `${dirText} is (or holds) a root folder; name a folder inside one`);
    }
    const source = await resolveModel(s.args.model_name_or_path, hubOptionsOf(s.args));
    for (const [what, path] of [["output folder", s.args.output_dir], ["model folder", source]]) {
      if (isAbsolute(path) && (inside(path, dir) || inside(dir, path))) {
        throw badRequest("export_dir", `${dirText} overlaps the session's ${what} ${path}`);
      }
    }
    const stat = await Deno.stat(dir).catch(() => undefined);
    const has = (f: string) => Deno.stat(`${dir}/${f}`).then(() => true, () => false);
    if (body.adapter_only) {
      if (body.export_onnx) throw badRequest("export_onnx", "an adapter alone has no ONNX export; leave adapter_only");
      if (s.args.finetuning_type !== "lora" && s.args.finetuning_type !== "oft") {
        throw badRequest(
          "adapter_only",
          `the session trains finetuning_type ${s.args.finetuning_type}, not an adapter`,
        );
      }
      if (stat && !(await has("adapter_config.json"))) {
        throw badRequest("export_dir", `${dirText} exists and is not an adapter folder`);
      }
      await s.exportAdapter(dir);
      return reply(c, API.export, { id, export_dir: dir, dtype: null, export_size: size, files: await filesIn(dir) });
    }
    if (stat && !(await has("config.json"))) {
      throw badRequest("export_dir", `${dirText} exists and is not a model folder (an export replaces it whole)`);
    }
    let args: ReturnType<typeof parseExportArgs>;
    try {
      const sourceConfig = JSON.parse(await Deno.readTextFile(`${source}/config.json`));
      args = parseExportArgs({
        model_name_or_path: source,
        export_dir: dir,
        export_size: size,
        infer_dtype: inferDtype,
        export_onnx: body.export_onnx,
      }, sourceConfig);
    } catch (e) {
      const m = (e as Error).message, key = /^(\w+): /.exec(m)?.[1];
      const field = key?.startsWith("export_onnx") ? key : "infer_dtype";
      throw badRequest(field, key === field ? m.slice(key.length + 2) : m);
    }
    await s.export(dir, { dtype: args.dtype, shardBytes: size * 1e9, onnx: args.onnx });
    return reply(c, API.export, {
      id,
      export_dir: dir,
      dtype: args.dtype,
      export_size: size,
      files: await filesIn(dir),
    });
  }, ctx.bodyLimit);

  return r;
}
