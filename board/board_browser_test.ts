/**
 * The Board end to end in headless Chromium, against the real app (API key set): the key prompt, the tiny model and
 * the demo data, the data preview and the planned YAML, a 30-step LoRA run watched on the loss chart, Stop (a
 * checkpoint on disk), Resume to the end, a streamed chat answer, a merged export on disk, the runs table, the
 * language switch (ru, zh; kept after a reload), and a screenshot of every tab under out/board/.
 */
import assert from "node:assert/strict";
import type { Page } from "../deps.ts";
import {
  answerKeyDialogs,
  clickAction,
  enterKey,
  fillTinyRun,
  lossPoints,
  openTab,
  progress,
  setField,
  status,
} from "./testing/board_flow.ts";
import {
  browserTest,
  describeProblems,
  type PageGlobal,
  text,
  waitForSelector,
  waitUntil,
  withPage,
} from "./testing/browser.ts";
import { serveApp } from "./testing/serve.ts";

const KEY = "board-test-key";
const TABS = ["train", "evaluate", "chat", "export", "runs"];
const MAX_STEPS = 30;
/** Past where Stop comes, so that the checkpoint at the stopped step is Stop's. */
const SAVE_STEPS = 25;

async function checkpoints(dir: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) if (e.isDirectory && /^checkpoint-\d+$/.test(e.name)) out.push(e.name);
  } catch { /* not there yet */ }
  return out.sort();
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** The text of the `[data-i18n]` label of the Train tab. */
function trainTabLabel(page: Page): Promise<string | null> {
  return page.evaluate(() => {
    const w = globalThis as unknown as PageGlobal;
    const el = w.document.querySelector(
      '[role="tab"][data-tab="train"][data-i18n], [role="tab"][data-tab="train"] [data-i18n]',
    );
    return el ? el.innerText.trim() : null;
  });
}

/** The visible form controls with no accessible label (`tag[name]` or `tag#id`). */
function unlabelledControls(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const w = globalThis as unknown as PageGlobal;
    // deno-lint-ignore no-explicit-any
    const all = Array.from(w.document.querySelectorAll("input, select, textarea, button")) as any[];
    return all
      .filter((e) => e.type !== "hidden" && e.getBoundingClientRect().width > 0)
      .filter((e) =>
        !(e.labels?.length || e.getAttribute("aria-label") || e.getAttribute("aria-labelledby") ||
          (e.tagName === "BUTTON" && e.textContent.trim()))
      )
      .map((e) => `${e.tagName.toLowerCase()}${e.name ? `[name=${e.name}]` : e.id ? `#${e.id}` : ""}`);
  });
}

