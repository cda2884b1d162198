/**
 * The op conformance suite: every case of every family, on every executor.
 * - reference: gradient rules checked by finite differences (f64).
 * - webgpu: values and gradients checked against the reference (f32 tolerance per case).
 * - onnx: the same, on onnxruntime-node (each case lowered to an ONNX model).
 */
import { families } from "./cases.ts";
import { checkAgainstReference, checkFiniteDifferences } from "./testing/harness.ts";
import { WebGpuExecutor } from "./webgpu.ts";
import { hasGpu } from "../gpu/device.ts";
import { OnnxExecutor } from "./onnx/executor.ts";

const gpu = await hasGpu();
if (!gpu) console.warn("conformance: no WebGPU adapter, the webgpu executor cases are skipped");

for (const [family, cases] of Object.entries(families)) {
  Deno.test(`conformance/${family}: finite differences on the reference`, async (t) => {
    for (const c of cases) await t.step(c.name, () => checkFiniteDifferences(c));
  });
  Deno.test({
    name: `conformance/${family}: webgpu matches the reference`,
    ignore: !gpu,
    fn: async (t) => {
      const ex = await WebGpuExecutor.create();
      for (const c of cases) await t.step(c.name, () => checkAgainstReference(ex, c));
      ex.dispose();
    },
  });
  Deno.test(`conformance/${family}: onnx matches the reference`, async (t) => {
    const ex = await OnnxExecutor.create({ threads: 1 });
    for (const c of cases) await t.step(c.name, () => checkAgainstReference(ex, c));
    ex.dispose();
  });
}
