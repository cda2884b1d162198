/**
 * The API's types by method and concrete path, for typed clients (notebooks/whetstone.ts): `AnswerOf<"post",
 * \`/sessions/${id}/step\`>` is the step route's answer, read off the route table (routes/api.ts) by matching the
 * path's segments against the routes' (`{id}` matches any one segment; a `?query` is ignored).
 * @module
 */
import type { z } from "../deps.ts";
import type { AnyRoute } from "./api.ts";

/** A request method of the API. */
export type Method = AnyRoute["method"];

type Split<S extends string> = S extends `${infer H}/${infer R}` ? [H, ...Split<R>] : [S];
type Segment<A, B> = B extends `{${string}}` ? (A extends "" ? false : true) : A extends B ? true : false;
type Match<A extends string[], B extends string[]> = A extends [infer a, ...infer ar extends string[]]
  ? B extends [infer b, ...infer br extends string[]] ? Segment<a, b> extends true ? Match<ar, br> : false : false
  : B extends [] ? true
  : false;
type NoQuery<P extends string> = P extends `${infer Q}?${string}` ? Q : P;
type Pattern<P extends string> = P extends `${infer A}{${string}}${infer B}` ? `${A}${string}${Pattern<B>}` : P;

/** The JSON routes of `M` (server-sent event streams left out). */
type JsonRoutes<M extends Method> = Exclude<Extract<AnyRoute, { method: M }>, { sse: "always" }>;

/** The paths a client may ask with `M`: the routes' paths with any parameter values, and any query. */
export type PathOf<M extends Method> =
  | Pattern<JsonRoutes<M>["path"]>
  | `${Pattern<JsonRoutes<M>["path"]>}?${string}`;

/** The route answering `M P`. */
export type RouteOf<M extends Method, P extends string> = {
  [K in JsonRoutes<M>["path"]]: Match<Split<NoQuery<P>>, Split<K>> extends true ? Extract<JsonRoutes<M>, { path: K }>
    : never;
}[JsonRoutes<M>["path"]];

/** The parsed JSON answer of `M P`. */
export type AnswerOf<M extends Method, P extends string> = z.output<RouteOf<M, P>["response"]>;

/** The JSON body `M P` takes (undefined for a route without one). */
export type BodyOf<M extends Method, P extends string> = RouteOf<M, P> extends { body: infer B extends z.ZodType }
  ? z.input<B>
  : undefined;
