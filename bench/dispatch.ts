/**
 * Bench "dispatch": what the engine pays per dispatch and per submit, the two costs its
 * plan-and-replay design is built around.
 * - `dispatch`: one tiny dispatch, from many (1000) encoded in one compute pass and one submit, less
 *   the cost of a submit with one dispatch, divided by the extra dispatches;
 * - `submit_wait`: submit one tiny dispatch and wait for `onSubmittedWorkDone`;
 * - `submit_readback`: submit one tiny dispatch plus a 4-byte copy and map it (what a step that reads
 *   back its loss waits for).
 * Each is the median of several repetitions, in ms.
 * @module
 */
import type { Bench, Measurement } from "./report.ts";
import { openGpu } from "../engine/gpu/device.ts";

const MANY = 1000;

/** The dispatch bench. */
export const dispatchBench: Bench = {
  name: "dispatch",
  description: `cost of one dispatch (${MANY} tiny dispatches a submit) and of submit round trips, ms`,
  async *run(): AsyncIterable<Measurement> {
    const { device: dev, adapterName } = await openGpu();
    const module = dev.createShaderModule({
      code: `@group(0) @binding(0) var<storage, read_write> o: array<f32>;
@compute @workgroup_size(1) fn main() { o[0] = o[0] + 1.0; }`,
    });
    const pipeline = dev.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
    const buf = dev.createBuffer({ size: 16, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
    const read = dev.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const bind = dev.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [{ binding: 0, resource: { buffer: buf } }],
    });
    const submit = async (dispatches: number, readback = false) => {
      const t0 = performance.now();
      const enc = dev.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bind);
      for (let i = 0; i < dispatches; i++) pass.dispatchWorkgroups(1);
      pass.end();
      if (readback) enc.copyBufferToBuffer(buf, 0, read, 0, 16);
      dev.queue.submit([enc.finish()]);
      if (readback) {
        await read.mapAsync(GPUMapMode.READ);
        read.unmap();
      } else {
        await dev.queue.onSubmittedWorkDone();
      }
      return performance.now() - t0;
    };
    const median = async (reps: number, f: () => Promise<number>) => {
      await f();
      const ts: number[] = [];
      for (let i = 0; i < reps; i++) ts.push(await f());
      ts.sort((a, b) => a - b);
      return ts[reps >> 1];
    };
    const params = { adapter: adapterName };
    const one = await median(21, () => submit(1));
    const many = await median(7, () => submit(MANY));
    const r = (x: number) => Math.round(x * 1e4) / 1e4;
    yield {
      bench: "dispatch",
      metric: "dispatch",
      value: r(Math.max(0, many - one) / (MANY - 1)),
      unit: "ms",
      dispatches: MANY,
      ...params,
    };
    yield { bench: "dispatch", metric: "submit_wait", value: r(one), unit: "ms", ...params };
    yield {
      bench: "dispatch",
      metric: "submit_readback",
      value: r(await median(21, () => submit(1, true))),
      unit: "ms",
      ...params,
    };
    buf.destroy();
    read.destroy();
  },
};
