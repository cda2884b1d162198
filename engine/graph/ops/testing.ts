/**
 * Test helper: the shape of an op conformance case. The cases live beside their ops (`*_cases.ts`); the harness
 * that runs them on every executor is engine/exec/testing/harness.ts.
 * @module
 */
import type { DType, Tensor } from "../mod.ts";

/** One operand of a case. */
export interface Operand {
  shape: number[];
  dtype?: DType;
  /** Fixed data; else uniform random in `range` (integers for i32/u32). */
  data?: number[];
  range?: [number, number];
  /** Differentiate w.r.t. this operand (float only). */
  grad?: boolean;
}

/** One conformance case. */
export interface OpCase {
  name: string;
  operands: Record<string, Operand>;
  build: (t: Record<string, Tensor>) => Tensor | Tensor[];
  /** Max abs error allowed, relative to max(1, max |reference|), for f32 executors (default 1e-4). */
  tol?: number;
  /** Finite-difference relative tolerance (default 1e-5). */
  fdTol?: number;
  /** Finite-difference step (default 1e-5). */
  fdEps?: number;
  /** Skip the finite-difference check (e.g. non-smooth at sampled points). */
  noFd?: boolean;
}
