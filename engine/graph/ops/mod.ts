/**
 * Every op family. Importing this module registers all ops.
 * @module
 */
export * from "./elementwise.ts";
export * from "./shape.ts";
export * from "./reduce.ts";
export * from "./matmul.ts";
