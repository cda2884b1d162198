/**
 * Known-answer probes of optional GPU features: a feature the adapter lists is used by the kernels
 * only when a small kernel using it computes the expected values on this device (drivers and
 * translation layers have shipped broken f16 and subgroup paths).
 * @module
 */

/** A probe's outcome: whether it passed, what the kernel wrote and, when it failed, why. */
export interface ProbeResult {
  ok: boolean;
  /** Values the kernel wrote (a prefix, for reports). */
  got: number[];
  /** Why it failed (validation message, thrown error, or the first wrong value). */
  why?: string;
}

/** A validation message on one line, its start and end kept (naga puts the reason last). */
function brief(msg: string): string {
  const one = msg.replace(/[\s│┌─]+/g, " ").trim();
  return one.length > 320 ? `${one.slice(0, 150)} … ${one.slice(-150)}` : one;
}

/** Runs `code` (entry `main`, one storage binding of `words` u32/f32) as `groups` workgroups; returns the words. */
async function runProbe(
  device: GPUDevice,
  code: string,
  words: number,
  groups: number,
): Promise<{ data?: ArrayBuffer; why?: string }> {
  device.pushErrorScope("validation");
  const module = device.createShaderModule({ code });
  const pipeline = device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: "main" } });
  const err = await device.popErrorScope();
  if (err) return { why: brief(err.message) };
  const size = Math.ceil(words * 4 / 16) * 16;
  const buf = device.createBuffer({ size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
  const read = device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
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
  pass.dispatchWorkgroups(groups);
  pass.end();
  enc.copyBufferToBuffer(buf, 0, read, 0, size);
  device.queue.submit([enc.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const data = read.getMappedRange().slice(0, words * 4);
  read.unmap();
  buf.destroy();
  read.destroy();
  return { data };
}

/** Known-answer check: f16 math in a shader gives the f16-rounded results (device made with shader-f16). */
export async function probeF16(device: GPUDevice): Promise<ProbeResult> {
  try {
    const r = await runProbe(
      device,
      `enable f16;
@group(0) @binding(0) var<storage, read_write> o: array<f32>;
@compute @workgroup_size(4) fn main(@builtin(local_invocation_id) l: vec3<u32>) {
  let x = f16(f32(l.x) + 0.333333);
  o[l.x] = f32(x * x + f16(1.0));
}`,
      4,
      1,
    );
    if (!r.data) return { ok: false, got: [], why: r.why };
    const got = Array.from(new Float32Array(r.data));
    // f16(0.333333) = 0.33325195; squared in f16 then + 1, rounded to f16 steps.
    const want = [1.111, 2.777, 6.44, 12.1];
    const bad = got.findIndex((v, i) => !(Math.abs(v - want[i]) < 0.02));
    return bad < 0 ? { ok: true, got } : { ok: false, got, why: `o[${bad}] = ${got[bad]}, expected ~${want[bad]}` };
  } catch (e) {
    return { ok: false, got: [], why: (e as Error).message };
  }
}

/** Words the subgroup probe writes per invocation. */
const SG_WORDS = 6;

/** The subgroup probe's outcome, with the subgroup size seen. */
export interface SubgroupProbe extends ProbeResult {
  /** `subgroup_size` as the kernel saw it (0 when it did not run). */
  size: number;
}

/**
 * Known-answer check of the subgroup builtins the matmul uses, in one workgroup of `wg` invocations
 * (2 workgroups): the same `subgroup_size` everywhere, `subgroup_invocation_id` = local invocation
 * index mod that size (the lane layout the subgroup matmul assumes), `subgroupBroadcast`,
 * `subgroupShuffle` of u32 and f32, and `subgroupAdd`.
 */
export async function probeSubgroups(device: GPUDevice, wg: number): Promise<SubgroupProbe> {
  try {
    const r = await runProbe(
      device,
      `@group(0) @binding(0) var<storage, read_write> o: array<u32>;
@compute @workgroup_size(${wg}) fn main(@builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_size) sz: u32, @builtin(subgroup_invocation_id) lane: u32) {
  let g = wid.x * ${wg}u + li;
  let base = g * ${SG_WORDS}u;
  o[base] = sz;
  o[base + 1u] = lane;
  o[base + 2u] = subgroupBroadcast(g, 1u);
  o[base + 3u] = subgroupShuffle(g, (lane + 1u) % sz);
  o[base + 4u] = subgroupAdd(1u);
  o[base + 5u] = u32(subgroupShuffle(f32(g) + 0.25, lane ^ 1u) * 4.0);
}`,
      2 * wg * SG_WORDS,
      2,
    );
    if (!r.data) return { ok: false, size: 0, got: [], why: r.why };
    const o = Array.from(new Uint32Array(r.data));
    const got = o.slice(0, 4 * SG_WORDS);
    const s = o[0];
    if (!(s >= 1 && wg % s === 0)) return { ok: false, size: s, got, why: `subgroup_size ${s} does not divide ${wg}` };
    for (let g = 0; g < 2 * wg; g++) {
      const w = o.slice(g * SG_WORDS, (g + 1) * SG_WORDS);
      const lane = g % s, first = g - lane;
      const want = [s, lane, first + 1, first + (lane + 1) % s, s, (first + (lane ^ 1)) * 4 + 1];
      if (s === 1) want[2] = w[2], want[5] = g * 4 + 1; // lane 1 / lane^1 do not exist
      const bad = want.findIndex((v, i) => w[i] !== v);
      if (bad >= 0) {
        const what = ["subgroup_size", "lane", "broadcast", "shuffle", "add", "f32 shuffle"][bad];
        return { ok: false, size: s, got, why: `invocation ${g}: ${what} = ${w[bad]}, expected ${want[bad]}` };
      }
    }
    return { ok: true, size: s, got };
  } catch (e) {
    return { ok: false, size: 0, got: [], why: (e as Error).message };
  }
}
