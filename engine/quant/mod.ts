/**
 * Quantized base weights in bitsandbytes' formats (NF4, FP4 with optional double quantization; int8 absmax
 * blocks): code books, blockwise quantization at load, and the stored layout the `matmul_q` op reads.
 * @module
 */
export * from "./codes.ts";
export * from "./blockwise.ts";
export * from "./weight.ts";
