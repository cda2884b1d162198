/**
 * The browser harness on its own: a small page served here (a counter, a console error, a failed request, a 404),
 * the app's `GET /health` in the browser, screenshots, timeouts that say what was awaited, and the browser gone after.
 */
import assert from "node:assert/strict";
import { startServer } from "../../routes/testing.ts";
import { attr, browserTest, text, waitForAttr, waitForSelector, waitForText, waitUntil, withPage } from "./browser.ts";

const PAGE = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>harness</title></head><body>
<h1 data-i18n="title">Harness</h1>
<div data-chart="loss" data-points="0"></div>
<button data-action="start">Start</button>
<script type="module">
  const chart = document.querySelector("[data-chart]");
  document.querySelector("[data-action=start]").addEventListener("click", () => {
    let n = 0;
    const t = setInterval(() => { chart.setAttribute("data-points", String(++n)); if (n === 5) clearInterval(t); }, 50);
  });
  console.error("deliberate error");
  fetch("/missing").catch(() => {});
  fetch("http://127.0.0.1:9/unreachable").catch(() => {});
</script></body></html>`;

function servePage(): { url: string; close: () => Promise<void> } {
  const http = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/") return new Response(PAGE, { headers: { "content-type": "text/html; charset=utf-8" } });
    return new Response("not here", { status: 404 });
  });
  return { url: `http://127.0.0.1:${http.addr.port}`, close: () => http.shutdown() };
}

function alive(pid: number): boolean {
  try {
    return !Deno.readTextFileSync(`/proc/${pid}/stat`).split(" ")[2].startsWith("Z");
  } catch {
    return false;
  }
}

browserTest("browser harness: waits, problems, screenshot, and the browser closed after", async () => {
  const site = servePage();
  let pid: number | undefined;
  try {
    await withPage(`${site.url}/`, async ({ browser, page, problems, screenshot }) => {
      pid = browser.process()?.pid;
      assert.ok(pid, "chromium's process id");
      assert.match(await browser.version(), /Chrome|Chromium/);
      await waitForSelector(page, "[data-action=start]");
      assert.equal(await text(page, "[data-i18n=title]"), "Harness");
      assert.equal(await attr(page, "[data-chart=loss]", "data-points"), "0");
      await page.click("[data-action=start]");
      const points = await waitForAttr(page, "[data-chart=loss]", "data-points", (v) => Number(v) >= 5);
      assert.equal(points, "5");
      await waitUntil(
        page,
        "the failed requests",
        () => Promise.resolve(problems.failedRequests.length),
        (n) => n >= 1,
        10_000,
      );
      assert.ok(problems.console.some((l) => l.includes("deliberate error")), problems.console.join("\n"));
      assert.ok(problems.httpErrors.some((l) => l.startsWith("404 GET") && l.endsWith("/missing")));
      assert.ok(problems.failedRequests.some((l) => l.includes("/unreachable")), problems.failedRequests.join("\n"));
      await assert.rejects(
        waitForText(page, "h1", (v) => v === "never", "a title that never comes", 300),
        /timed out after 300 ms waiting for a title that never comes; last seen: "Harness"/,
      );
      await assert.rejects(waitForSelector(page, "#absent", 300), /waiting for a visible #absent; last seen: "absent"/);
      const path = await screenshot("harness");
      const png = await Deno.readFile(path);
      assert.deepEqual([...png.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], "a PNG file");
      await Deno.remove(path);
    });
  } finally {
    await site.close();
  }
  assert.equal(alive(pid!), false, `chromium (pid ${pid}) still running after withPage`);
});

browserTest(
  "browser harness: the app's GET /health in the browser, and the browser closed after a failure",
  async () => {
    const t = await startServer();
    try {
      await withPage(`${t.url}/health`, async ({ page, problems }) => {
        const body = JSON.parse((await text(page, "body"))!);
        assert.equal(typeof body.executor.auto, "string");
        assert.deepEqual(problems.pageErrors, []);
      });
      let pid: number | undefined;
      await assert.rejects(
        withPage(`${t.url}/health`, ({ browser }) => {
          pid = browser.process()?.pid;
          throw new Error("fails inside");
        }),
        /fails inside/,
      );
      assert.equal(alive(pid!), false, `chromium (pid ${pid}) still running after a failing withPage`);
      await assert.rejects(withPage(`${t.url}/no/such/page`, () => Promise.resolve()), /answered 404/);
    } finally {
      await t.close();
    }
  },
);
