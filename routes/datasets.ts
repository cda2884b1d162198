/**
 * Datasets: `GET /datasets?dataset_dir=...` lists the entries of a folder's dataset_info.json; `POST
 * /datasets/preview` shows the first examples of one as the trainer would see them — the normalized messages,
 * and the tokenized sequences as spans of trained and masked tokens (`previewTrainData`).
 * @module
 */
import { Hono } from "../deps.ts";
import { parseDatasetAttr, parseTrainArgs, previewTrainData, readDatasetInfo } from "../engine/mod.ts";
import { API, on, reply } from "./api.ts";
import type { ServerContext } from "./context.ts";
import { badRequest, HttpError } from "./http.ts";

/** The dataset routes. */
export function datasetRoutes(ctx: ServerContext): Hono {
  const r = new Hono();

  on(r, API.datasets, async (c, { query }) => {
    const dir = await ctx.roots.path("dataset_dir", query.dataset_dir ?? "data");
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
          columns: a.columns as Record<string, string>,
          tags: a.tags as Record<string, string>,
          ...(warnings.length ? { warnings } : {}),
        };
      } catch (e) {
        return { name, error: (e as Error).message };
      }
    });
    return reply(c, API.datasets, { dataset_dir: dir, datasets });
  });

  on(r, API.preview, async (c, { body }) => {
    const { n, ...config } = body;
    if (config.dataset === undefined) throw badRequest("dataset", "required (a name in dataset_info.json)");
    const a = parseTrainArgs(config, [], "request");
    await ctx.roots.confineArgs(a);
    let preview;
    try {
      preview = await previewTrainData(a, n ?? 5);
    } catch (e) {
      throw new HttpError(400, `cannot preview: ${(e as Error).message}`);
    }
    return reply(c, API.preview, {
      dataset: a.dataset,
      template: a.template,
      cutoff_len: a.cutoff_len,
      warnings: preview.warnings,
      rows: preview.rows,
    });
  }, ctx.bodyLimit);

  return r;
}
