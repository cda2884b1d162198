/**
 * WebGPU start-up: finds an adapter, requests a device with the adapter's full limits, and probes
 * what the engine needs (limits, shader-f16 by a known-answer kernel).
 *
 * @example
 * ```ts
 * const gpu = await openGpu();
 * console.log(gpu.adapterName, gpu.f16);
 * ```
 * @module
 */

/** An opened GPU with the facts the executor and kernels use. */
export interface Gpu {
  readonly device: GPUDevice;
  readonly adapterName: string;
  readonly isFallback: boolean;
  /** shader-f16 is present and computes right. */
  readonly f16: boolean;
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
  if (adapter.features.has("shader-f16")) features.push("shader-f16");
  if (adapter.features.has("timestamp-query")) features.push("timestamp-query");
  const device = await adapter.requestDevice({ requiredLimits: want, requiredFeatures: features });
  device.addEventListener?.("uncapturederror", (ev) => {
    console.error("WebGPU error:", (ev as GPUUncapturedErrorEvent).error.message);
  });
  const info = adapter.info;
  const name = info?.description || info?.device || info?.vendor || "unknown adapter";
  const f16 = features.includes("shader-f16") && await probeF16(device);
  return {
    device,
    adapterName: name,
    isFallback: !!info?.isFallbackAdapter,
    f16,
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

/** Known-answer check: f16 math in a shader gives the f16-rounded results. */
async function probeF16(device: GPUDevice): Promise<boolean> {
  try {
    device.pushErrorScope("validation");
    const module = device.createShaderModule({
      code: `enable f16;
@group(0) @binding(0) var<storage, read_write> o: array<f32>;
@compute @workgroup_size(4) fn main(@builtin(local_invocation_id) l: vec3<u32>) {
  let x = f16(f32(l.x) + 0.333333);
  o[l.x] = f32(x * x + f16(1.0));
}`,
    });
    const pipeline = device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
    const err = await device.popErrorScope();
    if (err) return false;
    const buf = device.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
    const read = device.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const enc = device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(
      0,
      device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [{ binding: 0, resource: { buffer: buf } }],
      }),
    );
    pass.dispatchWorkgroups(1);
    pass.end();
    enc.copyBufferToBuffer(buf, 0, read, 0, 16);
    device.queue.submit([enc.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    const got = new Float32Array(read.getMappedRange().slice(0));
    read.unmap();
    buf.destroy();
    read.destroy();
    // f16(0.333333) = 0.33325195; squared in f16 then + 1, rounded to f16 steps.
    const want = [1.111, 2.777, 6.44, 12.1];
    return got.every((v, i) => Math.abs(v - want[i]) < 0.02);
  } catch {
    return false;
  }
}
