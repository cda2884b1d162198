/**
 * The op definition interface and the op registry, for op authors: `defineOp`, `registerOps`, `getOp`, `opNames`
 * and their types. They are defined in graph.ts, beside the graph that infers shapes through them (the two are
 * mutually recursive, so one file holds both and this one only re-exports; it imports nothing else).
 * @module
 */
export { defineOp, getOp, opNames, registerOps } from "./graph.ts";
export type { GradContext, OpDef, RefTensor } from "./graph.ts";