browserTest("board: key, preview, train, stop, resume, chat, export, runs, languages, screenshots", async () => {
  const t0 = Date.now();
  const lap = (what: string) => console.log(`  ${((Date.now() - t0) / 1000).toFixed(1)} s  ${what}`);
  const t = await serveApp({ apiKey: KEY });
  const outputDir = `${t.tmp}/out/board-lora`;
  const exportDir = `${t.tmp}/out/board-merged`;
  const chatRequests: { body: string; contentType: string; finished: boolean }[] = [];
  try {
    await withPage(`${t.url}/`, async ({ page, problems, screenshot }) => {
      // The key: asked once, then sent on every call (no 401 after it).
      await enterKey(page, KEY);
      const before = { http: problems.httpErrors.length, console: problems.console.length };
      lap("key entered");

      // Train: model, data, preview, a 30-step LoRA run; the YAML preview shows it.
      await fillTinyRun(page, { outputDir, maxSteps: MAX_STEPS, saveSteps: SAVE_STEPS });
      lap("form filled, preview shown");
      await clickAction(page, "plan");
      await waitUntil(page, "the planned memory ([data-memory])", () => text(page, "[data-memory]"), (v) => !!v);
      const yaml = await waitUntil(
        page,
        `the YAML preview ([data-yaml]) with max_steps: ${MAX_STEPS}`,
        () => text(page, "[data-yaml]"),
        (v) => new RegExp(`^max_steps: ${MAX_STEPS}$`, "m").test(v ?? ""),
      );
      assert.match(yaml!, /^model_name_or_path: .*fixtures\/tiny\/model$/m);
      assert.match(yaml!, /^finetuning_type: lora$/m);
      assert.match(yaml!, /^template: qwen$/m);
      assert.match(yaml!, /whetstone_demo/);
      lap("planned");

      // Start, see the loss chart grow while it runs, Stop: a checkpoint on disk, the run short of its end.
      await clickAction(page, "start");
      const first = await waitUntil(page, "a loss point on the chart", () => lossPoints(page), (n) => n >= 1, 60_000);
      await waitUntil(page, `more loss points than ${first}`, () => lossPoints(page), (n) => n > first, 60_000);
      assert.match(await status(page), /running/);
      await clickAction(page, "stop");
      // After Stop the session is idle and loaded ("ready"; "stopped" is a recorded session not loaded).
      await waitUntil(
        page,
        "the status to leave running (ready)",
        () => status(page),
        (s) => /^(ready|stopped)$/.test(s),
        60_000,
      );
      const stoppedAt = await progress(page);
      assert.equal(stoppedAt.total, MAX_STEPS);
      assert.ok(stoppedAt.step < MAX_STEPS, `Stop came after the end (step ${stoppedAt.step} of ${MAX_STEPS})`);
      const saved = await waitUntil(
        page,
        `checkpoint-${stoppedAt.step} in ${outputDir}`,
        () => checkpoints(outputDir),
        (c) => c.includes(`checkpoint-${stoppedAt.step}`),
        30_000,
      );
      lap(`stopped at step ${stoppedAt.step}: ${saved.join(", ")}`);
      await screenshot("train-stopped");

      // Resume to the end: every step's loss plotted, the adapter written.
      await clickAction(page, "resume");
      await waitUntil(
        page,
        `step ${MAX_STEPS} of ${MAX_STEPS}`,
        () => progress(page),
        (p) => p.step === MAX_STEPS && p.total === MAX_STEPS,
        180_000,
      );
      await waitUntil(page, "the status to say finished", () => status(page), (s) => /finished/.test(s), 60_000);
      assert.ok(
        (await lossPoints(page)) >= MAX_STEPS,
        `${await lossPoints(page)} loss points after ${MAX_STEPS} steps`,
      );
      assert.ok(await exists(`${outputDir}/adapter_config.json`), `${outputDir}/adapter_config.json after the run`);
      assert.ok((await text(page, "[data-log]"))?.length, "the log tail ([data-log]) is empty");
      lap("resumed to the end");
      await screenshot("train");

      // Evaluate & Predict: BLEU-4 and ROUGE on the demo data (the training datasets, preselected), the predictions.
      await openTab(page, "evaluate");
      await setField(page, "max_samples", 2, { scope: '[data-panel="evaluate"]' });
      await setField(page, "max_new_tokens", 8, { scope: '[data-panel="evaluate"]' });
      await clickAction(page, "predict", '[data-panel="evaluate"]');
      const bleu = await waitUntil(
        page,
        "the predict metrics ([data-metric=predict_bleu-4])",
        () => text(page, '[data-metrics] tr[data-metric="predict_bleu-4"]'),
        (v) => /\d/.test(v ?? ""),
        120_000,
      );
      assert.ok((await text(page, '[data-metrics] tr[data-metric="predict_rouge-l"]'))?.length, "no ROUGE-L row");
      assert.ok((await text(page, "[data-predictions] tbody"))?.trim().length, "no predictions in the table");
      lap(`predicted: ${bleu!.replace(/\s+/g, " ")}`);
      await screenshot("evaluate");

      // Chat with the session's model (the trained adapter): a streamed answer.
      await openTab(page, "chat");
      page.on("request", (r) => {
        if (r.url().endsWith("/v1/chat/completions")) {
          chatRequests.push({ body: r.postData() ?? "", contentType: "", finished: false });
        }
      });
      page.on("response", (r) => {
        const last = chatRequests.at(-1);
        if (last && r.url().endsWith("/v1/chat/completions")) last.contentType = r.headers()["content-type"] ?? "";
      });
      page.on("requestfinished", (r) => {
        const last = chatRequests.at(-1);
        if (last && r.url().endsWith("/v1/chat/completions")) last.finished = true;
      });
      await setField(page, "max_new_tokens", 24, { scope: '[data-panel="chat"]', optional: true });
      const input = '[data-panel="chat"] textarea[name="message"]';
      await waitForSelector(page, input);
      await page.type(input, "Hello!");
      await page.evaluate(() => {
        // Records the last answer's length on every change: a streamed answer grows in steps.
        const w = globalThis as unknown as PageGlobal & {
          lens: number[];
          MutationObserver: new (f: () => void) => { observe(n: unknown, o: unknown): void };
        };
        w.lens = [];
        const log = w.document.querySelector("[data-chat-log]");
        new w.MutationObserver(() => {
          const all = w.document.querySelectorAll('[data-chat-log] [data-role="assistant"]');
          const n = all.length ? all[all.length - 1].textContent?.length ?? 0 : 0;
          if (w.lens.at(-1) !== n) w.lens.push(n);
        }).observe(log, { subtree: true, childList: true, characterData: true });
      });
      await clickAction(page, "chat-send", '[data-panel="chat"]');
      await waitUntil(
        page,
        "the chat request to finish",
        () => Promise.resolve(chatRequests.at(-1)),
        (r) => r?.finished === true,
        120_000,
      );
      const answer = await waitUntil(
        page,
        "a non-empty answer ([data-chat-log] [data-role=assistant])",
        () =>
          page.evaluate(() => {
            const all = (globalThis as unknown as PageGlobal).document.querySelectorAll(
              '[data-chat-log] [data-role="assistant"]',
            );
            return all.length ? (all[all.length - 1].textContent ?? "").trim() : null;
          }),
        (v) => !!v,
        10_000,
      );
      const lens = await page.evaluate(() => (globalThis as unknown as { lens: number[] }).lens);
      const sent = JSON.parse(chatRequests.at(-1)!.body);
      assert.equal(sent.stream, true, "the chat request asks for a stream");
      assert.match(sent.messages.at(-1).content, /Hello!/);
      assert.match(chatRequests.at(-1)!.contentType, /text\/event-stream/);
      assert.ok(lens.filter((n) => n > 0).length >= 2, `the answer grew while streaming (lengths ${lens.join(" ")})`);
      lap(`chat answered (lengths while streaming: ${lens.join(" ")}): ${JSON.stringify(answer!.slice(0, 60))}`);
      await screenshot("chat");

      // Export the merged model: the files listed, config.json on disk.
      await openTab(page, "export");
      await setField(page, "export_dir", exportDir, { scope: '[data-panel="export"]' });
      await clickAction(page, "export", '[data-panel="export"]');
      const files = await waitUntil(
        page,
        "the exported files ([data-export-files])",
        () => text(page, "[data-export-files]"),
        (v) => /config\.json/.test(v ?? ""),
        120_000,
      );
      assert.match(files!, /safetensors/);
      assert.ok(await exists(`${exportDir}/config.json`), `${exportDir}/config.json after the export`);
      lap("exported");
      await screenshot("export");

      // Runs: the session is listed.
      await openTab(page, "runs");
      await clickAction(page, "refresh-runs", '[data-panel="runs"]');
      const sessions = await t.json("GET", "/sessions");
      const ids: string[] = sessions.sessions.map((r: { id: string }) => r.id);
      assert.equal(ids.length, 1, JSON.stringify(sessions));
      await waitForSelector(page, `[data-runs] [data-run-id="${ids[0]}"]`);
      await screenshot("runs");
      // Every tab: a screenshot, and every control shown has a label (<label for>, aria-label or aria-labelledby).
      const unlabelled: string[] = [];
      for (const tab of TABS) {
        await openTab(page, tab);
        await screenshot(`tab-${tab}`, true);
        unlabelled.push(...(await unlabelledControls(page)).map((c) => `${tab}: ${c}`));
      }
      assert.deepEqual(unlabelled, [], "controls without a label");
      // The tabs work from the keyboard.
      await page.focus('[role="tab"][data-tab="evaluate"]');
      await page.keyboard.press("Enter");
      await waitForSelector(page, '[role="tabpanel"][data-panel="evaluate"]');

      // Languages: labels change, <html lang> follows, the choice survives a reload.
      await openTab(page, "train");
      const en = await trainTabLabel(page);
      assert.ok(en, "the Train tab has a [data-i18n] label");
      const labels: Record<string, string | null> = { en };
      for (const [lang, script] of [["ru", /[\u0400-\u04ff]/], ["zh", /[\u4e00-\u9fff]/]] as const) {
        await setField(page, "lang", lang);
        await waitUntil(
          page,
          `<html lang="${lang}">`,
          () =>
            page.evaluate(() => (globalThis as unknown as PageGlobal).document.documentElement.getAttribute("lang")),
          (v) => v === lang,
        );
        labels[lang] = await waitUntil(
          page,
          `the Train tab's label in ${lang}`,
          () => trainTabLabel(page),
          (v) => script.test(v ?? ""),
        );
        await screenshot(`train-${lang}`);
      }
      assert.equal(new Set(Object.values(labels)).size, 3, JSON.stringify(labels));
      lap(`languages: ${JSON.stringify(labels)}`);

      // Nothing went wrong in the page after the key: no exception, no request without an answer, no 401 (the key
      // is sent on every call), no server error, no console error but Chromium's own line for a 4xx answer (a
      // path typed that is not there is the page's normal business: it shows the error).
      const http = problems.httpErrors.slice(before.http).filter((l) => !l.endsWith("/favicon.ico"));
      const after = {
        ...problems,
        httpErrors: http.filter((l) => /^(401|5\d\d) /.test(l)),
        console: problems.console.slice(before.console).filter((l) =>
          !/^Failed to load resource: the server responded with a status of 4\d\d/.test(l)
        ),
      };
      if (http.length) console.log(`  4xx answers the page showed:\n    ${http.join("\n    ")}`);
      assert.deepEqual(after.pageErrors, [], describeProblems(after));
      assert.deepEqual(after.failedRequests, [], describeProblems(after));
      assert.deepEqual(after.httpErrors, [], describeProblems(after));
      assert.deepEqual(after.console, [], describeProblems(after));

      // The language choice survives a reload.
      await page.reload({ waitUntil: "load" });
      await enterKey(page, KEY);
      assert.equal(
        await page.evaluate(() => (globalThis as unknown as PageGlobal).document.documentElement.getAttribute("lang")),
        "zh",
        "the language after a reload",
      );
      await setField(page, "lang", "en");
      assert.deepEqual(problems.pageErrors, [], describeProblems(problems));
    }, { setup: (page) => answerKeyDialogs(page, KEY) });
  } catch (e) {
    console.log(`server output:\n${t.output()}`);
    throw e;
  } finally {
    await t.close();
  }
  lap("done");
});
