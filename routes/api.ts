/**
 * Every route of the API, once: method, path, summary, the schemas of its path parameters, query, body and answer,
 * and its error statuses. The routers register their handlers from these ({@linkcode on}, validating requests
 * with the same schemas), `/openapi.json` is generated from them (routes/openapi.ts), the tests check every answer
 * against its schema (routes/testing.ts), and the notebooks' client takes its types from them
 * (notebooks/whetstone.ts).
 * @module
 */
import { type Context, type Hono, z } from "../deps.ts";
import { readBody, readQuery } from "./validate.ts";
import {
  ChatCompletion,
  ChatCompletionBody,
  Eval,
  GenerateBody,
  Generated,
  LogEntry,
  PartialPlan,
  Plan,
  PredictBody,
  PreviewRowSchema,
  SessionInfo,
  State,
  Step,
  TrainArgsBody,
} from "./schemas.ts";

/** One route. */
export interface ApiRoute {
  method: "get" | "post" | "delete";
  /** OpenAPI's form: `/sessions/{id}/step`. */
  path: string;
  summary: string;
  params?: z.ZodObject;
  query?: z.ZodObject;
  body?: z.ZodType;
  /** An empty body reads as `{}`. */
  bodyOptional?: boolean;
  /** The success status (default 200). */
  status?: 200 | 201 | 202;
  /** The JSON answer (for `events`: each event's data). */
  response: z.ZodType;
  /** Server-sent events: always, or when the body asks (`stream: true`). */
  sse?: "always" | "option";
  /** Error statuses besides 401 (and 400/413 with a body). */
  errors?: number[];
  /** Errors in OpenAI's shape. */
  openai?: boolean;
}

const route = <const R extends ApiRoute>(r: R): R => r;
const ID = z.object({ id: z.string().describe("session id") });
const Str = z.string();

/** A model loaded for chat (POST /chat/models). */
const ChatModelCard = z.object({
  id: Str.describe("the `model` of /v1/chat/completions"),
  model_name_or_path: Str,
  adapter_name_or_path: Str.nullable(),
  template: Str,
  created: z.int(),
}).meta({ id: "ChatModel" });

