/**
 * `GET /v1/device`: the compute device Whetstone would use, and its limits.
 * @module
 */
import { Hono } from "../deps.ts";
import { openGpu } from "../engine/mod.ts";
import { API, on, reply } from "./api.ts";

/** Device routes. */
export const device = new Hono();

on(device, API.device, async (c) => {
  try {
    const g = await openGpu();
    return reply(c, API.device, {
      executor: "webgpu",
      adapter: g.adapterName,
      fallback: g.isFallback,
      shaderF16: g.f16,
      limits: g.limits,
    });
  } catch (e) {
    return reply(c, API.device, { executor: "reference", adapter: null, reason: (e as Error).message });
  }
});
