/**
 * Prints, as one JSON line, what Deno's WebGPU sees on this machine: every adapter it is offered (high-performance and
 * low-power), its info, features and limits, and whether a device opens on it. Run first on a new machine:
 * `deno run -A --unstable-webgpu bench/device/probe.ts`.
 * @module
 */
async function describe(pref: GPUPowerPreference) {
  const adapter = await navigator.gpu?.requestAdapter({ powerPreference: pref });
  if (!adapter) return { powerPreference: pref, adapter: null };
  const limits: Record<string, number> = {};
  for (const k in adapter.limits) {
    const v = (adapter.limits as unknown as Record<string, unknown>)[k];
    if (typeof v === "number") limits[k] = v;
  }
  let device: string;
  try {
    const d = await adapter.requestDevice();
    device = "ok";
    d.destroy();
  } catch (e) {
    device = `failed: ${(e as Error).message}`;
  }
  const info = adapter.info;
  return {
    powerPreference: pref,
    adapter: {
      vendor: info?.vendor,
      architecture: info?.architecture,
      device: info?.device,
      description: info?.description,
      isFallbackAdapter: info?.isFallbackAdapter,
    },
    features: [...adapter.features].sort(),
    limits,
    device,
  };
}

if (import.meta.main) {
  const out = {
    probe: "webgpu",
    navigatorGpu: !!navigator.gpu,
    env: {
      VK_DRIVER_FILES: Deno.env.get("VK_DRIVER_FILES") ?? null,
      VK_ICD_FILENAMES: Deno.env.get("VK_ICD_FILENAMES") ?? null,
    },
    adapters: [await describe("high-performance"), await describe("low-power")],
  };
  console.log(JSON.stringify(out));
}
