/**
 * Every third-party import of Whetstone, pinned, in one place (npm specifiers only).
 * @module
 */
export { Hono } from "npm:hono@4.13.19";
export type { Context } from "npm:hono@4.13.19";
export { Tokenizer as HfTokenizer } from "npm:@huggingface/tokenizers@0.2.0";
export { Template as JinjaTemplate } from "npm:@huggingface/jinja@0.5.11";