/** The routes, by name. */
export const API = {
  health: route({
    method: "get",
    path: "/health",
    summary: "server health, runtime versions, compute adapter and the executor `auto` picks",
    response: z.object({
      ok: z.literal(true),
      versions: z.object({ deno: Str, v8: Str, typescript: Str }),
      adapter: z.object({ name: Str, fallback: z.boolean(), shader_f16: z.boolean() }).nullable(),
      adapter_error: Str.optional(),
      executor: z.object({ auto: z.enum(["webgpu", "onnx"]), reason: Str }),
      sessions: z.object({ loaded: z.int() }),
      roots: z.array(Str),
      runners: z.tuple([
        z.object({ name: z.literal("whetstone"), available: z.literal(true) }),
        z.object({
          name: z.literal("llamafactory"),
          available: z.boolean().describe("llamafactory-cli is on the server's PATH"),
          path: Str.nullable(),
        }),
      ]).describe("who can train a session: POST /sessions {runner}"),
    }),
  }),
  openapi: route({
    method: "get",
    path: "/openapi.json",
    summary: "this document",
    response: z.object({ openapi: Str, info: z.object({ title: Str, version: Str }) }).catchall(z.unknown()),
  }),
  device: route({
    method: "get",
    path: "/v1/device",
    summary: "the compute device and its limits",
    response: z.union([
      z.object({
        executor: z.literal("webgpu"),
        adapter: Str,
        fallback: z.boolean(),
        shaderF16: z.boolean(),
        limits: z.record(Str, z.number()),
      }),
      z.object({ executor: z.literal("reference"), adapter: z.null(), reason: Str }),
    ]),
  }),
  models: route({
    method: "get",
    path: "/models",
    summary: "model folders and adapters under the roots",
    response: z.object({
      roots: z.array(Str),
      models: z.array(z.object({
        path: Str,
        model_type: Str.nullable(),
        architectures: z.array(Str).nullable(),
        has_tokenizer: z.boolean(),
        template: Str.nullable().describe(
          "the template guessed from its chat template and model_type (GET /templates)",
        ),
      })),
      adapters: z.array(z.object({
        path: Str,
        base_model_name_or_path: Str.nullable(),
        peft_type: Str.nullable(),
        r: z.number().nullable(),
      })),
    }),
  }),
  templates: route({
    method: "get",
    path: "/templates",
    summary: "the chat templates a session's `template` may name (LLaMA-Factory's names)",
    response: z.object({ templates: z.array(Str) }),
  }),
  datasets: route({
    method: "get",
    path: "/datasets",
    summary: "entries of dataset_info.json",
    query: z.object({ dataset_dir: Str.optional().describe("default: data") }),
    response: z.object({
      dataset_dir: Str,
      datasets: z.array(z.union([
        z.object({
          name: Str,
          load_from: Str,
          source: Str,
          formatting: Str,
          ranking: z.boolean(),
          columns: z.record(Str, Str),
          tags: z.record(Str, Str),
          warnings: z.array(Str).optional(),
        }),
        z.object({ name: Str, error: Str }),
      ])),
    }),
  }),
  preview: route({
    method: "post",
    path: "/datasets/preview",
    summary: "first examples, normalized and tokenized with trained/masked spans",
    body: TrainArgsBody.extend({ n: z.int().min(1).max(100).nullish().describe("rows (default 5)") }),
    response: z.object({
      dataset: z.array(Str).nullable(),
      template: Str.nullable(),
      cutoff_len: z.int(),
      warnings: z.array(Str),
      rows: z.array(PreviewRowSchema),
    }),
  }),
  listSessions: route({
    method: "get",
    path: "/sessions",
    summary: "sessions (loaded or recorded)",
    response: z.object({ sessions: z.array(SessionInfo) }),
  }),
  createSession: route({
    method: "post",
    path: "/sessions",
    summary: "create a session: loads model, tokenizer and data; returns its id and plan. With runner " +
      '"llamafactory": writes <output_dir>/training_args.yaml (LLaMA-Factory\'s keys only) and starts ' +
      "`llamafactory-cli train` on it",
    body: TrainArgsBody,
    status: 201,
    response: z.object({
      id: Str,
      plan: z.union([Plan, PartialPlan]),
      state: State,
      warnings: z.array(Str),
      runner: z.literal("llamafactory").optional(),
      yaml: Str.optional().describe("llamafactory runs: the YAML written"),
      command: z.array(Str).optional().describe("llamafactory runs: the command started"),
    }),
    errors: [409],
  }),
  getSession: route({
    method: "get",
    path: "/sessions/{id}",
    summary: "a session with its plan and arguments",
    params: ID,
    response: SessionInfo.extend({ plan: z.union([Plan, PartialPlan]), config: z.record(Str, z.unknown()) }),
    errors: [404],
  }),
  deleteSession: route({
    method: "delete",
    path: "/sessions/{id}",
    summary: "forget a session (its files stay)",
    params: ID,
    response: z.object({ deleted: Str, output_dir: Str, files: z.literal("kept") }),
    errors: [404, 409],
  }),
  resume: route({
    method: "post",
    path: "/sessions/{id}/resume",
    summary: "load a recorded session from its latest checkpoint",
    params: ID,
    response: z.object({ id: Str, resumed_from: Str.nullable(), plan: Plan, state: State }),
    errors: [404, 409],
  }),
  step: route({
    method: "post",
    path: "/sessions/{id}/step",
    summary: "run N optimizer steps; returns each step's loss, lr, grad norm and throughput",
    params: ID,
    body: z.strictObject({ steps: z.int().min(1).max(1_000_000).nullish().describe("default 1") }),
    bodyOptional: true,
    response: z.object({ id: Str, steps: z.array(Step), state: State, tokens_per_second: z.number() }),
    errors: [404, 409],
  }),
  run: route({
    method: "post",
    path: "/sessions/{id}/run",
    summary: "train in the background (202 at once): up to `steps` more steps, or to the end; progress on /events",
    params: ID,
    body: z.strictObject({ steps: z.int().min(1).max(1_000_000).nullish().describe("default: to the last step") }),
    bodyOptional: true,
    status: 202,
    response: z.object({ id: Str, state: State }),
    errors: [404, 409],
  }),
  log: route({
    method: "get",
    path: "/sessions/{id}/log",
    summary: "trainer_log.jsonl entries",
    params: ID,
    response: z.object({
      id: Str,
      entries: z.array(LogEntry),
      output: Str.optional().describe("llamafactory runs: the last 20,000 characters of its stdout and stderr"),
    }),
    errors: [404],
  }),
  events: route({
    method: "get",
    path: "/sessions/{id}/events",
    summary: "server-sent events: state, then step, eval, save, error, done (closes after done unless follow=true)",
    params: ID,
    query: z.object({ follow: z.enum(["true", "false"]).optional() }),
    sse: "always",
    response: z.union([
      State.extend({ id: Str }).describe("event: state"),
      Step.describe("event: step"),
      LogEntry.describe("event: step (llamafactory runs: the trainer_log.jsonl line)"),
      Eval.describe("event: eval"),
      z.object({ step: z.int(), checkpoint: Str }).describe("event: save"),
      z.object({
        steps: z.int(),
        global_step: z.int(),
        total_steps: z.int(),
        finished: z.boolean(),
        error: Str.optional(),
        exit_code: z.int().nullable().optional().describe("llamafactory runs: the process's exit code"),
        signal: Str.nullable().optional().describe("llamafactory runs: the signal that ended it"),
        stopped: z.boolean().optional().describe("llamafactory runs: ended by POST /sessions/{id}/stop"),
      }).describe("event: done"),
      z.object({ error: Str, global_step: z.int().optional() }).describe("event: error (a background run failed)"),
    ]),
    errors: [404, 409],
  }),
  evaluate: route({
    method: "post",
    path: "/sessions/{id}/evaluate",
    summary: "evaluate on the held-out data",
    params: ID,
    response: Eval.extend({ id: Str }),
    errors: [404, 409],
  }),
  predict: route({
    method: "post",
    path: "/sessions/{id}/predict",
    summary: "LLaMA-Factory's predict (do_predict) with the model being trained on the session's eval_dataset",
    params: ID,
    body: PredictBody,
    bodyOptional: true,
    response: z.object({
      id: Str,
      output_dir: Str,
      metrics: z.record(Str, z.number()).describe("predict_bleu-4, predict_rouge-1/2/l, predict_runtime, ..."),
      predictions: z.array(z.object({ prompt: Str, predict: Str, label: Str })),
      files: z.array(Str).describe("the files written"),
    }),
    errors: [404, 409],
  }),
  generate: route({
    method: "post",
    path: "/sessions/{id}/generate",
    summary: "chat with the model being trained (messages rendered with the session's template)",
    params: ID,
    body: GenerateBody,
    response: Generated,
    errors: [404, 409, 503],
  }),
  save: route({
    method: "post",
    path: "/sessions/{id}/save",
    summary: "write checkpoint-N and the adapter (or model) into output_dir",
    params: ID,
    response: z.object({ id: Str, step: z.int(), checkpoint: Str, output_dir: Str }),
    errors: [404, 409],
  }),
  export: route({
    method: "post",
    path: "/sessions/{id}/export",
    summary: "merge the adapter and write an HF model folder (and ONNX); or write the adapter alone",
    params: ID,
    body: z.strictObject({
      export_dir: Str,
      export_size: z.number().gt(0).nullish().describe("GB per shard (default 5)"),
      infer_dtype: z.enum(["auto", "float32", "bfloat16", "float16"]).nullish(),
      export_onnx: z.boolean().nullish().describe(
        "also write the merged model as ONNX (Optimum's layout, dynamic axes) to <export_dir>/onnx/model.onnx",
      ),
      adapter_only: z.boolean().nullish().describe("write the PEFT adapter alone (no merge)"),
    }),
    response: z.object({
      id: Str,
      export_dir: Str,
      dtype: z.enum(["f32", "bf16", "f16"]).nullable().describe("null with adapter_only"),
      export_size: z.number(),
      files: z.array(z.object({ path: Str, bytes: z.int() })).describe("the files written (paths in export_dir)"),
    }),
    errors: [404, 409],
  }),
  stop: route({
    method: "post",
    path: "/sessions/{id}/stop",
    summary: "stop a running session: a background run stops at the next step boundary and writes a checkpoint (409 " +
      "when none runs); a llamafactory run gets SIGABRT to its process tree as LlamaBoard's abort, SIGKILL after a " +
      "grace period; returns its state and the newest checkpoint",
    params: ID,
    response: z.object({ id: Str, state: State, checkpoint: Str.nullable() }),
    errors: [404, 409],
  }),
  loadChatModel: route({
    method: "post",
    path: "/chat/models",
    summary: "load a model (and adapter) for chat; its id is a `model` of /v1/chat/completions",
    body: z.strictObject({
      model_name_or_path: Str.describe("a model folder under the roots, or a hub id"),
      adapter_name_or_path: Str.nullish().describe("a PEFT adapter folder under the roots (one)"),
      template: Str.nullish().describe("chat template (default: the tokenizer's chat_template)"),
      default_system: Str.nullish(),
      executor: z.enum(["auto", "webgpu", "onnx", "reference"]).nullish(),
      infer_backend: Str.nullish().describe(
        "huggingface (Whetstone's own engine) only: vllm, sglang, ktransformers are refused",
      ),
    }),
    status: 201,
    response: ChatModelCard,
    errors: [404],
  }),
  listChatModels: route({
    method: "get",
    path: "/chat/models",
    summary: "the models loaded for chat",
    response: z.object({ models: z.array(ChatModelCard) }),
  }),
  unloadChatModel: route({
    method: "delete",
    path: "/chat/models/{id}",
    summary: "unload a chat model (after the replies in flight on it)",
    params: z.object({ id: Str.describe("chat model id") }),
    response: z.object({ deleted: Str }),
    errors: [404],
  }),
  exportModel: route({
    method: "post",
    path: "/models/export",
    summary: "merge an adapter into its model and write an HF folder (as deno task export), or copy the adapter",
    body: z.strictObject({
      model_name_or_path: Str,
      adapter_name_or_path: Str.nullish().describe("a PEFT adapter folder under the roots (one)"),
      template: Str.nullish().describe(
        "chat template written as Jinja into tokenizer_config.json and as an Ollama Modelfile (unset: the tokenizer's own)",
      ),
      export_dir: Str,
      export_size: z.number().gt(0).nullish().describe("GB per shard (default 5)"),
      infer_dtype: z.enum(["auto", "float32", "bfloat16", "float16"]).nullish(),
      export_onnx: z.boolean().nullish().describe(
        "also write the merged model as ONNX (Optimum's layout, dynamic axes) to <export_dir>/onnx/model.onnx",
      ),
      adapter_only: z.boolean().nullish().describe("write the adapter's PEFT files (and tokenizer), not merged"),
    }),
    response: z.object({
      export_dir: Str,
      model_name_or_path: Str,
      adapter_name_or_path: Str.nullable(),
      dtype: z.enum(["f32", "bf16", "f16"]).nullable().describe("null with adapter_only"),
      export_size: z.number(),
      files: z.array(z.object({ path: Str.describe("relative to export_dir"), bytes: z.int() })),
    }),
    errors: [409],
  }),
  openAiModels: route({
    method: "get",
    path: "/v1/models",
    summary: "OpenAI: the served model, the models loaded for chat, and loaded sessions",
    openai: true,
    response: z.object({
      object: z.literal("list"),
      data: z.array(z.object({ id: Str, object: z.literal("model"), created: z.int(), owned_by: Str })),
    }),
  }),
  chatCompletions: route({
    method: "post",
    path: "/v1/chat/completions",
    summary: "OpenAI: chat completion (SSE `chat.completion.chunk`s ending with [DONE] when stream is true)",
    openai: true,
    body: ChatCompletionBody,
    sse: "option",
    response: ChatCompletion,
    errors: [404, 409, 503],
  }),
} as const;

