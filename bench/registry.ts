/**
 * Every benchmark, in the order `deno task bench` runs them. Each lives in its own file.
 * @module
 */
import type { Bench } from "./report.ts";
import { attentionBench } from "./attention.ts";
import { matmulBench } from "./matmul.ts";
import { dispatchBench } from "./dispatch.ts";
import { modelBench } from "./model.ts";
import { moeBench } from "./moe.ts";
import { trainBench } from "./train.ts";
import { dataBench } from "./data.ts";
import { decodeBench } from "./decode.ts";
import { memoryBench } from "./memory.ts";
import { quantBench } from "./quant.ts";
import { e2eBench } from "./e2e.ts";
import { onnxCompileBench } from "./onnx_compile.ts";
import { scaleBench } from "./scale.ts";
import { serveBench } from "./serve.ts";

/** The benchmarks. */
export const benches: Bench[] = [
  attentionBench,
  matmulBench,
  dispatchBench,
  modelBench,
  moeBench,
  dataBench,
  trainBench,
  decodeBench,
  memoryBench,
  quantBench,
  e2eBench,
  onnxCompileBench,
  scaleBench,
  serveBench,
];
