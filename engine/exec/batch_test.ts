import assert from "node:assert/strict";
import { add, exp, Graph, matmul, mul, sum } from "../graph/mod.ts";
import { batchLaunches, type PendingLaunch } from "./batch.ts";
import { fitsThreads, parseKernel } from "../../kernels/merge.ts";
import { lowering } from "../../kernels/mod.ts";
import { softwareKernelContext } from "./testing/kernel_context.ts";
import { hasGpu } from "../gpu/device.ts";
import { WebGpuExecutor } from "./webgpu.ts";
import { ReferenceExecutor } from "./reference.ts";

const ctx = softwareKernelContext();
const lim = { maxBindings: 16, maxWorkgroupStorage: 16384, maxWorkgroupsPerDim: 65535 };

/** An `add` launch over n elements reading ranges a, b of buffer `buf` and writing range o. */
function addLaunch(buf: object, a: number, b: number, o: number, n = 64): PendingLaunch<object> {
  const t = { shape: [n], dtype: "f32" as const };
  const [l] = lowering("add")({ inputs: [t, t], outputs: [t], attrs: {} }, ctx).launches;
  const r = (off: number) => ({ buffer: buf, offset: off, size: n * 4 });
  return { code: l.code, workgroups: l.workgroups, ranges: [r(a), r(b), r(o)], written: [false, false, true] };
}

Deno.test("merge: the standard kernels parse; other entry points and builtins do not", () => {
  const k = parseKernel(addLaunch({}, 0, 256, 512).code)!;
  assert.deepEqual(k.size, [256, 1, 1]);
  assert.deepEqual(k.bindings.map((b) => b.name), ["in0", "in1", "out"]);
  assert.equal(parseKernel("@compute @workgroup_size(1) fn other() {}", "other"), undefined);
  const gid = `@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) g: vec3<u32>) { x[g.x] = 1.0; }`;
  assert.equal(parseKernel(gid), undefined);
});

Deno.test("batch: independent launches merge; a dependent one keeps its place", () => {
  const buf = {};
  // 0: c = a + b; 1: d = a + b (independent); 2: e = c + d (reads both); 3: f = a + a (independent of all)
  const ls = [addLaunch(buf, 0, 256, 512), addLaunch(buf, 0, 256, 768), addLaunch(buf, 512, 768, 1024)];
  ls.push(addLaunch(buf, 0, 0, 1280));
  const out = batchLaunches(ls, lim);
  assert.equal(out.length, 2);
  assert.ok(out[0].code.includes("main_m2"), "launches 0, 1 and 3 run as one dispatch");
  assert.equal(out[1], ls[2]);
  // shared bytes are bound once: a, b, and the three outputs
  assert.equal(out[0].ranges.length, 5);
});

Deno.test("batch: a launch never moves past one that writes what it reads (or reads what it writes)", () => {
  const buf = {};
  // 0: c = a + b; 1: a' = c + c writes a's bytes; 2: d = a + b must not join launch 0's batch past launch 1
  const ls = [addLaunch(buf, 0, 256, 512), addLaunch(buf, 512, 512, 0), addLaunch(buf, 0, 256, 768)];
  const out = batchLaunches(ls, lim);
  assert.deepEqual(out, ls);
});

Deno.test("batch: launches marked alone (segmented nodes) are never merged, and later ones still respect them", () => {
  const buf = {};
  const alone = { ...addLaunch(buf, 0, 256, 512), alone: true };
  // 0 alone; 1 independent of 0 (but 0 is not merged); 2 independent too: 1 and 2 merge with each other only.
  const ls = [alone, addLaunch(buf, 0, 256, 768), addLaunch(buf, 0, 256, 1024)];
  const out = batchLaunches(ls, lim);
  assert.equal(out.length, 2);
  assert.equal(out[0], alone);
  assert.ok(out[1].code.includes("main_m1"));
  // A launch reading what the lone one writes keeps its place after it.
  const dep = [addLaunch(buf, 0, 256, 768), alone, addLaunch(buf, 512, 512, 1024)];
  assert.deepEqual(batchLaunches(dep, lim), dep);
});

