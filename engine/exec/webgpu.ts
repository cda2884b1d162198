/**
 * The WebGPU executor. A graph is planned once — node order, every intermediate placed in one arena
 * by liveness, pipelines and bind groups built — and then each step is replayed with one command
 * encoder and one submit. Only the outputs asked for are read back, asynchronously, so the next step
 * can be issued before the previous step's loss arrives.
 *
 * Parameters and optimizer states live in a persistent store shared by every graph compiled on the
 * same executor (train, eval and decode steps).
 *
 * @example
 * ```ts
 * const ex = await WebGpuExecutor.create();
 * ex.setParam("w", weights, [256, 256]);
 * const step = await ex.compile(graph);
 * const { loss } = await step.run({ ids }, ["loss"]);
 * ```
 * @module
 */
import type { Graph } from "../graph/graph.ts";
import { getOp } from "../graph/op.ts";
import { type DType, DTYPE_BYTES, fmtInfo, numel, type TensorInfo } from "../graph/types.ts";
import { type Gpu, openGpu } from "../gpu/device.ts";
import { lowering } from "../../kernels/mod.ts";
import type { KernelContext } from "../../kernels/kernel.ts";
import { planGraph, valueBytes } from "./plan.ts";
import { fuseSteps, type Fusion, fusionDefault } from "./fuse.ts";
import { lowerFused } from "../../kernels/fused.ts";
import { batchLaunches, type PendingLaunch } from "./batch.ts";
import type { CompiledGraph, CompileOptions, Executor, HostArray, StepStats } from "./executor.ts";
import { fromBf16Bits, fromF16Bits, toBf16Bits, toF16Bits } from "../util/half.ts";
import { loadTuning } from "./tuning_cache.ts";

interface Stored {
  buffer: GPUBuffer;
  info: TensorInfo;
  bytes: number;
}

interface Loc {
  buffer: GPUBuffer;
  offset: number;
  size: number;
}

/** Encodes host numbers into the bytes of `dtype` (size rounded up to 4). */
export function encodeHost(data: ArrayLike<number>, dtype: DType): ArrayBuffer {
  const n = data.length;
  const bytes = Math.ceil((n * DTYPE_BYTES[dtype]) / 4) * 4;
  const buf = new ArrayBuffer(Math.max(4, bytes));
  switch (dtype) {
    case "f32":
      new Float32Array(buf).set(data);
      break;
    case "i32":
      new Int32Array(buf).set(data);
      break;
    case "u32":
      new Uint32Array(buf).set(data);
      break;
    case "f16":
    case "bf16": {
      const u = new Uint16Array(buf);
      const f = dtype === "f16" ? toF16Bits : toBf16Bits;
      for (let i = 0; i < n; i++) u[i] = f(data[i]);
    }
  }
  return buf;
}

/** Decodes device bytes of `dtype` into a host array (f16/bf16 widen to f32). */
export function decodeHost(buf: ArrayBuffer, n: number, dtype: DType): HostArray {
  switch (dtype) {
    case "f32":
      return new Float32Array(buf, 0, n).slice();
    case "i32":
      return new Int32Array(buf, 0, n).slice();
    case "u32":
      return new Uint32Array(buf, 0, n).slice();
    case "f16":
    case "bf16": {
      const u = new Uint16Array(buf, 0, n);
      const f = dtype === "f16" ? fromF16Bits : fromBf16Bits;
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = f(u[i]);
      return out;
    }
  }
}

const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;

/** The WebGPU executor. */
export class WebGpuExecutor implements Executor {
  readonly name = "webgpu";
  readonly store = new Map<string, Stored>();
  readonly #pipelines = new Map<string, GPUComputePipeline>();
  readonly ctx: KernelContext;

  constructor(readonly gpu: Gpu) {
    this.ctx = {
      f16: gpu.f16,
      maxWorkgroupsPerDim: gpu.limits.maxComputeWorkgroupsPerDimension,
      maxWorkgroupStorage: gpu.limits.maxComputeWorkgroupStorageSize,
      maxInvocations: gpu.limits.maxComputeInvocationsPerWorkgroup,
      tuned: new Map(),
    };
    loadTuning(this.ctx.tuned, gpu); // tuned kernel configs cached for this adapter (engine/exec/tuner.ts)
  }

