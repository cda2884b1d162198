/**
 * The app over real HTTP on loopback: health, the OpenAPI document (every route described), unknown routes,
 * the bearer key, the body limit, the device route, and the serve settings.
 */
import assert from "node:assert/strict";
import { API, honoPath } from "./api.ts";
import { buildApp } from "./app.ts";
import { OPENAPI } from "./openapi.ts";
import { serveOptions } from "./options.ts";
import { startServer } from "./testing.ts";

Deno.test("app: /health names versions, adapter and executor; unknown routes get a 404 with a reason", async () => {
  const t = await startServer();
  try {
    const ok = await t.call("GET", "/health");
    assert.equal(ok.status, 200);
    assert.equal(ok.json.ok, true);
    assert.equal(ok.json.versions.deno, Deno.version.deno);
    assert.ok("adapter" in ok.json && ["webgpu", "onnx"].includes(ok.json.executor.auto), ok.text);
    const nf = await t.call("GET", "/nope");
    assert.equal(nf.status, 404);
    assert.match(nf.json.error, /no route GET \/nope/);
    const dev = await t.call("GET", "/v1/device");
    assert.ok(dev.json.executor === "webgpu" || dev.json.executor === "reference");
  } finally {
    await t.close();
  }
});

Deno.test("app: /openapi.json describes every route of the app, and every route of the table has a handler", async () => {
  const t = await startServer();
  try {
    const doc = (await t.call("GET", "/openapi.json")).json;
    assert.equal(doc.openapi, "3.1.0");
    const app = buildApp(t.server.context);
    const routes = app.routes.filter((r) => r.method !== "ALL");
    assert.ok(routes.length >= 19, `${routes.length} routes`);
    for (const r of routes) {
      const path = r.path.replace(/:(\w+)/g, "{$1}").replace(/\/$/, "") || "/";
      assert.ok(doc.paths[path]?.[r.method.toLowerCase()], `${r.method} ${path} is not in /openapi.json`);
    }
    for (const r of Object.values(API)) {
      const registered = routes.some((x) => x.method === r.method.toUpperCase() && x.path === honoPath(r));
      assert.ok(registered, `${r.method.toUpperCase()} ${r.path} is in the route table but has no handler`);
    }
    assert.deepEqual(doc, JSON.parse(JSON.stringify(OPENAPI)));
  } finally {
    await t.close();
  }
});

Deno.test("app: with an API key every route asks for the bearer token", async () => {
  const t = await startServer({ apiKey: "s3cret" });
  try {
    for (const path of ["/health", "/sessions", "/v1/models", "/openapi.json"]) {
      const no = await t.call("GET", path);
      assert.equal(no.status, 401, path);
      assert.match(no.json.error, /API key/);
      assert.match(no.headers.get("www-authenticate") ?? "", /Bearer/);
      const bad = await t.call("GET", path, undefined, { authorization: "Bearer wrong" });
      assert.equal(bad.status, 401);
      const ok = await t.call("GET", path, undefined, { authorization: "Bearer s3cret" });
      assert.equal(ok.status, 200, path);
    }
    const post = await t.call("POST", "/sessions", {});
    assert.equal(post.status, 401);
  } finally {
    await t.close();
  }
});

Deno.test("app: a body over the limit gets a 413, declared or streamed", async () => {
  const t = await startServer({ bodyLimit: 1000 });
  try {
    const big = JSON.stringify({ model_name_or_path: "x".repeat(2000) });
    const declared = await t.call("POST", "/sessions", big);
    assert.equal(declared.status, 413);
    assert.match(declared.json.error, /over the limit of 1000 bytes/);
    // Chunked (no content-length): the reader stops at the limit.
    const body = new ReadableStream({
      start(c) {
        c.enqueue(new TextEncoder().encode(big));
        c.close();
      },
    });
    const res = await fetch(`${t.url}/sessions`, {
      method: "POST",
      body,
      headers: { "content-type": "application/json" },
    });
    assert.equal(res.status, 413);
    assert.match((await res.json()).error, /over the limit/);
    const notJson = await t.call("POST", "/sessions", "{nope");
    assert.equal(notJson.status, 400);
    assert.match(notJson.json.error, /not valid JSON/);
  } finally {
    await t.close();
  }
});

Deno.test("serve settings: flags over environment over defaults; bad values are errors naming them", () => {
  const none = () => undefined;
  const d = serveOptions([], none);
  assert.deepEqual(d.listen, { hostname: "127.0.0.1", port: 8000 });
  assert.equal(d.options.roots, undefined);
  assert.equal(d.options.apiKey, undefined);
  const env: Record<string, string> = {
    HOST: "0.0.0.0",
    PORT: "9000",
    WHETSTONE_ROOTS: "a, b",
    WHETSTONE_API_KEY: "k",
    WHETSTONE_MODEL: "fixtures/tiny/model",
  };
  const e = serveOptions(["--port", "9100", "--template=qwen"], (n) => env[n]);
  assert.deepEqual(e.listen, { hostname: "0.0.0.0", port: 9100 });
  assert.deepEqual(e.options.roots, ["a", "b"]);
  assert.equal(e.options.apiKey, "k");
  assert.deepEqual(e.options.chatModel, {
    model: "fixtures/tiny/model",
    adapter: undefined,
    template: "qwen",
    name: undefined,
  });
  assert.throws(() => serveOptions(["--port", "http"], none), /--port \/ PORT: expected a port number/);
  assert.throws(() => serveOptions(["--prot", "1"], none), /unknown serve flag --prot/);
  assert.throws(() => serveOptions(["--body-limit", "-3"], none), /--body-limit/);
});
