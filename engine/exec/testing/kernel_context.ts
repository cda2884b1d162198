/**
 * A kernel context for tests that generate WGSL without a device: a software adapter's limits (lavapipe's), f32 only,
 * nothing tuned unless given.
 * @module
 */
import type { KernelContext } from "../../../kernels/kernel.ts";

/** The context (see the module doc), with `tuned` entries when given. */
export function softwareKernelContext(tuned: KernelContext["tuned"] = new Map()): KernelContext {
  return { f16: false, maxWorkgroupsPerDim: 65535, maxWorkgroupStorage: 16384, maxInvocations: 256, tuned };
}
