/**
 * The notebooks' helpers without a Jupyter kernel: the displayable tables, token spans and loss plots, and
 * `connect()` starting the app in-process, reaching it by URL, and reporting errors.
 */
import assert from "node:assert/strict";
import {
  type AnswerOf,
  cellText,
  connect,
  DISPLAY,
  jupyter,
  lossPlot,
  md,
  show,
  sideBySide,
  table,
  tokens,
} from "./whetstone.ts";

Deno.test("notebook helpers: tables escape HTML, align plain text and format numbers", () => {
  const b = table([{ name: "<b>&", n: 1, x: 0.123456789 }, { name: "two\nlines", n: 22, x: null }], {
    caption: "cap",
  })[DISPLAY]();
  assert.match(b["text/html"], /<caption>cap<\/caption>/);
  assert.match(b["text/html"], /&lt;b&gt;&amp;/);
  assert.ok(!b["text/html"].includes("<b>&"));
  assert.match(b["text/html"], /<td style="text-align:right[^>]*>22<\/td>/); // all-number column right-aligned
  assert.equal(
    b["text/plain"],
    ["cap", "name       n   x", "---------  --  -------", "<b>&       1   0.12346", "two⏎lines  22"].join("\n"),
  );
  assert.deepEqual([cellText(3), cellText(1 / 3), cellText({ a: 1 }), cellText(undefined)], [
    "3",
    "0.33333",
    '{"a":1}',
    "",
  ]);
  const cols = table([{ a: 1, b: 2 }], { columns: ["b"] })[DISPLAY]();
  assert.equal(cols["text/plain"], "b\n-\n2");
});

Deno.test("notebook helpers: token spans, loss plots and markdown", () => {
  const t = tokens([
    { text: "<|im_start|>user\nhi", ids: [1, 2, 3], trained: false },
    { text: "hello", ids: [4], trained: true },
  ])[DISPLAY]();
  assert.match(t["text/plain"], /4 tokens, 1 trained, 3 masked$/);
  assert.match(t["text/html"], /line-through">&lt;\|im_start\|&gt;user⏎\nhi<\/span>/);
  assert.match(t["text/html"], /title="trained: 1 tokens" style="background:#c8f0c8">hello<\/span>/);

  assert.deepEqual(lossPlot([])[DISPLAY](), { "text/plain": "training loss: no points yet" });
  const p = lossPlot([{ step: 1, value: 3 }, { step: 2, value: NaN }, { step: 3, value: 2 }], "loss", "t")[DISPLAY]();
  assert.match(p["image/svg+xml"], /^<\?xml[\s\S]*<polyline class="smoothed"[\s\S]*<\/svg>\n$/);
  assert.equal(p["text/plain"], "t: 2 points, last loss 2 at step 3");
  assert.deepEqual(md("**x**")[DISPLAY](), { "text/markdown": "**x**", "text/plain": "**x**" });
});

Deno.test("notebook helpers: plots side by side; outside a kernel show prints the plain text", async () => {
  const a = lossPlot([{ step: 1, value: 1 }, { step: 2, value: 0.5 }], "loss", "a<1>");
  const b = sideBySide([a, table([{ x: 1 }]), md("m")], { minWidth: 200 })[DISPLAY]();
  const html = b["text/html"];
  assert.match(
    html,
    /^<div style="display:flex;flex-wrap:wrap[^"]*">(<div style="flex:1 1 0;min-width:200px">.*?<\/div>){3}<\/div>$/s,
  );
  const src = html.match(/<img alt="a&lt;1&gt;: 2 points, last loss 0\.5 at step 2" [^>]*src="([^"]*)"\/>/)?.[1] ?? "";
  assert.ok(src.startsWith("data:image/svg+xml;charset=utf-8,"), html.slice(0, 300));
  assert.equal(decodeURIComponent(src.slice(src.indexOf(",") + 1)), a[DISPLAY]()["image/svg+xml"]);
  assert.match(html, /<table>.*<td[^>]*>1<\/td>.*<\/table><\/div><div[^>]*><pre>m<\/pre><\/div><\/div>$/s);
  assert.equal(b["text/plain"], "a<1>: 2 points, last loss 0.5 at step 2\nx\n-\n1\nm");

  assert.equal(jupyter(), undefined); // `deno test`, not `deno jupyter`: Deno.jupyter throws, jupyter() does not
  const printed: unknown[] = [];
  const log = console.log;
  console.log = (...args: unknown[]) => printed.push(...args);
  try {
    await show(table([{ x: 1 }]));
    await show("text");
  } finally {
    console.log = log;
  }
  assert.deepEqual(printed, ["x\n-\n1", "text"]);
});

Deno.test("notebook helpers: connect starts the app in-process or reaches it by URL; errors name the call", async () => {
  const ws = await connect();
  try {
    assert.ok(ws.inProcess);
    assert.match(ws.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal((await ws.get("/health")).ok, true);
    await assert.rejects(ws.get("/sessions/nope"), /^Error: GET \/sessions\/nope: 404 /);
    await assert.rejects(ws.post("/sessions", { dataset: 1 }), /^Error: POST \/sessions: 400 /);
    assert.deepEqual(await ws.forget("out/notebooks/none"), []);
    const remote = await connect({ url: ws.url + "/" });
    assert.equal(remote.inProcess, false);
    assert.equal(remote.url, ws.url);
    assert.equal((await remote.get("/health")).ok, true);
    await remote.close(); // a no-op for a remote server
    assert.equal((await ws.get("/health")).ok, true);
  } finally {
    await ws.close();
  }
  await assert.rejects(connect({ url: ws.url }), /no answer .*is the server running\?/);
});

Deno.test("notebook client: answers and bodies are typed from the route table; other paths do not type-check", async () => {
  const ws = await connect();
  try {
    const health = await ws.get("/health");
    const auto: "webgpu" | "onnx" = health.executor.auto;
    assert.ok(["webgpu", "onnx"].includes(auto));
    const { datasets } = await ws.get("/datasets?dataset_dir=fixtures/demo");
    const names = datasets.map((d) => d.name);
    assert.ok(names.includes("whetstone_demo"), names.join());
    const id: string = "nope";
    // @ts-expect-error -- steps is a number: the body's type is the step route's
    await assert.rejects(ws.post(`/sessions/${id}/step`, { steps: "2" }), /400 steps: expected an integer/);
    // @ts-expect-error -- no such route
    await assert.rejects(ws.get("/sesions"), /404 no route GET \/sesions/);
    const steps = (r: AnswerOf<"post", `/sessions/${string}/step`>) => r.steps.map((s) => [s.current_steps, s.loss]);
    assert.equal(typeof steps, "function");
    const rows = (r: AnswerOf<"post", "/datasets/preview">) => r.rows.map((row) => row.views[0].spans[0].trained);
    assert.equal(typeof rows, "function");
  } finally {
    await ws.close();
  }
});
