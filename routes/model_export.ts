/**
 * `POST /models/export`: LlamaBoard's Export tab over any model and adapter under the roots (a finished run's
 * output folder — a llamafactory run's included — or a checkpoint), with the engine of `deno task export`
 * (cli/export.ts): the adapter merged into the base, an HF folder written in `infer_dtype` with `export_size` GB
 * shards, and with `export_onnx` the merged model as ONNX in `<export_dir>/onnx`. `adapter_only` writes the
 * adapter's PEFT files (with the tokenizer) instead of merging. `export_dir` is checked as the session export
 * checks it (routes/training.ts): a folder inside a root, not a root or a root's parent, not overlapping the model
 * or the adapter, and replaced whole only when it already holds an exported model (or adapter). The answer lists
 * every file written with its size.
 * @module
 */
import { isAbsolute, join, relative, sep } from "node:path";
import { Hono } from "../deps.ts";
import { exportModel, exportOnnxBeside, loadModel, parseExportArgs, resolveModel } from "../engine/mod.ts";
import { COPIED_FILES } from "../engine/nn/export.ts";
import { exists } from "../engine/util/fs.ts";
import { API, on, type Reply, reply } from "./api.ts";
import type { ServerContext } from "./context.ts";
import { badRequest, HttpError } from "./http.ts";

const inside = (child: string, parent: string) => child === parent || child.startsWith(parent + sep);

/** The files under `dir` (paths relative to it), sorted, with their sizes. */
export async function listFiles(dir: string): Promise<{ path: string; bytes: number }[]> {
  const out: { path: string; bytes: number }[] = [];
  const walk = async (d: string) => {
    for await (const e of Deno.readDir(d)) {
      const p = join(d, e.name);
      if (e.isDirectory) await walk(p);
      else if (e.isFile) out.push({ path: relative(dir, p), bytes: (await Deno.stat(p)).size });
    }
  };
  await walk(dir);
  return out.sort((a, b) => a.path.localeCompare(b.path));
}

/** Writes the adapter's PEFT files (and the tokenizer, from the adapter's folder else the model's) into `dir`. */
async function exportAdapter(adapter: string, source: string, dir: string): Promise<void> {
  const tmp = `${dir}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  await Deno.mkdir(tmp, { recursive: true });
  try {
    for (const f of ["adapter_config.json", "adapter_model.safetensors"]) {
      await Deno.copyFile(join(adapter, f), join(tmp, f));
    }
    for (const f of COPIED_FILES) {
      const from = (await exists(join(adapter, f))) ? adapter : source;
      if (await exists(join(from, f))) await Deno.copyFile(join(from, f), join(tmp, f));
    }
    if (await exists(dir)) await Deno.remove(dir, { recursive: true });
    await Deno.rename(tmp, dir);
  } catch (e) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw e;
  }
}

/** The model export route. */
export function modelExportRoutes(ctx: ServerContext): Hono {
  const r = new Hono();
  const busy = new Set<string>();

  on(r, API.exportModel, async (c, { body }) => {
    const model = await ctx.roots.modelPath("model_name_or_path", body.model_name_or_path);
    let source: string;
    try {
      source = await resolveModel(model);
    } catch (e) {
      throw badRequest("model_name_or_path", (e as Error).message);
    }
    if (!await exists(`${source}/config.json`)) {
      throw badRequest("model_name_or_path", `${body.model_name_or_path} is not a model folder (no config.json)`);
    }
    const adapters = (body.adapter_name_or_path ?? "").split(",").map((s) => s.trim()).filter(Boolean);
    if (adapters.length > 1) {
      throw badRequest("adapter_name_or_path", `one adapter can be merged, got ${adapters.length}`);
    }
    const adapter = adapters.length ? await ctx.roots.path("adapter_name_or_path", adapters[0]) : undefined;
    if (adapter && !await exists(`${adapter}/adapter_config.json`)) {
      throw badRequest("adapter_name_or_path", `${adapters[0]} is not a PEFT adapter folder (no adapter_config.json)`);
    }
    if (body.adapter_only && !adapter) {
      throw badRequest("adapter_only", "adapter_only exports an adapter: give adapter_name_or_path");
    }
    if (body.adapter_only && body.export_onnx) {
      throw badRequest("export_onnx", "export_onnx needs the merged model: not with adapter_only");
    }
    const dirText = body.export_dir;
    const dir = await ctx.roots.path("export_dir", dirText);
    if (ctx.roots.dirs.some((root) => inside(root, dir))) {
      throw badRequest("export_dir", `${dirText} is (or holds) a root folder; name a folder inside one`);
    }
    for (const [what, path] of [["model folder", source], ["adapter folder", adapter]] as const) {
      if (path && isAbsolute(path) && (inside(path, dir) || inside(dir, path))) {
        throw badRequest("export_dir", `${dirText} overlaps the ${what} ${path}`);
      }
    }
    const marker = body.adapter_only ? "adapter_config.json" : "config.json";
    if (await exists(dir) && !await exists(`${dir}/${marker}`)) {
      throw badRequest(
        "export_dir",
        `${dirText} exists and is not an exported ${body.adapter_only ? "adapter" : "model"} folder (an export ` +
          "replaces it whole)",
      );
    }
    const size = body.export_size ?? 5;
    const cfg: Record<string, unknown> = {
      model_name_or_path: source,
      adapter_name_or_path: adapter,
      export_dir: dir,
      export_size: size,
      infer_dtype: body.infer_dtype ?? "auto",
      export_onnx: body.export_onnx ?? false,
      template: body.template ?? undefined,
    };
    let args;
    try {
      args = parseExportArgs(cfg, JSON.parse(await Deno.readTextFile(`${source}/config.json`)));
    } catch (e) {
      const msg = (e as Error).message;
      throw badRequest(/^(\w+):/.exec(msg)?.[1] ?? "infer_dtype", msg);
    }
    if (busy.has(dir)) throw new HttpError(409, `export_dir: ${dirText} is being exported by another request`);
    busy.add(dir);
    try {
      if (body.adapter_only) {
        await exportAdapter(adapter!, source, dir);
      } else {
        const m = await loadModel(source, { dtype: "f32", executor: "reference", adapter });
        try {
          await exportModel(m, dir, { source, shardBytes: size * 1e9, dtype: args.dtype, template: args.template });
        } finally {
          m.executor.dispose();
        }
        if (args.onnx) {
          const merged = await loadModel(dir, { executor: "reference" });
          try {
            await exportOnnxBeside(merged, dir);
          } finally {
            merged.executor.dispose();
          }
        }
      }
    } finally {
      busy.delete(dir);
    }
    const answer: Reply<typeof API.exportModel> = {
      export_dir: dir,
      model_name_or_path: model,
      adapter_name_or_path: adapter ?? null,
      dtype: body.adapter_only ? null : args.dtype,
      export_size: size,
      files: await listFiles(dir),
    };
    return reply(c, API.exportModel, answer);
  }, ctx.bodyLimit);

  return r;
}
