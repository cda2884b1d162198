/**
 * Steps on the Board page through its DOM contract (form controls named by the LLaMA-Factory YAML key they set;
 * `data-tab`, `data-panel`, `data-action`, `data-status`, `data-chart`, `data-progress`, ...): enter the API key,
 * open a tab, set a field, press a button, fill the Train form for the tiny model and the demo data. Shared by the
 * end-to-end test and the README screenshot script.
 * @module
 */
import type { Page } from "../../deps.ts";
import { type PageGlobal, text, waitForSelector, waitUntil } from "./browser.ts";

/** What a field is set to: text, a number, a checkbox state, or the options of a multi-select. */
export type FieldValue = string | number | boolean | string[];

/** Where the key is asked for in the page (a `prompt()` dialog is answered by `answerKeyDialogs`). */
export const KEY_INPUT = 'input[name="api_key"], input[type="password"]';

/** Answers a `prompt()` asking for the API key (call from `withPage`'s `setup`). */
export function answerKeyDialogs(page: Page, key: string): void {
  page.on("dialog", (d) => void (d.type() === "prompt" ? d.accept(key) : d.accept()).catch(() => {}));
}

/** Whether a key field or the Train tab shows: "key", "tabs" or "none". */
function keyState(page: Page): Promise<string> {
  return page.evaluate((keySel: string) => {
    const w = globalThis as unknown as PageGlobal;
    const shown = (sel: string) =>
      Array.from(w.document.querySelectorAll(sel)).some((e) => e.getBoundingClientRect().width > 0);
    return shown(keySel) ? "key" : shown('[role="tab"][data-tab="train"]') ? "tabs" : "none";
  }, KEY_INPUT);
}

/**
 * Gives the page its API key when it asks (a key field: typed, then Enter), until the tabs show, the network is
 * quiet and no key field shows (the page may ask only once its first API call is refused).
 */
export async function enterKey(page: Page, key: string, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const left = Math.max(1000, end - Date.now());
    const state = await waitUntil(
      page,
      `the key field (${KEY_INPUT}) or the Train tab`,
      () => keyState(page),
      (v) => v !== "none",
      left,
    );
    if (state === "key") {
      // The shown field (a refused call may replace the dialog while typing: then the key is typed again).
      const inputs = await page.$$(KEY_INPUT);
      let input = inputs[0];
      for (const el of inputs) if ((await el.boundingBox())?.width) input = el;
      await input.click({ count: 3 });
      await input.type(key);
      await page.keyboard.press("Enter");
      const gone = await waitUntil(page, "the key field to go away", () => keyState(page), (v) => v !== "key", 5_000)
        .then(() => true, () => false);
      if (!gone && Date.now() > end) {
        throw new Error(`the key field still shows ${timeoutMs} ms after the key was first typed`);
      }
      continue;
    }
    await page.waitForNetworkIdle({ idleTime: 500, timeout: Math.min(10_000, left) }).catch(() => {});
    if (await keyState(page) === "tabs") return;
    if (Date.now() > end) throw new Error(`the Board did not settle after the API key within ${timeoutMs} ms`);
  }
}

/** Opens a tab (`[role=tab][data-tab]`) and waits for its panel (`[role=tabpanel][data-panel]`) to show. */
export async function openTab(page: Page, tab: string): Promise<void> {
  await page.click(`[role="tab"][data-tab="${tab}"]`);
  await waitForSelector(page, `[role="tabpanel"][data-panel="${tab}"]`);
}

/**
 * Sets the first visible control `[name=name]` (inside `scope` when given) and fires `input` and `change`: a select
 * picks the option whose value is the value (or one path ends with the other; waiting for it to be listed), a multi-select
 * the options given, a checkbox its state, anything else its value. Throws naming the field when it cannot.
 */
