/**
 * Test harness for the Board in a real headless Chromium (Debian's `chromium`), driven by puppeteer-core:
 * find the browser, define tests that skip without one (unless `WHETSTONE_REQUIRE_BROWSER=1`, as in CI), open a
 * page and record what went wrong on it (console errors, uncaught exceptions, failed requests, HTTP errors), wait
 * for selectors, attributes and text with messages that say what was awaited and what was seen, and save
 * screenshots under `out/board/`. The browser is always closed, and one browser with one page is used at a time.
 * @module
 */
import { type Browser, loadPuppeteer, type Page } from "../../deps.ts";

/** The repository root. */
export const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

/** Where screenshots go. */
export const SHOT_DIR = `${ROOT}/out/board`;

/** The few DOM types the functions run in the page use (this code is type-checked without the DOM library). */
export interface DomElement {
  getAttribute(name: string): string | null;
  getBoundingClientRect(): { width: number; height: number };
  innerText: string;
  textContent: string | null;
  value?: string;
  tagName: string;
}

/** The page's global scope, as functions run in the page see it: `const w = globalThis as unknown as PageGlobal`. */
export interface PageGlobal {
  document: {
    querySelector(selector: string): DomElement | null;
    querySelectorAll(selector: string): ArrayLike<DomElement>;
    documentElement: DomElement;
  };
  getComputedStyle(el: DomElement): { visibility: string; display: string };
  localStorage: { getItem(key: string): string | null };
}

/** Where a Chromium is looked for: `WHETSTONE_CHROMIUM`, then these paths, then these names on `PATH`. */
const CANDIDATES = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"];
const NAMES = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"];

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** The Chromium executable to drive, or null when there is none (or `WHETSTONE_CHROMIUM` names no file). */
export function findChromium(): string | null {
  const env = Deno.env.get("WHETSTONE_CHROMIUM");
  if (env) return isFile(env) ? env : null;
  for (const c of CANDIDATES) if (isFile(c)) return c;
  for (const dir of (Deno.env.get("PATH") ?? "").split(":").filter(Boolean)) {
    for (const n of NAMES) if (isFile(`${dir}/${n}`)) return `${dir}/${n}`;
  }
  return null;
}

/** Whether a missing browser is a failure (CI) rather than a skip. */
export function browserRequired(): boolean {
  return Deno.env.get("WHETSTONE_REQUIRE_BROWSER") === "1";
}

const warned = new Set<string>();

/**
 * Defines a Deno test that needs Chromium: ignored, with a message saying so, when there is none, unless
 * `WHETSTONE_REQUIRE_BROWSER=1`, where it runs and fails naming what is missing. The sanitizers are off (the
 * browser is a child process talking over a WebSocket; `withPage` closes it).
 */
export function browserTest(name: string, fn: (t: Deno.TestContext) => Promise<void>): void {
  const chromium = findChromium();
  const skip = chromium === null && !browserRequired();
  if (skip && !warned.has(name)) {
    warned.add(name);
    console.warn(
      `SKIP "${name}": no Chromium found (set WHETSTONE_CHROMIUM, or apt-get install chromium; ` +
        `WHETSTONE_REQUIRE_BROWSER=1 makes this a failure)`,
    );
  }
  Deno.test({ name, ignore: skip, sanitizeOps: false, sanitizeResources: false, sanitizeExit: false, fn });
}

/** What went wrong on a page while it was open. */
export interface Problems {
  /** `console.error` messages (and Chromium's own "Failed to load resource" lines). */
  console: string[];
  /** Uncaught exceptions and unhandled rejections. */
  pageErrors: string[];
  /** Requests that got no answer (`METHOD url: reason`), aborted ones apart. */
  failedRequests: string[];
  /** Requests aborted by the page (a stopped stream, a closed event source). */
  abortedRequests: string[];
  /** Answers with status >= 400 (`STATUS METHOD url`). */
  httpErrors: string[];
}

/** An open page and what happened on it. */
export interface PageSession {
  browser: Browser;
  page: Page;
  problems: Problems;
  /** Saves a PNG of the page (or its full height) as `out/board/<name>.png`; answers the path. */
  screenshot(name: string, fullPage?: boolean): Promise<string>;
}

/** Options of `withPage`. */
export interface PageOptions {
  /** Viewport (default 1280 x 800, device scale 1). */
  width?: number;
  height?: number;
  /** Run before the first navigation (listeners, dialogs, request hooks). */
  setup?: (page: Page) => Promise<void> | void;
}

/** The Chromium flags: headless, no sandbox (CI runs as root), no GPU, /tmp instead of a small /dev/shm. */
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-dev-shm-usage",
  "--disable-extensions",
  "--no-first-run",
  "--no-default-browser-check",
  "--disable-background-networking",
  "--disable-component-update",
  "--renderer-process-limit=2",
];

/** Launches headless Chromium (puppeteer adds `--headless=new`); throws naming the executable when it cannot. */
export async function launchBrowser(): Promise<Browser> {
  const executablePath = findChromium();
  if (executablePath === null) {
    const env = Deno.env.get("WHETSTONE_CHROMIUM");
    throw new Error(
      env
        ? `WHETSTONE_CHROMIUM=${env} is not a file: set it to a Chrome/Chromium executable`
        : "no Chromium found: apt-get install chromium, or set WHETSTONE_CHROMIUM to a Chrome/Chromium executable",
    );
  }
  const { default: puppeteer } = await loadPuppeteer();
  try {
    return await puppeteer.launch({
      executablePath,
      headless: true,
      args: CHROMIUM_ARGS,
      defaultViewport: null,
      timeout: 60_000,
      protocolTimeout: 120_000,
    });
  } catch (e) {
    throw new Error(`could not launch ${executablePath}: ${(e as Error).message}`);
  }
}

