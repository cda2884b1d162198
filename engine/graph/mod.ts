/**
 * The graph API: tracing, ops, autodiff. Importing this module registers every op.
 * @module
 */
export * from "./types.ts";
export { completeFeeds, Graph, graphOf, Tensor } from "./graph.ts";
export { getOp, opNames } from "./op.ts";
export type { GradContext, OpDef, RefTensor } from "./op.ts";
export { backward } from "./autodiff.ts";
export * from "./ops/mod.ts";
