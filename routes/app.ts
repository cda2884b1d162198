/**
 * The Hono app: thin routers over the engine, behind an optional bearer key and a body size limit, answering
 * errors as JSON (`{error, field?}`; OpenAI's `{error: {message, type, param}}` on `/v1/chat` and `/v1/models`).
 * @module
 */
import { Hono } from "../deps.ts";
import { boardAssets } from "./board.ts";
import { ServerContext } from "./context.ts";
import { chatModelRoutes } from "./chat_model_routes.ts";
import { datasetRoutes } from "./datasets.ts";
import { device } from "./device.ts";
import { healthRoutes } from "./health.ts";
import { errorBody, RETRY_AFTER_S } from "./http.ts";
import { lfRoutes } from "./lf_routes.ts";
import { modelExportRoutes } from "./model_export.ts";
import { modelsRoutes } from "./models.ts";
import { openAiRoutes } from "./openai.ts";
import { openApiRoutes } from "./openapi.ts";
import type { ServerOptions } from "./options.ts";
import { predictRoutes } from "./predict.ts";
import { sessionRoutes } from "./sessions.ts";
import { trainingRoutes } from "./training.ts";

/** A running app and what it holds. */
export interface Server {
  app: Hono;
  fetch: (req: Request) => Response | Promise<Response>;
  context: ServerContext;
  /** Closes the sessions and the session store. */
  close(): Promise<void>;
}

/** Constant-time string comparison (the API key check). */
function sameText(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a), y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

const OPENAI = /^\/v1\/(chat|models)/;

/** Builds the app over a server context (roots, sessions, served model). */
export function buildApp(ctx: ServerContext): Hono {
  const app = new Hono();
  const key = ctx.options.apiKey;
  // The Board page and its files answer without the key (the page asks for it and sends it on API calls).
  app.use("*", boardAssets);
  app.use("*", async (c, next) => {
    if (key !== undefined) {
      const auth = c.req.header("authorization") ?? "";
      const m = /^Bearer\s+(.+)$/i.exec(auth);
      if (!m || !sameText(m[1].trim(), key)) {
        c.header("WWW-Authenticate", 'Bearer realm="whetstone"');
        return c.json({ error: "missing or wrong API key: send Authorization: Bearer <WHETSTONE_API_KEY>" }, 401);
      }
    }
    const length = Number(c.req.header("content-length") ?? 0);
    if (length > ctx.bodyLimit) {
      return c.json({ error: `request body of ${length} bytes is over the limit of ${ctx.bodyLimit} bytes` }, 413);
    }
    await next();
  });
  for (
    const r of [
      healthRoutes(ctx),
      openApiRoutes(),
      modelsRoutes(ctx),
      datasetRoutes(ctx),
      sessionRoutes(ctx),
      lfRoutes(ctx), // before the training routes: answers events and stop for llamafactory runs only
      trainingRoutes(ctx),
      predictRoutes(ctx),
      openAiRoutes(ctx),
      chatModelRoutes(ctx),
      modelExportRoutes(ctx),
    ]
  ) app.route("/", r);
  app.route("/", device);
  app.notFound((c) => c.json({ error: `no route ${c.req.method} ${c.req.path}` }, 404));
  app.onError((e, c) => {
    const { status, body } = errorBody(e);
    if (status === 503) c.header("Retry-After", String(RETRY_AFTER_S));
    if (status >= 500 && status !== 503) console.error(`${c.req.method} ${c.req.path}: ${(e as Error).stack ?? e}`);
    if (OPENAI.test(c.req.path)) {
      const type = status >= 500 ? "server_error" : "invalid_request_error";
      return c.json({ error: { message: body.error, type, param: body.field ?? null, code: null } }, status as 400);
    }
    return c.json(body, status as 400);
  });
  return app;
}

/** Creates the server state and its app. */
export async function createServer(options: ServerOptions = {}): Promise<Server> {
  const context = await ServerContext.create(options);
  const app = buildApp(context);
  return { app, fetch: app.fetch, context, close: () => context.close() };
}
