/**
 * Every op family's conformance cases, gathered for the shared suite.
 * @module
 */
import type { OpCase } from "./testing/harness.ts";
import { cases as basic } from "../graph/ops/basic_cases.ts";

/** All conformance cases, by family. */
export const families: Record<string, OpCase[]> = {
  basic,
};
