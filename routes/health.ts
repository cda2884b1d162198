/**
 * `GET /health`: that the server answers, the runtime's versions, the compute adapter and the executor `auto`
 * picks, and how many sessions are loaded.
 * @module
 */
import { Hono } from "../deps.ts";
import { autoExecutorKind, openGpu } from "../engine/mod.ts";
import { API, on, type Reply, reply } from "./api.ts";
import type { ServerContext } from "./context.ts";
import { runners } from "./lf_routes.ts";

type DeviceInfo = Pick<Reply<typeof API.health>, "adapter" | "adapter_error" | "executor">;
let device: Promise<DeviceInfo> | undefined;

/** The adapter and executor, looked up once per process. */
function deviceInfo(): Promise<DeviceInfo> {
  return device ??= (async () => {
    const auto = await autoExecutorKind();
    try {
      const g = await openGpu();
      return {
        adapter: { name: g.adapterName, fallback: g.isFallback, shader_f16: g.f16 },
        executor: { auto: auto.kind, reason: auto.reason },
      };
    } catch (e) {
      return { adapter: null, adapter_error: (e as Error).message, executor: { auto: auto.kind, reason: auto.reason } };
    }
  })();
}

/** The health route. */
export function healthRoutes(ctx: ServerContext): Hono {
  const r = new Hono();
  on(r, API.health, async (c) =>
    reply(c, API.health, {
      ok: true,
      versions: { deno: Deno.version.deno, v8: Deno.version.v8, typescript: Deno.version.typescript },
      ...(await deviceInfo()),
      sessions: { loaded: ctx.sessions.loaded().length },
      roots: ctx.roots.dirs,
      runners: await runners(ctx),
    }));
  return r;
}
