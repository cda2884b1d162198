/**
 * Datasets: `GET /datasets?dataset_dir=...` lists the entries of a folder's dataset_info.json; `POST
 * /datasets/preview` shows the first examples of one as the trainer would see them — the normalized messages,
 * and the tokenized sequences as spans of trained and masked tokens (`previewTrainData`).
 * @module
 */
import { Hono } from "../deps.ts";
import { parseDatasetAttr, parseTrainArgs, previewTrainData, readDatasetInfo } from "../engine/mod.ts";
import type { ServerContext } from "./context.ts";
import { badRequest, Fields, HttpError, readJson } from "./http.ts";

/** The dataset routes. */
export function datasetRoutes(ctx: ServerContext): Hono {
  const r = new Hono();

  r.get("/datasets", async (c) => {
    const dir = await ctx.roots.path("dataset_dir", c.req.query("dataset_dir") ?? "data");
    const info = await readDatasetInfo(dir);
    const datasets = Object.entries(info).map(([name, entry]) => {
      const warnings: string[] = [];
      try {
        const a = parseDatasetAttr(name, entry, warnings);
        return {
          name,
          load_from: a.loadFrom,
          source: a.datasetName,
          formatting: a.formatting,
          ranking: a.ranking,
          columns: a.columns,
          tags: a.tags,
          ...(warnings.length ? { warnings } : {}),
        };
      } catch (e) {
        return { name, error: (e as Error).message };
      }
    });
    return c.json({ dataset_dir: dir, datasets });
  });

  r.post("/datasets/preview", async (c) => {
    const body = await readJson(c, ctx.bodyLimit);
    const n = new Fields(body).int("n", { min: 1, max: 100 }) ?? 5;
    const { n: _n, ...config } = body;
    if (config.dataset === undefined) throw badRequest("dataset", "required (a name in dataset_info.json)");
    const a = parseTrainArgs(config, [], "request");
    await ctx.roots.confineArgs(a);
    let preview;
    try {
      preview = await previewTrainData(a, n);
    } catch (e) {
      throw new HttpError(400, `cannot preview: ${(e as Error).message}`);
    }
    return c.json({
      dataset: a.dataset,
      template: a.template,
      cutoff_len: a.cutoff_len,
      warnings: preview.warnings,
      rows: preview.rows,
    });
  });

  return r;
}
