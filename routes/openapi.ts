/**
 * `GET /openapi.json`: the OpenAPI 3.1 description of every route, generated from the route table (routes/api.ts)
 * whose schemas also validate the requests, so the document cannot drift from what the server takes and answers
 * (a test checks that each route of the app is described here).
 * @module
 */
import { Hono, OpenApiGeneratorV31, OpenAPIRegistry, type RouteConfig, z } from "../deps.ts";
import { API, type ApiRoute, on, reply } from "./api.ts";
import { ErrorBody, OpenAiErrorBody } from "./schemas.ts";

const DESCRIPTIONS: Record<number, string> = {
  400: "a bad request (the field is named)",
  401: "missing or wrong API key",
  404: "unknown session or model",
  409: "the session is busy, finished, or not loaded",
  413: "request body over the limit",
  503: "the chat batch and its queue are full (try again after Retry-After seconds)",
};

const json = (schema: z.ZodType) => ({ "application/json": { schema } });

/** The OpenAPI operation of a route. */
function operation(r: ApiRoute): RouteConfig {
  const events = { "text/event-stream": { schema: r.response } };
  const ok = {
    description: r.sse === "always" ? "server-sent events; each event's data is one of these" : "OK",
    content: r.sse === "always" ? events : r.sse === "option" ? { ...json(r.response), ...events } : json(r.response),
  };
  const codes = [401, ...(r.body || r.query ? [400] : []), ...(r.body ? [413] : []), ...(r.errors ?? [])];
  // The key check and the declared body size answer before any route: in the plain shape everywhere.
  const error = (code: number) =>
    !r.openai || code === 401 ? ErrorBody : code === 413 ? z.union([ErrorBody, OpenAiErrorBody]) : OpenAiErrorBody;
  return {
    method: r.method,
    path: r.path,
    summary: r.summary,
    request: {
      ...(r.params ? { params: r.params } : {}),
      ...(r.query ? { query: r.query } : {}),
      ...(r.body ? { body: { required: !r.bodyOptional, content: json(r.body) } } : {}),
    },
    responses: {
      [String(r.status ?? 200)]: ok,
      ...Object.fromEntries(
        codes.sort().map((c) => [String(c), { description: DESCRIPTIONS[c], content: json(error(c)) }]),
      ),
    },
  };
}

/** The OpenAPI document of {@link API}. */
export function openApiDocument(): Record<string, unknown> {
  const registry = new OpenAPIRegistry();
  registry.registerComponent("securitySchemes", "bearer", {
    type: "http",
    scheme: "bearer",
    description: "WHETSTONE_API_KEY, when set",
  });
  for (const r of Object.values(API)) registry.registerPath(operation(r));
  const doc = new OpenApiGeneratorV31(registry.definitions).generateDocument({
    openapi: "3.1.0",
    info: {
      title: "Whetstone",
      version: "1",
      description: "Fine-tune LLMs step by step over HTTP: sessions take LLaMA-Factory's training arguments.",
    },
    security: [{ bearer: [] }],
  });
  return JSON.parse(JSON.stringify(doc));
}

/** The OpenAPI document. */
export const OPENAPI: Record<string, unknown> = openApiDocument();

/** The OpenAPI route. */
export function openApiRoutes(): Hono {
  const r = new Hono();
  on(r, API.openapi, (c) => reply(c, API.openapi, OPENAPI as z.input<typeof API.openapi.response>));
  return r;
}
