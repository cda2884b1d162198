/**
 * Choosing an executor by name. `auto` takes WebGPU on a hardware adapter and ONNX Runtime where the only
 * adapter is a software one (lavapipe, SwiftShader, WARP: WGSL there runs at 20–36 GFLOPS while the CPU's
 * own kernels reach ~250) or where there is no adapter at all; it says what it chose and why.
 *
 * @example
 * ```ts
 * const ex = await createExecutor("auto"); // "onnx" on a machine without a GPU
 * ```
 * @module
 */
import { hasGpu, openGpu } from "../gpu/device.ts";
import type { Executor } from "./executor.ts";
import { OnnxExecutor } from "./onnx/executor.ts";
import { ReferenceExecutor } from "./reference.ts";
import { WebGpuExecutor } from "./webgpu.ts";

/** Executor names accepted by YAML (`executor:`), the API and `loadModel`. */
export const EXECUTOR_KINDS = ["auto", "webgpu", "onnx", "reference"] as const;
/** One of {@link EXECUTOR_KINDS}. */
export type ExecutorKind = typeof EXECUTOR_KINDS[number];

/** Adapter names of known software rasterizers (used when the adapter does not say isFallbackAdapter). */
const SOFTWARE = /llvmpipe|lavapipe|swiftshader|warp|software|softpipe/i;

/** What `auto` resolves to on this machine, and why. */
export async function autoExecutorKind(): Promise<{ kind: "webgpu" | "onnx"; reason: string }> {
  if (!(await hasGpu())) return { kind: "onnx", reason: "no WebGPU adapter" };
  const gpu = await openGpu();
  if (gpu.isFallback || SOFTWARE.test(gpu.adapterName)) {
    return { kind: "onnx", reason: `the WebGPU adapter "${gpu.adapterName}" is a software one` };
  }
  return { kind: "webgpu", reason: `hardware adapter "${gpu.adapterName}"` };
}

/**
 * An executor by name (default "auto"). `log` receives one line saying which executor `auto` chose and why.
 */
export async function createExecutor(kind: ExecutorKind = "auto", log?: (line: string) => void): Promise<Executor> {
  if (!EXECUTOR_KINDS.includes(kind)) {
    throw new Error(`executor must be one of ${EXECUTOR_KINDS.join(", ")}, got "${kind}"`);
  }
  if (kind === "reference") return new ReferenceExecutor();
  if (kind === "onnx") return await OnnxExecutor.create();
  if (kind === "webgpu") return await WebGpuExecutor.create();
  const auto = await autoExecutorKind();
  log?.(`executor: ${auto.kind} (auto: ${auto.reason})`);
  return auto.kind === "onnx" ? await OnnxExecutor.create() : await WebGpuExecutor.create();
}