  /** Opens the default GPU and makes an executor on it. */
  static async create(): Promise<WebGpuExecutor> {
    return new WebGpuExecutor(await openGpu());
  }

  get device(): GPUDevice {
    return this.gpu.device;
  }

  /** Device bytes of the stored params and optimizer states. */
  get storeBytes(): number {
    let n = 0;
    for (const s of this.store.values()) n += s.bytes;
    return n;
  }

  setParam(name: string, data: ArrayLike<number>, shape: readonly number[], dtype: DType = "f32"): void {
    if (data.length !== numel(shape)) {
      throw new Error(`param "${name}": ${data.length} values for shape [${shape.join(", ")}] (${numel(shape)})`);
    }
    const bytes = encodeHost(data, dtype);
    const old = this.store.get(name);
    if (old && old.info.dtype === dtype && old.info.shape.join() === shape.join()) {
      this.device.queue.writeBuffer(old.buffer, 0, bytes);
      return;
    }
    if (old) old.buffer.destroy();
    const buffer = this.device.createBuffer({ size: bytes.byteLength, usage: STORAGE, label: name });
    this.device.queue.writeBuffer(buffer, 0, bytes);
    this.store.set(name, { buffer, info: { shape: [...shape], dtype }, bytes: bytes.byteLength });
  }

