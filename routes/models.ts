/**
 * `GET /models`: the model folders (config.json with safetensors weights) and PEFT adapters
 * (adapter_config.json) under the roots, found by a shallow walk (hidden folders and node_modules skipped), each
 * model with the template guessed for it; `GET /templates`: the template names.
 * @module
 */
import { join } from "node:path";
import { Hono } from "../deps.ts";
import { guessTemplate, templateNames } from "../engine/mod.ts";
import { API, on, type Reply, reply } from "./api.ts";
import type { ServerContext } from "./context.ts";
import type { Roots } from "./paths.ts";

const SKIP = new Set(["node_modules", "__pycache__"]);
const MAX_DEPTH = 5, MAX_ENTRIES = 500;

async function readJsonFile(path: string): Promise<Record<string, unknown> | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch {
    return undefined;
  }
}

/** A model folder's chat template text: chat_template.jinja, else tokenizer_config.json's (the default one). */
async function chatTemplateOf(dir: string, names: Set<string>): Promise<string | null> {
  if (names.has("chat_template.jinja")) {
    return await Deno.readTextFile(join(dir, "chat_template.jinja")).catch(() => null);
  }
  if (!names.has("tokenizer_config.json")) return null;
  const t = (await readJsonFile(join(dir, "tokenizer_config.json")))?.chat_template;
  if (typeof t === "string") return t;
  if (Array.isArray(t)) {
    const named = t.find((x) => x?.name === "default") ?? t[0];
    return typeof named?.template === "string" ? named.template : null;
  }
  return null;
}

/** Model folders and adapters under `roots`. */
export async function findModels(roots: Roots): Promise<Omit<Reply<typeof API.models>, "roots">> {
  const models: Reply<typeof API.models>["models"] = [], adapters: Reply<typeof API.models>["adapters"] = [];
  const walk = async (dir: string, depth: number) => {
    if (models.length + adapters.length >= MAX_ENTRIES) return;
    const names = new Set<string>(), dirs: string[] = [];
    try {
      for await (const e of Deno.readDir(dir)) {
        names.add(e.name);
        if (e.isDirectory && !e.name.startsWith(".") && !SKIP.has(e.name)) dirs.push(e.name);
      }
    } catch {
      return;
    }
    const hasWeights = names.has("model.safetensors") || names.has("model.safetensors.index.json");
    if (names.has("config.json") && hasWeights) {
      const cfg = await readJsonFile(join(dir, "config.json"));
      const modelType = typeof cfg?.model_type === "string" ? cfg.model_type : null;
      models.push({
        path: roots.display(dir),
        model_type: modelType,
        architectures: Array.isArray(cfg?.architectures) ? cfg.architectures.map(String) : null,
        has_tokenizer: names.has("tokenizer.json"),
        template: guessTemplate({ modelType, chatTemplate: await chatTemplateOf(dir, names) }),
      });
    }
    if (names.has("adapter_config.json")) {
      const cfg = await readJsonFile(join(dir, "adapter_config.json"));
      adapters.push({
        path: roots.display(dir),
        base_model_name_or_path: typeof cfg?.base_model_name_or_path === "string" ? cfg.base_model_name_or_path : null,
        peft_type: typeof cfg?.peft_type === "string" ? cfg.peft_type : null,
        r: typeof cfg?.r === "number" ? cfg.r : null,
      });
    }
    if (depth < MAX_DEPTH) { for (const d of dirs.sort()) await walk(join(dir, d), depth + 1); }
  };
  for (const r of roots.dirs) await walk(r, 0);
  return { models, adapters };
}

/** The models and templates routes. */
export function modelsRoutes(ctx: ServerContext): Hono {
  const r = new Hono();
  on(r, API.models, async (c) => reply(c, API.models, { roots: ctx.roots.dirs, ...(await findModels(ctx.roots)) }));
  on(r, API.templates, (c) => reply(c, API.templates, { templates: templateNames() }));
  return r;
}