/** A route of {@link API}. */
export type AnyRoute = (typeof API)[keyof typeof API];

/**
 * `T` without string index signatures, deeply: the engine's records are interfaces, which TypeScript never lets
 * fill an index signature (a schema's `catchall` metrics), so a handler's answer is checked on the named fields
 * (and the whole answer against the schema at run time, by the tests: routes/testing.ts).
 */
export type Named<T> = T extends readonly (infer U)[] ? Named<U>[]
  : T extends object ? { [K in keyof T as string extends K ? never : K]: Named<T[K]> }
  : T;

/** The answer a route's handler gives (what the schema takes, on its named fields). */
export type Reply<R extends ApiRoute> = Named<z.input<R["response"]>>;

/** What a handler gets: the validated body and query, the path parameters. */
export interface Input<R extends ApiRoute> {
  body: R["body"] extends z.ZodType ? z.output<R["body"]> : undefined;
  query: R["query"] extends z.ZodType ? z.output<R["query"]> : undefined;
  params: R["params"] extends z.ZodType ? z.output<R["params"]> : undefined;
}

/** Hono's form of a route's path: `/sessions/:id/step`. */
export const honoPath = (r: ApiRoute): string => r.path.replace(/\{(\w+)\}/g, ":$1");

/** A route's JSON answer with its success status (typed by its schema). */
export function reply<R extends ApiRoute>(c: Context, r: R, value: Reply<R>): Response {
  return c.json(value as object, r.status ?? 200);
}

/**
 * Registers `handler` for route `r` on `app`. The body (at most `bodyLimit` bytes) and query are read and validated
 * with the route's schemas first (routes/validate.ts: a 400 naming the field); the handler returns the answer (use
 * {@linkcode reply}).
 */
export function on<R extends ApiRoute>(
  app: Hono,
  r: R,
  handler: (c: Context, input: Input<R>) => Response | Promise<Response>,
  bodyLimit = 1 << 20,
): void {
  app.on(r.method.toUpperCase(), honoPath(r), async (c) => {
    const input = {
      body: r.body ? await readBody(c, bodyLimit, r.body, r.bodyOptional) : undefined,
      query: r.query ? readQuery(c, r.query) : undefined,
      params: r.params ? c.req.param() : undefined,
    } as Input<R>;
    return await handler(c, input);
  });
}

/** The route answering `method path` (a concrete path such as `/sessions/ab12/step?x=1`), if any. */
export function routeOf(method: string, path: string): ApiRoute | undefined {
  const p = path.split("?")[0].replace(/\/+$/, "") || "/";
  return Object.values(API).find((r) =>
    r.method === method.toLowerCase() && new RegExp(`^${r.path.replace(/\{\w+\}/g, "[^/]+")}$`).test(p)
  );
}
