/**
 * Datasets: `GET /datasets?dataset_dir=...` lists the entries of a folder's dataset_info.json; `POST
 * /datasets/preview` shows the first examples of one as the trainer would see them — the normalized messages,
 * and the tokenized sequences as spans of trained and masked tokens (engine/data/preview.ts).
 * @module
 */
import { Hono } from "../deps.ts";
import {
  dataArgsOf,
  hubOptionsOf,
  loadDatasetsArgsOf,
  parseTrainArgs,
  templateOptionsOf,
} from "../engine/config/args.ts";
import { parseDatasetAttr, readDatasetInfo } from "../engine/data/dataset_info.ts";
import { loadDatasets } from "../engine/data/loader.ts";
import { previewDataset } from "../engine/data/preview.ts";
import { getTemplate } from "../engine/data/template.ts";
import { loadTokenizer } from "../engine/data/tokenizer.ts";
import { resolveModel } from "../engine/io/hub.ts";
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
    let rows, loaded;
    try {
      const dir = await resolveModel(a.model_name_or_path, hubOptionsOf(a));
      const template = getTemplate(await loadTokenizer(dir), templateOptionsOf(a));
      loaded = await loadDatasets({
        ...loadDatasetsArgsOf(a),
        max_samples: Math.min(a.max_samples ?? n, n),
        val_size: 0,
        eval_dataset: undefined,
      });
      rows = previewDataset(loaded.train, template.tokenizer.base, template, n, dataArgsOf(a));
    } catch (e) {
      throw new HttpError(400, `cannot preview: ${(e as Error).message}`);
    }
    return c.json({
      dataset: a.dataset,
      template: a.template,
      cutoff_len: a.cutoff_len,
      warnings: loaded.warnings,
      rows,
    });
  });

  return r;
}