export async function setField(
  page: Page,
  name: string,
  value: FieldValue,
  opts: { scope?: string; timeoutMs?: number; optional?: boolean } = {},
): Promise<boolean> {
  const selector = `${opts.scope ? opts.scope + " " : ""}[name="${name}"]`;
  const outcome = await waitUntil(
    page,
    `the field ${selector} to take ${JSON.stringify(value)}`,
    () =>
      page.evaluate(
        (sel: string, v: FieldValue) => {
          const w = globalThis as unknown as PageGlobal;
          // deno-lint-ignore no-explicit-any
          const all = Array.from(w.document.querySelectorAll(sel)) as any[];
          const el = all.find((e) => e.getBoundingClientRect().width > 0) ?? all[0];
          if (!el) return "absent";
          const wanted = (Array.isArray(v) ? v : [v]).map(String);
          if (el.tagName === "SELECT") {
            // deno-lint-ignore no-explicit-any
            const options = Array.from(el.options) as any[];
            const match = (o: { value: string; textContent: string }, x: string) =>
              o.value === x || o.value.endsWith(`/${x}`) || o.textContent.trim() === x;
            const chosen = wanted.map((x) => options.find((o) => match(o, x)));
            if (chosen.some((o) => !o)) return `options ${options.map((o) => o.value).join(", ")}`;
            if (el.multiple) { for (const o of options) o.selected = chosen.includes(o); }
            else el.value = chosen[0].value;
          } else if (el.type === "checkbox") el.checked = Boolean(v);
          else el.value = wanted.join(",");
          el.dispatchEvent(new Event("input", { bubbles: true }));
          el.dispatchEvent(new Event("change", { bubbles: true }));
          return "set";
        },
        selector,
        value,
      ),
    (r) => r === "set" || (r === "absent" && opts.optional === true),
    opts.timeoutMs ?? 15_000,
  );
  return outcome === "set";
}

/** Clicks `[data-action=action]` once it shows and is enabled. */
export async function clickAction(page: Page, action: string, scope = "", timeoutMs = 30_000): Promise<void> {
  const sel = `${scope ? scope + " " : ""}[data-action="${action}"]`;
  await waitUntil(
    page,
    `an enabled ${sel}`,
    () =>
      page.evaluate((s: string) => {
        const w = globalThis as unknown as PageGlobal;
        // deno-lint-ignore no-explicit-any
        const el = Array.from(w.document.querySelectorAll(s)).find((e) => e.getBoundingClientRect().width > 0) as any;
        return el ? (el.disabled ? "disabled" : "enabled") : "absent or hidden";
      }, sel),
    (v) => v === "enabled",
    timeoutMs,
  );
  await page.evaluate((s: string) => {
    const w = globalThis as unknown as PageGlobal;
    // deno-lint-ignore no-explicit-any
    (Array.from(w.document.querySelectorAll(s)).find((e) => e.getBoundingClientRect().width > 0) as any).click();
  }, sel);
}

/** The number of train-loss points plotted (`[data-chart="loss"]`'s `data-points`). */
export async function lossPoints(page: Page): Promise<number> {
  return Number(await page.$eval('[data-chart="loss"]', (e) => e.getAttribute("data-points") ?? "0"));
}

/** The progress (`[data-progress]`'s `data-step` / `data-total`). */
export function progress(page: Page): Promise<{ step: number; total: number }> {
  return page.$eval("[data-progress]", (e) => ({
    step: Number(e.getAttribute("data-step") ?? 0),
    total: Number(e.getAttribute("data-total") ?? 0),
  }));
}

/** The session status shown (`[data-status]`), lower case. */
export async function status(page: Page): Promise<string> {
  return ((await text(page, "[data-status]")) ?? "").toLowerCase();
}

/** The Train settings of a short LoRA run of the tiny model on the demo data. */
export interface TinyRun {
  outputDir: string;
  maxSteps: number;
  saveSteps: number;
}

/**
 * Picks the tiny model, LoRA, template qwen, the demo dataset; shows the data preview; sets a short run that logs
 * every step and saves every `saveSteps` into `outputDir`.
 */
export async function fillTinyRun(page: Page, run: TinyRun): Promise<void> {
  await setField(page, "model_name_or_path", "fixtures/tiny/model");
  await setField(page, "finetuning_type", "lora");
  await setField(page, "template", "qwen");
  await openTab(page, "train");
  await setField(page, "stage", "sft", { optional: true });
  await setField(page, "dataset_dir", "fixtures/demo");
  await setField(page, "dataset", ["whetstone_demo"]);
  await clickAction(page, "preview");
  await waitUntil(
    page,
    "the data preview ([data-preview]) to show rows",
    () => text(page, "[data-preview]"),
    (t) => (t ?? "").length > 20,
  );
  await setField(page, "learning_rate", "5e-3");
  await setField(page, "cutoff_len", 128);
  await setField(page, "max_samples", 200, { optional: true });
  await setField(page, "per_device_train_batch_size", 8);
  // LlamaBoard's default of 8 would make each step 8 batches; 2 keeps a step short yet long enough to Stop in.
  await setField(page, "gradient_accumulation_steps", 2);
  await setField(page, "max_steps", run.maxSteps);
  await setField(page, "logging_steps", 1);
  await setField(page, "save_steps", run.saveSteps);
  await setField(page, "val_size", 0, { optional: true });
  await setField(page, "output_dir", run.outputDir);
}
