/**
 * Every op family. Importing this module registers all ops.
 * @module
 */
export * from "./elementwise.ts";
export * from "./shape.ts";
export * from "./reduce.ts";
export * from "./matmul.ts";
export * from "./attention.ts";
export * from "./cast.ts";
export * from "./norm.ts";
export * from "./activation.ts";
export * from "./softmax.ts";
export * from "./embedding.ts";
export * from "./rope.ts";
export * from "./dropout.ts";
export * from "./optim.ts";
export * from "./optim8.ts";
export * from "./linear_ce.ts";
export * from "./assign.ts";
export * from "./scatter.ts";
export * from "./matmul_q.ts";
export * from "./stop_gradient.ts";
export * from "./grouped.ts";
export * from "./topk.ts";
