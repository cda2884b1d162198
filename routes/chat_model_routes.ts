/**
 * The routes over the models loaded for chat (routes/chat_models.ts): `POST /chat/models` loads a model (and adapter) for chat, `GET /chat/models` lists
 * them, `DELETE /chat/models/:id` unloads one.
 * @module
 */
import { Hono } from "../deps.ts";
import { API, on, reply } from "./api.ts";
import type { ServerContext } from "./context.ts";

/** `POST /chat/models`, `GET /chat/models`, `DELETE /chat/models/:id`. */
export function chatModelRoutes(ctx: ServerContext): Hono {
  const r = new Hono();
  on(r, API.loadChatModel, async (c, { body }) => {
    return reply(c, API.loadChatModel, await ctx.chatModels.load(body));
  }, ctx.bodyLimit);
  on(r, API.listChatModels, (c) => reply(c, API.listChatModels, { models: ctx.chatModels.list() }));
  on(r, API.unloadChatModel, (c, { params }) => {
    const card = ctx.chatModels.unload(params.id);
    return reply(c, API.unloadChatModel, { deleted: card.id });
  });
  return r;
}
