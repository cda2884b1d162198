/**
 * The lowering table: op name → WGSL lowering, gathered from every kernel family.
 * @module
 */
import type { Lowering } from "./kernel.ts";
import { lowerings as elementwise } from "./elementwise.ts";
import { lowerings as reduce } from "./reduce.ts";
import { lowerings as matmul } from "./matmul.ts";
import { lowerings as attention } from "./attention.ts";
import { lowerings as embedding } from "./embedding.ts";
import { lowerings as rope } from "./rope.ts";
import { lowerings as dropout } from "./dropout.ts";
import { lowerings as optim } from "./optim.ts";
import { lowerings as optim8 } from "./optim8.ts";
import { lowerings as norm } from "./norm.ts";
import { lowerings as activation } from "./activation.ts";
import { lowerings as softmax } from "./softmax.ts";
import { lowerings as cast } from "./cast.ts";
import { lowerings as linearCe } from "./linear_ce.ts";
import { lowerings as assign } from "./assign.ts";
import { lowerings as scatter } from "./scatter.ts";
import { lowerings as matmulQ } from "./matmul_q.ts";
import { lowerings as grouped } from "./grouped.ts";
import { lowerings as topk } from "./topk.ts";
import { segmentedMatmul } from "./matmul_segmented.ts";

const table: Record<string, Lowering> = {
  ...elementwise,
  ...reduce,
  ...matmul,
  ...attention,
  ...embedding,
  ...rope,
  ...dropout,
  ...optim,
  ...optim8,
  ...norm,
  ...activation,
  ...softmax,
  ...cast,
  ...linearCe,
  ...assign,
  ...scatter,
  ...matmulQ,
  ...grouped,
  ...topk,
  // The tuned matmul, or by blocks when its 2-D weight is stored in segments (kernels/segments.ts).
  matmul: segmentedMatmul as Lowering,
};

/** The WGSL lowering of `op`; throws naming the op when no kernel exists for it. */
export function lowering(op: string): Lowering {
  const l = table[op];
  if (!l) throw new Error(`no WebGPU kernel for op "${op}"`);
  return l;
}

/** Ops that have a WebGPU kernel. */
export function loweredOps(): string[] {
  return Object.keys(table);
}