Deno.test("batch: the bindings limit caps a batch", () => {
  const buf = {};
  const ls = Array.from({ length: 6 }, (_, i) => addLaunch(buf, 2048 * i, 2048 * i + 256, 2048 * i + 512));
  const out = batchLaunches(ls, { ...lim, maxBindings: 6 });
  assert.equal(out.length, 3);
  for (const l of out) assert.ok(l.ranges.length <= 6);
});

Deno.test("batch: kernels without barriers share bigger workgroups; kernels with barriers need their own size", () => {
  const buf = {};
  const ew = addLaunch(buf, 0, 256, 512);
  // a register-block matmul (8 threads a workgroup, no barriers) and a workgroup-tree sum (256 threads, barriers)
  const a = { shape: [16, 16], dtype: "f32" as const };
  const [mm] = lowering("matmul")({ inputs: [a, a], outputs: [a], attrs: {} }, ctx).launches;
  const big = { shape: [4000], dtype: "f32" as const };
  const [red] = lowering("sum")({ inputs: [big], outputs: [{ shape: [], dtype: "f32" }], attrs: { axes: [0] } }, ctx)
    .launches;
  const r = (off: number, n: number) => ({ buffer: buf, offset: off, size: n * 4 });
  const mmL = { ...mm, ranges: [r(4096, 256), r(8192, 256), r(12288, 256)], written: [false, false, true] };
  const redL = { ...red, ranges: [r(16384, 4000), r(40000, 1)], written: [false, true] };
  assert.equal(parseKernel(mm.code)!.uniform, false);
  assert.equal(parseKernel(red.code)!.uniform, true);
  const out = batchLaunches([mmL, ew, redL], lim);
  assert.equal(out.length, 1);
  assert.ok(out[0].code.includes("@workgroup_size(256)"));
  // the 8-thread matmul's one workgroup packs into one merged workgroup
  assert.equal(out[0].workgroups[0], 1 + ew.workgroups[0] + red.workgroups[0]);
  // a 64-thread kernel with barriers cannot run inside 256-thread workgroups
  const tiled = { ...parseKernel(red.code)!, size: [64, 1, 1] as const };
  assert.equal(fitsThreads([tiled, parseKernel(ew.code)!], 256), false);
  assert.equal(fitsThreads([parseKernel(mm.code)!, parseKernel(ew.code)!], 256), true);
});

Deno.test({
  name: "batch: merged dispatches on webgpu give the reference's results",
  ignore: !(await hasGpu()),
  fn: async () => {
    const g = new Graph();
    const xs = [0, 1, 2, 3].map((i) => g.param(`x${i}`, [37, 5]));
    const w = g.param("w", [5, 9]);
    xs.forEach((x, i) => {
      g.output(`s${i}`, sum(mul(x, x)));
      g.output(`m${i}`, exp(mul(add(matmul(x, w), 1), 0.1)));
    });
    const set = (ex: WebGpuExecutor | ReferenceExecutor) => {
      xs.forEach((_, i) => ex.setParam(`x${i}`, Array.from({ length: 185 }, (_, k) => Math.sin(k + i)), [37, 5]));
      ex.setParam("w", Array.from({ length: 45 }, (_, k) => Math.cos(k) / 3), [5, 9]);
    };
    const ex = await WebGpuExecutor.create(), ref = new ReferenceExecutor();
    set(ex);
    set(ref);
    const batched = await ex.compile(g), single = await ex.compile(g, { batch: false });
    const want = await (await ref.compile(g)).run({});
    const got = await batched.run({});
    assert.ok(batched.stats.dispatches < single.stats.dispatches, `${batched.stats.dispatches} dispatches`);
    assert.ok(batched.stats.dispatches <= 3, `${batched.stats.dispatches} dispatches`);
    for (const k of Object.keys(want)) {
      for (let i = 0; i < want[k].length; i++) {
        assert.ok(Math.abs(got[k][i] - want[k][i]) <= 1e-4 * Math.max(1, Math.abs(want[k][i])), `${k}[${i}]`);
      }
    }
    ex.dispose();
  },
});