/**
 * Launches Chromium, opens `url` in a fresh page recording its problems, runs `fn`, and always closes the browser
 * (on success, failure or a timeout). Answers what `fn` answers.
 */
export async function withPage<T>(
  url: string,
  fn: (s: PageSession) => Promise<T>,
  opts: PageOptions = {},
): Promise<T> {
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: opts.width ?? 1280, height: opts.height ?? 800, deviceScaleFactor: 1 });
    page.setDefaultTimeout(30_000);
    const problems: Problems = { console: [], pageErrors: [], failedRequests: [], abortedRequests: [], httpErrors: [] };
    page.on("console", (m) => {
      if (m.type() === "error") problems.console.push(`${m.text()} (${m.location()?.url ?? "?"})`);
    });
    page.on("pageerror", (e) => problems.pageErrors.push(String((e as Error)?.stack ?? e)));
    page.on("requestfailed", (r) => {
      const reason = r.failure()?.errorText ?? "failed";
      const line = `${r.method()} ${r.url()}: ${reason}`;
      (reason === "net::ERR_ABORTED" ? problems.abortedRequests : problems.failedRequests).push(line);
    });
    page.on("response", (r) => {
      if (r.status() >= 400) problems.httpErrors.push(`${r.status()} ${r.request().method()} ${r.url()}`);
    });
    await opts.setup?.(page);
    const res = await page.goto(url, { waitUntil: "load" });
    if (res && !res.ok()) throw new Error(`GET ${url} answered ${res.status()}: ${(await res.text()).slice(0, 300)}`);
    const screenshot = async (name: string, fullPage = false) => {
      await Deno.mkdir(SHOT_DIR, { recursive: true });
      const path = `${SHOT_DIR}/${name}.png` as `${string}.png`;
      await page.screenshot({ path, fullPage });
      return path;
    };
    return await fn({ browser, page, problems, screenshot });
  } finally {
    await browser.close().catch(() => browser.process()?.kill("SIGKILL"));
  }
}

/** Polls `read` in the page every 100 ms until `ok` holds; a timeout names `what` and the last value read. */
export async function waitUntil<V>(
  page: Page,
  what: string,
  read: () => Promise<V>,
  ok: (v: V) => boolean,
  timeoutMs = 30_000,
): Promise<V> {
  const end = Date.now() + timeoutMs;
  let last: V | undefined;
  let err: unknown;
  for (;;) {
    try {
      last = await read();
      err = undefined;
      if (ok(last)) return last;
    } catch (e) {
      err = e;
    }
    if (Date.now() > end) {
      const seen = err !== undefined ? `error ${(err as Error).message}` : JSON.stringify(last)?.slice(0, 500);
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last seen: ${seen} (page ${page.url()})`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Waits for an element matching `selector` (present, and visible unless `visible` is false). */
export async function waitForSelector(page: Page, selector: string, timeoutMs = 30_000, visible = true): Promise<void> {
  await waitUntil(
    page,
    `${visible ? "a visible " : ""}${selector}`,
    () =>
      page.evaluate(
        (sel: string, vis: boolean) => {
          const w = globalThis as unknown as PageGlobal;
          const el = w.document.querySelector(sel);
          if (!el) return "absent";
          if (!vis) return "present";
          const r = el.getBoundingClientRect();
          const st = w.getComputedStyle(el);
          return r.width > 0 && r.height > 0 && st.visibility !== "hidden" ? "present" : "hidden";
        },
        selector,
        visible,
      ),
    (v) => v === "present",
    timeoutMs,
  );
}

/** The value of `attr` on the first element matching `selector` (null when absent). */
export function attr(page: Page, selector: string, name: string): Promise<string | null> {
  return page.evaluate(
    (sel: string, a: string) =>
      (globalThis as unknown as PageGlobal).document.querySelector(sel)?.getAttribute(a) ?? null,
    selector,
    name,
  );
}

/** The trimmed text (a form control's value) of the first element matching `selector` (null when absent). */
export function text(page: Page, selector: string): Promise<string | null> {
  return page.evaluate(
    (sel: string) => {
      const el = (globalThis as unknown as PageGlobal).document.querySelector(sel);
      if (!el) return null;
      if (/^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName)) return (el.value ?? "").trim();
      return (el.innerText || el.textContent || "").trim(); // textContent: inside a closed <details>
    },
    selector,
  );
}

/** Waits until `attr` on `selector` passes `ok`; answers the value. */
export function waitForAttr(
  page: Page,
  selector: string,
  name: string,
  ok: (v: string | null) => boolean,
  what = `${selector}[${name}]`,
  timeoutMs = 30_000,
): Promise<string | null> {
  return waitUntil(page, what, () => attr(page, selector, name), ok, timeoutMs);
}

/** Waits until the text of `selector` passes `ok`; answers the text. */
export function waitForText(
  page: Page,
  selector: string,
  ok: (v: string | null) => boolean,
  what = `the text of ${selector}`,
  timeoutMs = 30_000,
): Promise<string | null> {
  return waitUntil(page, what, () => text(page, selector), ok, timeoutMs);
}

/** A readable summary of the problems (for an assertion message). */
export function describeProblems(p: Problems): string {
  return Object.entries(p)
    .filter(([, v]) => (v as string[]).length)
    .map(([k, v]) => `${k}:\n  ${(v as string[]).join("\n  ")}`)
    .join("\n") || "none";
}
