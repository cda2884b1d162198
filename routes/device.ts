/**
 * `GET /v1/device`: the compute device Whetstone would use, and its limits.
 * @module
 */
import { Hono } from "../deps.ts";
import { openGpu } from "../engine/mod.ts";

/** Device routes. */
export const device = new Hono();

device.get("/", async (c) => {
  try {
    const g = await openGpu();
    return c.json({
      executor: "webgpu",
      adapter: g.adapterName,
      fallback: g.isFallback,
      shaderF16: g.f16,
      limits: g.limits,
    });
  } catch (e) {
    return c.json({ executor: "reference", adapter: null, reason: (e as Error).message });
  }
});
