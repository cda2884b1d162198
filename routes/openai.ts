/**
 * The OpenAI-compatible chat API, as LLaMA-Factory's `api` serves it: `GET /v1/models` and `POST
 * /v1/chat/completions` (streamed as server-sent `chat.completion.chunk`s ending with `data: [DONE]` when
 * `stream` is true). The model is a loaded session named by its id (the model being trained, with its adapter),
 * else the model the server was started with (`--model`, `--adapter`, `--template`).
 * @module
 */
import { Hono } from "../deps.ts";
import { type ChatEngine, SessionBusyError, type TrainSession } from "../engine/mod.ts";
import { API, on, reply } from "./api.ts";
import type { ServerContext } from "./context.ts";
import { badRequest, HttpError } from "./http.ts";
import { openAiOptions, parseMessages, parseTools } from "./messages.ts";
import { sseResponse } from "./sse.ts";

const STARTED = Math.floor(Date.now() / 1000);

/** The engine answering for `model`: a model loaded for chat, a loaded session by id, else the served model. */
export async function target(
  ctx: ServerContext,
  model: string,
): Promise<{ engine: ChatEngine; session?: TrainSession }> {
  const loaded = ctx.chatModels.engine(model);
  if (loaded) {
    loaded.setBatchLimits(ctx.batchLimits);
    return { engine: loaded };
  }
  try {
    const session = await ctx.sessions.live(model);
    session.chat.setBatchLimits(ctx.batchLimits);
    return { engine: session.chat, session };
  } catch (e) {
    if (!(e instanceof HttpError) || e.status !== 404) throw e;
  }
  const served = ctx.chat();
  if (!served) {
    throw new HttpError(
      404,
      `model: no model ${JSON.stringify(model)}: name a loaded session's id (GET /v1/models), or start the server ` +
        "with --model (WHETSTONE_MODEL)",
      "model",
    );
  }
  try {
    return { engine: await served };
  } catch (e) {
    throw new HttpError(500, `cannot load the served model: ${(e as Error).message}`);
  }
}

/** Runs `fn` holding the chat model `model` when it is one (routes/chat_models.ts), so an unload waits for it. */
async function holding<T>(ctx: ServerContext, model: string, fn: () => Promise<T>): Promise<T> {
  const held = ctx.chatModels.hold(model);
  try {
    return await fn();
  } finally {
    held?.release();
  }
}

const hex = () => crypto.randomUUID().replaceAll("-", "");

/** The OpenAI-style routes. */
export function openAiRoutes(ctx: ServerContext): Hono {
  const r = new Hono();

  on(r, API.openAiModels, (c) => {
    const card = (id: string, created: number) => ({ id, object: "model" as const, created, owned_by: "whetstone" });
    const data = [
      ...ctx.chatModels.list().map((m) => card(m.id, m.created)),
      ...ctx.sessions.loaded().map(([id]) => card(id, STARTED)),
    ];
    const name = ctx.chatModelName;
    if (name) data.unshift(card(name, STARTED));
    return reply(c, API.openAiModels, { object: "list", data });
  });

  on(r, API.chatCompletions, async (c, { body }) => {
    const model = body.model;
    const { messages, system } = parseMessages(body.messages);
    const tools = parseTools(body.tools);
    const o = openAiOptions(body);
    if (o.stream && tools) throw badRequest("stream", "Cannot stream function calls.");
    if (o.stream && o.n > 1) throw badRequest("stream", "Cannot stream multiple responses.");
    const { engine, session } = await target(ctx, model);
    const prompt = engine.encode(messages, system, tools);
    const id = `chatcmpl-${hex()}`, created = Math.floor(Date.now() / 1000);
    // Answers join the model's running batch (engine/nn/batcher.ts); a full batch and queue is a 503.
    engine.checkRoom(o.n);
    const run = <T>(fn: () => Promise<T>) => (session ? session.generating(fn) : holding(ctx, model, fn));
    if (!o.stream) {
      // A client that goes away frees its rows at the next decode step.
      const results = await run(() => engine.completeMany(prompt, o.n, { ...o, signal: c.req.raw.signal }));
      const completion = results.reduce((n, x) => n + x.completionTokens, 0);
      return reply(c, API.chatCompletions, {
        id,
        object: "chat.completion",
        created,
        model,
        choices: results.map((x, index) => {
          const calls = tools ? engine.extractTool(x.text) : x.text;
          if (typeof calls === "string") {
            return { index, message: { role: "assistant" as const, content: calls }, finish_reason: x.finishReason };
          }
          const tool_calls = calls.map((t) => ({
            id: `call_${hex()}`,
            type: "function" as const,
            function: { name: t.name, arguments: t.arguments },
          }));
          const message = { role: "assistant" as const, content: null, tool_calls };
          return { index, message, finish_reason: "tool_calls" as const };
        }),
        usage: {
          prompt_tokens: prompt.length,
          completion_tokens: completion,
          total_tokens: prompt.length + completion,
        },
      });
    }
    if (session?.busy && session.busy !== "generate") throw new SessionBusyError("generate", session.busy);
    // OpenAI's stream_options.include_usage: every chunk has `usage: null`, and a last one (no choices) the usage.
    const usage = o.includeUsage ? { usage: null } : {};
    return sseResponse(async (w) => {
      const base = { id, object: "chat.completion.chunk", created, model };
      const chunk = (delta: Record<string, string>, finish_reason: string | null = null) =>
        w.send({ ...base, choices: [{ index: 0, delta, finish_reason }], ...usage });
      chunk({ role: "assistant", content: "" });
      const res = await run(() => engine.complete(prompt, { ...o, signal: w.signal }, (t) => chunk({ content: t })));
      chunk({}, res.finishReason);
      if (o.includeUsage) {
        const { promptTokens: p, completionTokens: n } = res;
        w.send({ ...base, choices: [], usage: { prompt_tokens: p, completion_tokens: n, total_tokens: p + n } });
      }
      w.send("[DONE]");
    });
  }, ctx.bodyLimit);

  return r;
}
