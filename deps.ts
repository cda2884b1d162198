/**
 * Every third-party import of Whetstone, pinned, in one place (npm specifiers only).
 * @module
 */
export { Hono } from "npm:hono@4.13.19";
export type { Context } from "npm:hono@4.13.19";
