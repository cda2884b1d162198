/**
 * WebGPU start-up: finds an adapter, requests a device with the adapter's full limits and the optional
 * features the kernels use (`shader-f16`, `subgroups`, `timestamp-query`), and probes each by a
 * known-answer kernel (engine/gpu/probes.ts) before the kernels may rely on it.
 *
 * Deno's WebGPU (wgpu/naga) accepts the feature name "subgroups" and the subgroup builtins
 * (`subgroupShuffle`, `subgroupBroadcast`, `subgroupAdd`, `@builtin(subgroup_size)`,
 * `@builtin(subgroup_invocation_id)`) with no `enable subgroups;` directive — naga rejects that
 * directive as not yet implemented. `enable f16;` is required for f16 and parses only on a device
 * created with `shader-f16`.
 *
 * @example
 * ```ts
 * const gpu = await openGpu();
 * console.log(gpu.adapterName, gpu.f16);
 * ```
 * @module
 */
import { probeF16, probeSubgroups } from "./probes.ts";

/** An opened GPU with the facts the executor and kernels use. */
export interface Gpu {
  readonly device: GPUDevice;
  readonly adapterName: string;
  readonly isFallback: boolean;
  /** shader-f16 is present and computes right. */
  readonly f16: boolean;
  /** The subgroups feature is present and its builtins compute right. */
  readonly subgroups: boolean;
  /**
   * The subgroup size kernels may assume (lanes of `subgroup_invocation_id` = local invocation index
   * mod this size), 0 when subgroups are off or the adapter's size varies (subgroupMinSize ≠ max).
   */
  readonly subgroupSize: number;
  /** Optional features requested on the device. */
  readonly features: readonly string[];
  readonly limits: {
    maxBufferSize: number;
    maxStorageBufferBindingSize: number;
    minStorageBufferOffsetAlignment: number;
    maxComputeWorkgroupsPerDimension: number;
    maxComputeWorkgroupStorageSize: number;
    maxComputeInvocationsPerWorkgroup: number;
    maxStorageBuffersPerShaderStage: number;
  };
}

/** The message shown when no adapter exists: what to install, where. */
export const NO_ADAPTER_HELP = "no WebGPU adapter found. On Linux without a GPU install a software Vulkan driver: " +
  "`apt-get install mesa-vulkan-drivers` (lavapipe); with a GPU install its Vulkan driver. " +
  "Deno must run with --unstable-webgpu on older versions. The reference executor (executor: 'reference') needs no GPU.";

let cached: Promise<Gpu> | undefined;

/** Opens (once per process) the default GPU. */
export function openGpu(): Promise<Gpu> {
  cached ??= open().catch((e) => {
    cached = undefined;
    throw e;
  });
  return cached;
}

/** True when a WebGPU adapter is available (does not throw). */
export async function hasGpu(): Promise<boolean> {
  try {
    await openGpu();
    return true;
  } catch {
    return false;
  }
}

async function open(): Promise<Gpu> {
  const gpu = (globalThis.navigator as Navigator | undefined)?.gpu;
  if (!gpu) throw new Error(`navigator.gpu is missing: ${NO_ADAPTER_HELP}`);
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) throw new Error(NO_ADAPTER_HELP);
  const l = adapter.limits;
  const want = {
    maxBufferSize: l.maxBufferSize,
    maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
    maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
    maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
    maxComputeWorkgroupSizeY: l.maxComputeWorkgroupSizeY,
    maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
    maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
  };
  const features: GPUFeatureName[] = [];
  for (const f of ["shader-f16", "subgroups", "timestamp-query"] as GPUFeatureName[]) {
    if (adapter.features.has(f)) features.push(f);
  }
  const device = await adapter.requestDevice({ requiredLimits: want, requiredFeatures: features });
  device.addEventListener?.("uncapturederror", (ev) => {
    console.error("WebGPU error:", (ev as GPUUncapturedErrorEvent).error.message);
  });
  const info = adapter.info;
  const name = info?.description || info?.device || info?.vendor || "unknown adapter";
  const f16 = features.includes("shader-f16") && (await probeF16(device)).ok;
  const sizes = info as unknown as { subgroupMinSize?: number; subgroupMaxSize?: number } | undefined;
  const [lo, hi] = [sizes?.subgroupMinSize ?? 0, sizes?.subgroupMaxSize ?? 0];
  // Probe with a workgroup every size the adapter may pick divides (sizes are powers of two).
  const wg = Math.min(Math.max(hi, 32), want.maxComputeInvocationsPerWorkgroup, 128);
  const sg = features.includes("subgroups") ? await probeSubgroups(device, wg) : undefined;
  // Kernels bake the size in: only a size the adapter says is fixed (or, not saying, the one seen).
  const subgroupSize = sg?.ok && (lo === hi || !lo || !hi) && (!lo || sg.size === lo) ? sg.size : 0;
  return {
    device,
    adapterName: name,
    isFallback: !!info?.isFallbackAdapter,
    f16,
    subgroups: !!sg?.ok,
    subgroupSize,
    features,
    limits: {
      maxBufferSize: device.limits.maxBufferSize,
      maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
      minStorageBufferOffsetAlignment: device.limits.minStorageBufferOffsetAlignment,
      maxComputeWorkgroupsPerDimension: device.limits.maxComputeWorkgroupsPerDimension,
      maxComputeWorkgroupStorageSize: device.limits.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: device.limits.maxComputeInvocationsPerWorkgroup,
      maxStorageBuffersPerShaderStage: device.limits.maxStorageBuffersPerShaderStage,
    },
  };
}
