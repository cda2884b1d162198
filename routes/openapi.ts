/**
 * `GET /openapi.json`: the OpenAPI 3.1 description of every route (a test checks that each route of the app is
 * described here).
 * @module
 */
import { Hono } from "../deps.ts";

type Schema = Record<string, unknown>;
const obj = (properties: Record<string, Schema>, required: string[] = []): Schema => ({
  type: "object",
  properties,
  ...(required.length ? { required } : {}),
});
const str = (description?: string): Schema => ({ type: "string", ...(description ? { description } : {}) });
const int = (description?: string): Schema => ({ type: "integer", ...(description ? { description } : {}) });
const num = (description?: string): Schema => ({ type: "number", ...(description ? { description } : {}) });
const bool = (description?: string): Schema => ({ type: "boolean", ...(description ? { description } : {}) });
const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: Schema) => ({ content: { "application/json": { schema } } });
const ID = [{ name: "id", in: "path", required: true, schema: str("session id") }];

function op(summary: string, o: { body?: Schema; params?: unknown[]; sse?: boolean; codes?: number[] } = {}) {
  const responses: Record<string, unknown> = {
    "200": o.sse
      ? { description: "server-sent events", content: { "text/event-stream": { schema: str() } } }
      : { description: "OK", ...json({ type: "object" }) },
  };
  for (const code of [401, ...(o.body ? [400, 413] : []), ...(o.codes ?? [])]) {
    responses[String(code)] = { description: DESCRIPTIONS[code], ...json(ref("Error")) };
  }
  return {
    summary,
    ...(o.params ? { parameters: o.params } : {}),
    ...(o.body ? { requestBody: { required: true, ...json(o.body) } } : {}),
    responses,
  };
}

const DESCRIPTIONS: Record<number, string> = {
  400: "a bad request (the field is named)",
  401: "missing or wrong API key",
  404: "unknown session or model",
  409: "the session is busy, finished, or not loaded",
  413: "request body over the limit",
};

const GENERATING = {
  do_sample: bool(),
  temperature: num("0: greedy"),
  top_p: num(),
  top_k: int(),
  max_new_tokens: int(),
  repetition_penalty: num(),
  stop: { oneOf: [str(), { type: "array", items: str() }] },
  seed: int(),
};

const MESSAGES = {
  type: "array",
  items: obj({ role: { enum: ["system", "user", "assistant", "function", "tool"] }, content: {} }, ["role"]),
  description: "an optional system message, then user/assistant turns alternating, ending with a user (or tool) turn",
};

/** The OpenAPI document. */
export const OPENAPI: Record<string, unknown> = {
  openapi: "3.1.0",
  info: {
    title: "Whetstone",
    version: "1",
    description: "Fine-tune LLMs step by step over HTTP: sessions take LLaMA-Factory's training arguments.",
  },
  components: {
    securitySchemes: { bearer: { type: "http", scheme: "bearer", description: "WHETSTONE_API_KEY, when set" } },
    schemas: {
      Error: obj(
        { error: str(), field: str("the request field at fault"), problems: { type: "array", items: str() } },
        [
          "error",
        ],
      ),
      TrainArgs: {
        type: "object",
        description: "LLaMA-Factory's YAML keys (model_name_or_path, stage, finetuning_type, dataset, dataset_dir, " +
          "template, cutoff_len, max_samples, output_dir, learning_rate, max_steps, ...); `config` names a YAML " +
          "file whose keys the others override",
        additionalProperties: true,
      },
    },
  },
  security: [{ bearer: [] }],
  paths: {
    "/health": { get: op("server health, runtime versions, compute adapter") },
    "/openapi.json": { get: op("this document") },
    "/v1/device": { get: op("the compute device and its limits") },
    "/models": { get: op("model folders and adapters under the roots") },
    "/datasets": {
      get: op("entries of dataset_info.json", { params: [{ name: "dataset_dir", in: "query", schema: str() }] }),
    },
    "/datasets/preview": {
      post: op("first examples, normalized and tokenized with trained/masked spans", {
        body: { ...ref("TrainArgs"), description: "training arguments (dataset, model_name_or_path, ...) and n" },
      }),
    },
    "/sessions": {
      get: op("sessions (loaded or recorded)"),
      post: op("create a session: loads model, tokenizer and data; returns its id and plan", {
        body: ref("TrainArgs"),
        codes: [409],
      }),
    },
    "/sessions/{id}": {
      get: op("a session with its plan and arguments", { params: ID, codes: [404] }),
      delete: op("forget a session (its files stay)", { params: ID, codes: [404, 409] }),
    },
    "/sessions/{id}/resume": {
      post: op("load a recorded session from its latest checkpoint", { params: ID, codes: [404, 409] }),
    },
    "/sessions/{id}/step": {
      post: op("run N optimizer steps; returns each step's loss, lr, grad norm and throughput", {
        params: ID,
        body: obj({ steps: int("default 1") }),
        codes: [404, 409],
      }),
    },
    "/sessions/{id}/log": { get: op("trainer_log.jsonl entries", { params: ID, codes: [404] }) },
    "/sessions/{id}/events": {
      get: op("server-sent events: state, then step, eval, save, done (closes after done unless follow=true)", {
        params: [...ID, { name: "follow", in: "query", schema: str() }],
        sse: true,
        codes: [404, 409],
      }),
    },
    "/sessions/{id}/evaluate": { post: op("evaluate on the held-out data", { params: ID, codes: [404, 409] }) },
    "/sessions/{id}/generate": {
      post: op("chat with the model being trained (messages rendered with the session's template)", {
        params: ID,
        body: obj({ messages: MESSAGES, tools: { type: "array" }, ...GENERATING }, ["messages"]),
        codes: [404, 409],
      }),
    },
    "/sessions/{id}/save": {
      post: op("write checkpoint-N and the adapter (or model) into output_dir", { params: ID, codes: [404, 409] }),
    },
    "/sessions/{id}/export": {
      post: op("merge the adapter and write an HF model folder", {
        params: ID,
        body: obj({ export_dir: str(), export_size: num("GB per shard"), infer_dtype: str() }, ["export_dir"]),
        codes: [404, 409],
      }),
    },
    "/v1/models": { get: op("OpenAI: the served model and loaded sessions") },
    "/v1/chat/completions": {
      post: op("OpenAI: chat completion (SSE chunks ending with [DONE] when stream is true)", {
        body: obj({
          model: str("a session id, or the served model"),
          messages: MESSAGES,
          tools: { type: "array" },
          do_sample: bool(),
          temperature: num(),
          top_p: num(),
          n: int(),
          presence_penalty: num("used as repetition_penalty (LLaMA-Factory's rule)"),
          max_tokens: int(),
          stop: { oneOf: [str(), { type: "array", items: str() }] },
          stream: bool(),
          seed: int(),
        }, ["model", "messages"]),
        codes: [404, 409],
      }),
    },
  },
};

/** The OpenAPI route. */
export function openApiRoutes(): Hono {
  const r = new Hono();
  r.get("/openapi.json", (c) => c.json(OPENAPI));
  return r;
}
