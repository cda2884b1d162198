/**
 * The Hono app: thin routers over the engine.
 * @module
 */
import { Hono } from "../deps.ts";
import { device } from "./device.ts";

/** Builds the HTTP app. */
export function createApp(): Hono {
  const app = new Hono();
  app.get("/health", (c) => c.json({ ok: true }));
  app.route("/v1/device", device);
  app.notFound((c) => c.json({ error: `no route ${c.req.method} ${c.req.path}` }, 404));
  app.onError((e, c) => c.json({ error: e.message }, 500));
  return app;
}
