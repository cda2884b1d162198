import assert from "node:assert/strict";
import { demoText, runDemo } from "./demo.ts";
import { TINY } from "../engine/nn/tiny.ts";
import { ReferenceExecutor } from "../engine/exec/reference.ts";
import { hasGpu } from "../engine/gpu/device.ts";
import { WebGpuExecutor } from "../engine/exec/webgpu.ts";

const small = { ...TINY, hidden: 16, heads: 2, kvHeads: 1, intermediate: 24, layers: 1, batch: 2, seq: 8 };

Deno.test("demo: the WebGPU train step follows the reference executor step for step", async () => {
  if (!(await hasGpu())) return console.warn("no WebGPU adapter: skipped");
  const quiet = () => {};
  const ref = await runDemo({ steps: 4, executor: new ReferenceExecutor(), cfg: small, log: quiet, sample: 2 });
  const gpu = await runDemo({ steps: 4, executor: await WebGpuExecutor.create(), cfg: small, log: quiet, sample: 2 });
  for (let i = 0; i < 4; i++) {
    assert.ok(Math.abs(gpu.losses[i] - ref.losses[i]) < 1e-4, `step ${i + 1}: ${gpu.losses[i]} vs ${ref.losses[i]}`);
  }
  assert.equal(gpu.sample, ref.sample);
});

Deno.test("demo: the loss falls over a short run", async () => {
  const ex = (await hasGpu()) ? await WebGpuExecutor.create() : new ReferenceExecutor();
  const res = await runDemo({ steps: 25, executor: ex, log: () => {}, sample: 1 });
  const head = res.losses.slice(0, 3).reduce((a, b) => a + b) / 3;
  const tail = res.losses.slice(-3).reduce((a, b) => a + b) / 3;
  assert.ok(tail < head - 1, `loss went from ${head} to ${tail}`);
});

Deno.test("demo: the text comes from the bundled demo dataset inside the repository", async () => {
  const { text, source } = await demoText();
  assert.equal(source, "fixtures/demo/whetstone_demo.json (100 rows)");
  assert.ok(text.startsWith("What is Whetstone?\nWhetstone is a tool"), text.slice(0, 60));
});
