/**
 * Every third-party import of Whetstone, pinned, in one place (npm specifiers only).
 * @module
 */
export { Hono } from "npm:hono@4.13.19";
export type { Context } from "npm:hono@4.13.19";
export { z } from "npm:zod@4.6.7";
/** OpenAPI documents from zod schemas (routes/openapi.ts). */
export { OpenApiGeneratorV31, OpenAPIRegistry } from "npm:@asteasolutions/zod-to-openapi@9.1.0";
export type { RouteConfig } from "npm:@asteasolutions/zod-to-openapi@9.1.0";
export { Tokenizer as HfTokenizer } from "npm:@huggingface/tokenizers@0.2.0";
export { Template as JinjaTemplate } from "npm:@huggingface/jinja@0.5.11";
export { parse as parseCsv } from "npm:csv-parse@7.0.3/sync";
export { parquetMetadataAsync, parquetReadObjects } from "npm:hyparquet@1.33.0";
export type { AsyncBuffer as ParquetAsyncBuffer } from "npm:hyparquet@1.33.0";
export { compressors as parquetCompressors } from "npm:hyparquet-compressors@1.1.2";
/** Tests only: writes the parquet files the data tests read. */
export { parquetWriteBuffer } from "npm:hyparquet-writer@0.17.0";
export { parse as parseYaml, stringify as stringifyYaml } from "npm:yaml@2.8.1";
/** onnxruntime-node, loaded on first use (its native library is large): the ONNX Runtime executor. */
export const loadOrt = (): Promise<typeof import("npm:onnxruntime-node@1.30.0")> =>
  // deno-lint-ignore no-import-prefix -- deps.ts is where the specifiers live; this one is loaded lazily
  import("npm:onnxruntime-node@1.30.0");
export type * as Ort from "npm:onnxruntime-node@1.30.0";
/** Tests only, loaded on first use: the official OpenAI client (routes/batching_test.ts talks to the server with it). */
export const loadOpenAi = (): Promise<typeof import("npm:openai@7.60.0")> =>
  // deno-lint-ignore no-import-prefix -- deps.ts is where the specifiers live; this one is loaded lazily
  import("npm:openai@7.60.0");
/** jieba-wasm (jieba-rs), loaded on first use (its dictionary takes ~0.5 s): word segmentation for the ROUGE metrics. */
export const loadJieba = (): Promise<typeof import("npm:jieba-wasm@2.4.0")> =>
  // deno-lint-ignore no-import-prefix -- deps.ts is where the specifiers live; this one is loaded lazily
  import("npm:jieba-wasm@2.4.0");
/** Tests only: puppeteer-core, loaded on first use, drives headless Chromium in the Board's browser tests. */
export const loadPuppeteer = (): Promise<typeof import("npm:puppeteer-core@25.16.0")> =>
  // deno-lint-ignore no-import-prefix -- deps.ts is where the specifiers live; this one is loaded lazily
  import("npm:puppeteer-core@25.16.0");
export type { Browser, ElementHandle, Page } from "npm:puppeteer-core@25.16.0";
/**
 * Tests only: transformers.js (@huggingface/transformers), loaded on first use, to check that an ONNX export opens
 * in the ecosystem's runtime (engine/nn/onnx_transformers_js_test.ts). Its onnxruntime-node is the one above.
 */
export const loadTransformersJs = (): Promise<typeof import("npm:@huggingface/transformers@4.3.2")> =>
  // deno-lint-ignore no-import-prefix -- deps.ts is where the specifiers live; this one is loaded lazily
  import("npm:@huggingface/transformers@4.3.2");
