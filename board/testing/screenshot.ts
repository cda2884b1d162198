/**
 * The README's screenshot of the Board: serves the app over a temp folder, runs a short LoRA run of the tiny model
 * on the demo data in headless Chromium (its adapter in out/board-screenshot), and saves the Train tab (form, plan,
 * progress, loss chart) as a PNG of at most 200 KB.
 *
 *     node_modules/.bin/deno run -A --unstable-webgpu --unstable-kv board/testing/screenshot.ts [docs/board.png]
 * @module
 */
import { clickAction, fillTinyRun, openTab, progress, status } from "./board_flow.ts";
import { type PageGlobal, ROOT, waitUntil, withPage } from "./browser.ts";
import { serveApp } from "./serve.ts";

/** Largest PNG the README should carry. */
const MAX_BYTES = 200 * 1024;

if (import.meta.main) {
  const path = Deno.args[0] ?? "docs/board.png";
  const steps = 30;
  const outputDir = "out/board-screenshot";
  // A finished run there would be resumed (LLaMA-Factory's rule for an output_dir with checkpoints): start afresh.
  await Deno.remove(`${ROOT}/${outputDir}`, { recursive: true }).catch(() => {});
  const t = await serveApp();
  try {
    await withPage(`${t.url}/`, async ({ page }) => {
      await fillTinyRun(page, { outputDir, maxSteps: steps, saveSteps: steps });
      await clickAction(page, "start");
      await waitUntil(page, `step ${steps} of ${steps}`, () => progress(page), (p) => p.step === steps, 180_000);
      await waitUntil(page, "the status to say finished", () => status(page), (v) => v === "finished", 60_000);
      await openTab(page, "train");
      // The picture shows the form, the plan, the progress and the loss chart; the data preview rows (shown while
      // the form was filled) would take most of it, so they are hidden for the picture.
      const height = await page.evaluate(() => {
        const w = globalThis as unknown as PageGlobal & { scrollTo(x: number, y: number): void };
        (w.document.querySelector("[data-preview]") as unknown as { hidden: boolean }).hidden = true;
        w.scrollTo(0, 0);
        return w.document.documentElement.getBoundingClientRect().height;
      });
      for (const scale of [1, 0.85, 0.7, 0.6, 0.5]) {
        await page.screenshot({
          path: path as `${string}.png`,
          clip: { x: 0, y: 0, width: 1200, height: Math.ceil(height), scale },
          captureBeyondViewport: true,
        });
        if ((await Deno.stat(path)).size <= MAX_BYTES) break;
      }
    }, { width: 1200, height: 760 });
  } finally {
    await t.close();
  }
  const bytes = (await Deno.stat(path)).size;
  console.log(`${path}: ${(bytes / 1024).toFixed(0)} KB`);
  if (bytes > MAX_BYTES) {
    console.error(`${path} is over ${MAX_BYTES / 1024} KB even at half scale`);
    Deno.exit(1);
  }
}
