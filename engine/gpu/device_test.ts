import assert from "node:assert/strict";
import { hasGpu, NO_ADAPTER_HELP, openGpu } from "./device.ts";
import { probeF16, probeSubgroups } from "./probes.ts";

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

Deno.test("device: shader-f16 and subgroups are used only where requested and their probes pass", async () => {
  if (!(await hasGpu())) return;
  const g = await openGpu();
  assert.equal(typeof g.subgroups, "boolean");
  if (g.f16) assert.ok(g.features.includes("shader-f16"));
  if (g.subgroupSize) assert.ok(g.subgroups && g.features.includes("subgroups"));
  const sg = await probeSubgroups(g.device, 64);
  assert.equal(sg.ok, g.subgroups, `subgroup probe: ${sg.why}`);
  if (g.subgroupSize) assert.equal(sg.size, g.subgroupSize);
  if (!g.features.includes("subgroups")) assert.match(sg.why ?? "", /SUBGROUP|subgroup/i); // refused, and says why
  const f16 = await probeF16(g.device);
  assert.equal(f16.ok, g.f16, `f16 probe: ${f16.why}`);
  if (!g.features.includes("shader-f16")) assert.match(f16.why ?? "", /f16/);
});
