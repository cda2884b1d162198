/**
 * The README's screenshot of the Board: serves the app over a temp folder, runs a short LoRA run of the tiny model
 * on the demo data in headless Chromium, and saves the Train tab (form, loss chart, progress) as a PNG.
 *
 *     node_modules/.bin/deno run -A --unstable-webgpu --unstable-kv board/screenshot.ts [docs/board.png]
 * @module
 */
import { clickAction, fillTinyRun, openTab, progress } from "./testing/board_flow.ts";
import { waitUntil, withPage } from "./testing/browser.ts";
import { serveApp } from "./testing/serve.ts";

/** Largest PNG the README should carry. */
const MAX_BYTES = 200 * 1024;

if (import.meta.main) {
  const path = Deno.args[0] ?? "docs/board.png";
  const steps = 30;
  const t = await serveApp();
  try {
    await withPage(`${t.url}/`, async ({ page }) => {
      await fillTinyRun(page, { outputDir: `${t.tmp}/out/board-lora`, maxSteps: steps, saveSteps: steps });
      await clickAction(page, "start");
      await waitUntil(page, `step ${steps} of ${steps}`, () => progress(page), (p) => p.step === steps, 180_000);
      await openTab(page, "train");
      await page.evaluate(() => (globalThis as unknown as { scrollTo(x: number, y: number): void }).scrollTo(0, 0));
      await page.screenshot({ path: path as `${string}.png` });
    }, { width: 1200, height: 760 });
  } finally {
    await t.close();
  }
  const bytes = (await Deno.stat(path)).size;
  console.log(`${path}: ${(bytes / 1024).toFixed(0)} KB`);
  if (bytes > MAX_BYTES) {
    console.error(`${path} is over ${MAX_BYTES / 1024} KB: make the viewport smaller`);
    Deno.exit(1);
  }
}