  async getParam(name: string): Promise<HostArray> {
    const s = this.store.get(name);
    if (!s) throw new Error(`no param "${name}" in the store`);
    const read = this.device.createBuffer({ size: s.bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const enc = this.device.createCommandEncoder();
    enc.copyBufferToBuffer(s.buffer, 0, read, 0, s.bytes);
    this.device.queue.submit([enc.finish()]);
    await read.mapAsync(GPUMapMode.READ);
    const out = decodeHost(read.getMappedRange(), numel(s.info.shape), s.info.dtype);
    read.unmap();
    read.destroy();
    return out;
  }

  hasParam(name: string): boolean {
    return this.store.has(name);
  }

  dispose(): void {
    for (const s of this.store.values()) s.buffer.destroy();
    this.store.clear();
  }

  /** A compute pipeline for `code`, built once per source. */
  pipeline(code: string, entry = "main"): GPUComputePipeline {
    const key = `${entry}\n${code}`;
    let p = this.#pipelines.get(key);
    if (!p) {
      const module = this.device.createShaderModule({ code });
      p = this.device.createComputePipeline({ layout: "auto", compute: { module, entryPoint: entry } });
      this.#pipelines.set(key, p);
    }
    return p;
  }

  async compile(graph: Graph, opts: CompileOptions = {}): Promise<CompiledGraph> {
    const dev = this.device;
    const lim = this.gpu.limits;
    let fusion: Fusion | undefined;
    const fuse = opts.fuse ?? fusionDefault();
    const plan = planGraph(
      graph,
      opts.outputs,
      Math.max(16, lim.minStorageBufferOffsetAlignment),
      fuse
        ? (g, order, root, outs) =>
          (fusion = fuseSteps(g, order, root, outs, { maxBindings: lim.maxStorageBuffersPerShaderStage })).steps
        : undefined,
    );
    if (plan.arenaBytes > lim.maxBufferSize) {
      throw new Error(
        `the planned arena needs ${plan.arenaBytes} bytes; this adapter allows buffers of ${lim.maxBufferSize} bytes`,
      );
    }
    const arena = dev.createBuffer({ size: Math.max(256, plan.arenaBytes), usage: STORAGE, label: "arena" });
    const owned: GPUBuffer[] = [arena];
    const locs = new Array<Loc | undefined>(graph.values.length);
    const inputs = new Map<string, { buffer: GPUBuffer; info: TensorInfo; id: number }>();
    for (const [name, id] of graph.inputs) {
      const v = graph.values[id];
      const size = Math.max(4, valueBytes(v));
      const buffer = dev.createBuffer({ size, usage: STORAGE, label: `input ${name}` });
      owned.push(buffer);
      locs[id] = { buffer, offset: 0, size };
      inputs.set(name, { buffer, info: v, id });
    }
    for (const [name, id] of graph.params) {
      const v = graph.values[id];
      const used = plan.order.some((n) => graph.nodes[n].inputs.includes(id));
      const s = this.store.get(name);
      if (!s) {
        if (used) throw new Error(`param "${name}" (${fmtInfo(v)}) is not in the store; set it first`);
        continue;
      }
      if (s.info.dtype !== v.dtype || s.info.shape.join() !== v.shape.join()) {
        throw new Error(`param "${name}" is stored as ${fmtInfo(s.info)} but the graph declares ${fmtInfo(v)}`);
      }
      locs[id] = { buffer: s.buffer, offset: 0, size: s.bytes };
    }
    for (const v of graph.values) {
      if (v.kind !== "const") continue;
      const bytes = encodeHost(v.data!, v.dtype);
      const buffer = dev.createBuffer({ size: bytes.byteLength, usage: STORAGE, label: "const" });
      dev.queue.writeBuffer(buffer, 0, bytes);
      owned.push(buffer);
      locs[v.id] = { buffer, offset: 0, size: bytes.byteLength };
    }
    const locOf = (id: number): Loc => {
      const r = plan.root[id];
      if (locs[id]) return locs[id]!;
      if (r !== id) return (locs[id] = { ...locOf(r), size: Math.max(4, valueBytes(graph.values[id])) });
      const off = plan.offsets.get(r);
      if (off === undefined) throw new Error(`internal: value ${id} has no storage`);
      return (locs[id] = { buffer: arena, offset: off, size: Math.max(4, valueBytes(graph.values[r])) });
    };

    // Lower every node; scratch buffers are allocated per node (small, reused across steps).
    dev.pushErrorScope("validation");
    const steps: { pipeline: GPUComputePipeline; bind: GPUBindGroup; wg: readonly [number, number, number] }[] = [];
    const pending: PendingLaunch<GPUBuffer>[] = [];
    for (const step of plan.steps) {
      const unit = fusion?.units.get(step);
      let n: { op: string; inputs: readonly number[]; outputs: readonly number[] };
      let lowered;
      if (unit) {
        n = { op: `fused(${unit.nodes.map((k) => graph.nodes[k].op).join(",")})`, ...unit };
        try {
          lowered = lowerFused(unit.spec, this.ctx);
        } catch (e) {
          throw new Error(`lowering fused nodes ${unit.nodes.join(", ")} (${n.op}): ${(e as Error).message}`);
        }
      } else {
        const ni = step.nodes[0];
        n = graph.nodes[ni];
        if (getOp(n.op).view) continue;
        const node = {
          inputs: n.inputs.map((i) => graph.values[i]),
          outputs: n.outputs.map((o) => graph.values[o]),
          attrs: graph.nodes[ni].attrs,
        };
        try {
          lowered = lowering(n.op)(node, this.ctx);
        } catch (e) {
          throw new Error(
            `lowering node ${ni} "${n.op}" (${node.inputs.map(fmtInfo).join("; ")}): ${(e as Error).message}`,
          );
        }
      }
      const scratch = (lowered.scratch ?? []).map((bytes) => {
        const b = dev.createBuffer({
          size: Math.max(4, Math.ceil(bytes / 4) * 4),
          usage: STORAGE,
          label: `scratch ${n.op}`,
        });
        owned.push(b);
        return b;
      });
      const effects = unit ? [] : getOp(n.op).effects ?? [];
      for (const l of lowered.launches) {
        const ranges = l.bindings.map((b) => {
          let loc: Loc;
          if ("input" in b) loc = locOf(n.inputs[b.input]);
          else if ("output" in b) loc = locOf(n.outputs[b.output]);
          else loc = { buffer: scratch[b.scratch], offset: 0, size: scratch[b.scratch].size };
          if (b.offset !== undefined || b.size !== undefined) {
            const off = b.offset ?? 0;
            if (off % lim.minStorageBufferOffsetAlignment) {
              throw new Error(`node "${n.op}" binds at byte offset ${off}, not a multiple of the adapter's alignment`);
            }
            loc = { buffer: loc.buffer, offset: loc.offset + off, size: b.size ?? loc.size - off };
          }
          if (loc.size > lim.maxStorageBufferBindingSize) {
            throw new Error(
              `node "${n.op}" binds ${loc.size} bytes; this adapter binds at most ${lim.maxStorageBufferBindingSize}`,
            );
          }
          return loc;
        });
        const written = l.bindings.map((b) => !("input" in b) || effects.includes(b.input));
        pending.push({ code: l.code, entry: l.entry, workgroups: l.workgroups, ranges, written });
      }
    }
    const batched = (opts.batch ?? fuse)
      ? batchLaunches(pending, {
        maxBindings: lim.maxStorageBuffersPerShaderStage,
        maxWorkgroupStorage: lim.maxComputeWorkgroupStorageSize,
        maxWorkgroupsPerDim: lim.maxComputeWorkgroupsPerDimension,
      })
      : pending;
    for (const l of batched) {
      const pipeline = this.pipeline(l.code, l.entry);
      const entries = l.ranges.map((loc, k) => ({
        binding: k,
        resource: { buffer: loc.buffer, offset: loc.offset, size: loc.size },
      }));
      const bind = dev.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
      steps.push({ pipeline, bind, wg: l.workgroups });
    }
    const err = await dev.popErrorScope();
    if (err) throw new Error(`WebGPU rejected a kernel while planning: ${err.message}`);

    const outInfo = new Map<string, { loc: Loc; info: TensorInfo; bytes: number }>();
    for (const [name, id] of plan.outputs) {
      const v = graph.values[id];
      const loc = locOf(id);
      outInfo.set(name, { loc, info: v, bytes: Math.max(4, valueBytes(v)) });
    }
    const staging: GPUBuffer[] = [];
    const stats: StepStats = {
      dispatches: steps.length,
      submits: 0,
      bytesReadBack: 0,
      arenaBytes: plan.arenaBytes,
      ownedBytes: owned.reduce((n, b) => n + b.size, 0),
    };
    const allOutputs = [...plan.outputs.keys()];

    const run = (feeds: Record<string, ArrayLike<number>>, fetch: readonly string[] = allOutputs) => {
      for (const [name, inp] of inputs) {
        const f = feeds[name];
        if (f === undefined) {
          if (plan.order.some((n) => graph.nodes[n].inputs.includes(inp.id))) {
            throw new Error(`missing feed "${name}" (${fmtInfo(inp.info)})`);
          }
          continue;
        }
        if (f.length !== numel(inp.info.shape)) {
          throw new Error(
            `feed "${name}": expected ${numel(inp.info.shape)} values for ${fmtInfo(inp.info)}, got ${f.length}`,
          );
        }
        dev.queue.writeBuffer(inp.buffer, 0, encodeHost(f, inp.info.dtype));
      }
      const enc = dev.createCommandEncoder();
      const pass = enc.beginComputePass();
      for (const s of steps) {
        pass.setPipeline(s.pipeline);
        pass.setBindGroup(0, s.bind);
        pass.dispatchWorkgroups(s.wg[0], s.wg[1], s.wg[2]);
      }
      pass.end();
      const want = fetch.map((name) => {
        const o = outInfo.get(name);
        if (!o) throw new Error(`"${name}" is not an output of this compiled graph`);
        return { name, ...o };
      });
      const total = want.reduce((a, w) => a + w.bytes, 0);
      let read: GPUBuffer | undefined;
      if (total > 0) {
        const i = staging.findIndex((b) => b.size >= total);
        read = i >= 0
          ? staging.splice(i, 1)[0]
          : dev.createBuffer({ size: total, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
        let at = 0;
        for (const w of want) {
          enc.copyBufferToBuffer(w.loc.buffer, w.loc.offset, read, at, w.bytes);
          at += w.bytes;
        }
      }
      dev.queue.submit([enc.finish()]);
      stats.dispatches = steps.length;
      stats.submits = 1;
      stats.bytesReadBack = total;
      if (!read) return Promise.resolve({});
      const buf = read;
      return buf.mapAsync(GPUMapMode.READ).then(() => {
        const range = buf.getMappedRange();
        const out: Record<string, HostArray> = {};
        let at = 0;
        for (const w of want) {
          out[w.name] = decodeHost(range.slice(at, at + w.bytes), numel(w.info.shape), w.info.dtype);
          at += w.bytes;
        }
        buf.unmap();
        staging.push(buf);
        return out;
      });
    };
    return {
      run: (feeds, fetch) => {
        try {
          return run(feeds, fetch);
        } catch (e) {
          return Promise.reject(e);
        }
      },
      stats,
      // keep owned buffers reachable for the compiled graph's lifetime
      ...({ owned } as object),
    } as CompiledGraph;
  }
}
