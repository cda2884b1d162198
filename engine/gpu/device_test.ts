import assert from "node:assert/strict";
import { hasGpu, NO_ADAPTER_HELP, openGpu } from "./device.ts";

Deno.test("device: the probe reports the adapter, its limits and a checked shader-f16 flag", async () => {
  if (!(await hasGpu())) {
    await assert.rejects(openGpu, /mesa-vulkan-drivers/);
    return;
  }
  const g = await openGpu();
  assert.ok(g.adapterName.length > 0);
  assert.equal(typeof g.f16, "boolean");
  assert.ok(g.limits.maxStorageBufferBindingSize >= 128 * 1024 * 1024);
  assert.ok(g.limits.maxComputeWorkgroupsPerDimension >= 65535);
});

Deno.test("device: the no-adapter message says what to install", () => {
  assert.match(NO_ADAPTER_HELP, /apt-get install mesa-vulkan-drivers/);
});
