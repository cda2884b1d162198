/**
 * Models loaded for chat by request, as LlamaBoard's Chat tab loads one: `POST /chat/models {model_name_or_path,
 * adapter_name_or_path?, template?, default_system?, executor?}` loads a model (with its adapter: a finished run's
 * output folder, a checkpoint, any PEFT folder under the roots) and answers its `id`, which `POST
 * /v1/chat/completions` takes as `model` (streaming too) and `GET /v1/models` lists; `GET /chat/models` lists
 * them and `DELETE /chat/models/:id` unloads one (once the replies in flight on it have ended).
 * @module
 */
import { ChatEngine, inferBackendProblem, resolveModel } from "../engine/mod.ts";
import { exists } from "../engine/util/fs.ts";
import type { API, Reply } from "./api.ts";
import { badRequest, HttpError } from "./http.ts";
import type { Roots } from "./paths.ts";

/** What `POST /chat/models` takes. */
export interface ChatModelRequest {
  model_name_or_path: string;
  adapter_name_or_path?: string | null;
  template?: string | null;
  default_system?: string | null;
  executor?: "auto" | "webgpu" | "onnx" | "reference" | null;
  /** huggingface (Whetstone's engine) or null; other backends are refused. */
  infer_backend?: string | null;
}

type Card = Reply<typeof API.loadChatModel>;

interface Loaded {
  card: Card;
  engine: ChatEngine;
  inflight: number;
  unloading: boolean;
}

/** The models loaded for chat, by id. */
export class ChatModels {
  readonly #models = new Map<string, Loaded>();

  constructor(readonly roots: Roots) {}

  /** Loads a model (and adapter) and returns its card; paths are confined to the roots. */
  async load(req: ChatModelRequest): Promise<Card> {
    const backend = inferBackendProblem(req.infer_backend);
    if (backend) throw badRequest("infer_backend", backend);
    const model = await this.roots.modelPath("model_name_or_path", req.model_name_or_path);
    let dir: string;
    try {
      dir = await resolveModel(model);
    } catch (e) {
      throw badRequest("model_name_or_path", (e as Error).message);
    }
    if (!await exists(`${dir}/config.json`)) {
      throw badRequest("model_name_or_path", `${req.model_name_or_path} is not a model folder (no config.json)`);
    }
    const adapters = (req.adapter_name_or_path ?? "").split(",").map((s) => s.trim()).filter(Boolean);
    if (adapters.length > 1) {
      throw badRequest("adapter_name_or_path", `one adapter can be loaded for chat, got ${adapters.length}`);
    }
    const adapter = adapters.length ? await this.roots.path("adapter_name_or_path", adapters[0]) : undefined;
    if (adapter && !await exists(`${adapter}/adapter_config.json`)) {
      throw badRequest("adapter_name_or_path", `${adapters[0]} is not a PEFT adapter folder (no adapter_config.json)`);
    }
    let engine: ChatEngine;
    try {
      engine = await ChatEngine.load(dir, {
        adapter,
        template: req.template ?? null,
        defaultSystem: req.default_system ?? null,
        executor: req.executor ?? undefined,
      });
    } catch (e) {
      const msg = (e as Error).message;
      const field = /template/i.test(msg)
        ? "template"
        : adapter && /adapter/i.test(msg)
        ? "adapter_name_or_path"
        : "model_name_or_path";
      throw badRequest(field, `cannot load the model: ${msg}`);
    }
    const id = `chat-${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
    const card: Card = {
      id,
      model_name_or_path: model,
      adapter_name_or_path: adapter ?? null,
      template: engine.template.spec.name,
      created: Math.floor(Date.now() / 1000),
    };
    this.#models.set(id, { card, engine, inflight: 0, unloading: false });
    return card;
  }

  /** The loaded models' cards. */
  list(): Card[] {
    return [...this.#models.values()].filter((m) => !m.unloading).map((m) => m.card);
  }

  /** The engine of `id` (undefined when no such model is loaded). */
  engine(id: string): ChatEngine | undefined {
    const m = this.#models.get(id);
    return m && !m.unloading ? m.engine : undefined;
  }

  /** The engine of `id` held for one reply (call `release` when it has ended), or undefined. */
  hold(id: string): { engine: ChatEngine; release: () => void } | undefined {
    const m = this.#models.get(id);
    if (!m || m.unloading) return undefined;
    m.inflight++;
    let released = false;
    return {
      engine: m.engine,
      release: () => {
        if (released) return;
        released = true;
        if (--m.inflight === 0 && m.unloading) this.#dispose(id, m);
      },
    };
  }

  #dispose(id: string, m: Loaded): void {
    this.#models.delete(id);
    m.engine.model.executor.dispose();
  }

  /** Unloads `id` (now, or when its replies in flight end); 404 when unknown. */
  unload(id: string): Card {
    const m = this.#models.get(id);
    if (!m || m.unloading) {
      throw new HttpError(404, `no chat model ${JSON.stringify(id)} (GET /chat/models lists them)`);
    }
    m.unloading = true;
    if (m.inflight === 0) this.#dispose(id, m);
    return m.card;
  }

  /** Unloads every model. */
  close(): void {
    for (const [id, m] of this.#models) this.#dispose(id, m);
  }
}
