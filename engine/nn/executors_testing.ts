/**
 * The executors the model tests run on: the f64 reference, WebGPU when an adapter is there, and ONNX Runtime — each
 * as a name and a maker (a fresh executor per model).
 * @module
 */
import { ReferenceExecutor } from "../exec/reference.ts";
import { WebGpuExecutor } from "../exec/webgpu.ts";
import { OnnxExecutor } from "../exec/onnx/executor.ts";
import type { Executor } from "../exec/executor.ts";
import { hasGpu } from "../gpu/device.ts";

const gpu = await hasGpu();

/** `[name, make]` for reference, webgpu (when there is an adapter) and onnx, in that order. */
export function executors(): [string, () => Promise<Executor>][] {
  const list: [string, () => Promise<Executor>][] = [["reference", () => Promise.resolve(new ReferenceExecutor())]];
  if (gpu) list.push(["webgpu", () => WebGpuExecutor.create()]);
  list.push(["onnx", () => OnnxExecutor.create()]);
  return list;
}
