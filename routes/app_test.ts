import assert from "node:assert/strict";
import { createApp } from "./app.ts";

Deno.test("app: /health answers and unknown routes get a 404 with a reason", async () => {
  const app = createApp();
  const ok = await app.request("/health");
  assert.equal(ok.status, 200);
  assert.deepEqual(await ok.json(), { ok: true });
  const nf = await app.request("/nope");
  assert.equal(nf.status, 404);
  assert.match((await nf.json()).error, /no route GET \/nope/);
});

Deno.test("app: /v1/device names the executor it would use", async () => {
  const res = await createApp().request("/v1/device");
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.ok(body.executor === "webgpu" || body.executor === "reference");
  if (body.executor === "webgpu") assert.ok(body.limits.maxStorageBufferBindingSize > 0);
});
