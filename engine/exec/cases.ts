/**
 * Every op family's conformance cases, gathered for the shared suite.
 * @module
 */
import type { OpCase } from "./testing/harness.ts";
import { cases as basic } from "../graph/ops/basic_cases.ts";
import { cases as attention } from "../graph/ops/attention_cases.ts";
import { cases as misc } from "../graph/ops/misc_cases.ts";
import { cases as nn } from "../graph/ops/nn_cases.ts";
import { cases as linearCe } from "../graph/ops/linear_ce_cases.ts";
import { cases as matmul } from "../graph/ops/matmul_cases.ts";
import { cases as matmulQ } from "../graph/ops/matmul_q_cases.ts";
import { cases as fusion } from "./fusion_cases.ts";
import { cases as grouped } from "../graph/ops/grouped_cases.ts";
import { cases as topk } from "../graph/ops/topk_cases.ts";

/** All conformance cases, by family. */
export const families: Record<string, OpCase[]> = {
  basic,
  attention,
  misc,
  nn,
  matmul,
  linearCe,
  matmulQ,
  fusion,
  grouped,
  topk,
};
