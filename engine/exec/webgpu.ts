/**
 * The WebGPU executor. A graph is planned once — node order, every intermediate, input, constant and
 * kernel scratch buffer placed by liveness in as many arenas as the adapter's buffer limit requires
 * (engine/exec/webgpu_memory.ts), pipelines and bind groups built — and then each step is replayed with
 * one command encoder and one submit. Only the outputs asked for are read back, asynchronously, so the next step
 * can be issued before the previous step's loss arrives.
 *
 * Parameters and optimizer states live in a persistent store shared by every graph compiled on the
 * same executor (train, eval and decode steps). A tensor larger than one storage binding is kept in
 * segments (kernels/segments.ts), which the kernels that touch such tensors at real sizes bind one by one.
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
import { completeFeeds, type Graph } from "../graph/graph.ts";
import { type DType, DTYPE_BYTES, fmtInfo, numel, type TensorInfo } from "../graph/types.ts";
import { type Gpu, openGpu } from "../gpu/device.ts";
import type { KernelContext, SegmentLayout } from "../../kernels/kernel.ts";
import { elemBytes, segmentElems, segmentLayout } from "../../kernels/segments.ts";
import { valueBytes } from "./plan.ts";
import {
  graphSegments,
  layoutMemory,
  type LimitCaps,
  type Loc,
  lowerPlan,
  type MemoryLimits,
  memoryLimits,
  planWebGpu,
  resolveBinding,
} from "./webgpu_memory.ts";
import { copySegments, readSegments, writeSegments } from "./webgpu_store.ts";
import { fusionDefault } from "./fuse.ts";
import { batchLaunches, type PendingLaunch } from "./batch.ts";
import type { CompiledGraph, CompileOptions, Executor, HostArray, StepStats } from "./executor.ts";
import { fromBf16Bits, fromF16Bits, toBf16Bits, toF16Bits } from "../util/half.ts";
import { loadTuning } from "./tuning_cache.ts";

interface Stored {
  /** One buffer, or one per segment when the tensor exceeds a storage binding. */
  buffers: GPUBuffer[];
  info: TensorInfo;
  bytes: number;
  layout?: SegmentLayout;
}

/** Options of {@link WebGpuExecutor}. */
export interface WebGpuOptions {
  /** Limits below the adapter's own: memory is laid out as if the adapter allowed no more (tests, debugging). */
  limits?: LimitCaps;
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
  /** The storage binding and buffer limits memory is laid out under. */
  readonly limits: MemoryLimits;

  constructor(readonly gpu: Gpu, opts: WebGpuOptions = {}) {
    this.limits = memoryLimits(gpu.limits, opts.limits);
    this.ctx = {
      f16: gpu.f16,
      maxWorkgroupsPerDim: gpu.limits.maxComputeWorkgroupsPerDimension,
      maxWorkgroupStorage: gpu.limits.maxComputeWorkgroupStorageSize,
      maxInvocations: gpu.limits.maxComputeInvocationsPerWorkgroup,
      subgroupSize: gpu.subgroupSize,
      maxBindingBytes: this.limits.maxBindingBytes,
      tuned: new Map(),
    };
    loadTuning(this.ctx.tuned, gpu); // tuned kernel configs cached for this adapter (engine/exec/tuner.ts)
  }

  /** Opens the default GPU and makes an executor on it. */
  static async create(opts: WebGpuOptions = {}): Promise<WebGpuExecutor> {
    return new WebGpuExecutor(await openGpu(), opts);
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
    this.#write(name, new Uint8Array(encodeHost(data, dtype)), shape, dtype);
  }

  /** Stores raw little-endian bytes of `dtype` as they are (see {@link Executor.setParamBytes}). */
  setParamBytes(name: string, bytes: Uint8Array, shape: readonly number[], dtype: DType): void {
    const want = numel(shape) * DTYPE_BYTES[dtype];
    if (bytes.byteLength !== want) {
      throw new Error(`param "${name}": ${bytes.byteLength} bytes for ${dtype}[${shape.join(", ")}] (${want})`);
    }
    let data = bytes as Uint8Array<ArrayBuffer>;
    // Buffer sizes and writes are multiples of 4 bytes: an odd-sized f16/bf16 tensor is padded (a copy).
    if (bytes.byteLength % 4 || bytes.byteLength === 0 || !(bytes.buffer instanceof ArrayBuffer)) {
      data = new Uint8Array(Math.max(4, Math.ceil(bytes.byteLength / 4) * 4));
      data.set(bytes);
    }
    this.#write(name, data, shape, dtype);
  }

  /** Bytes written since the last submit: queued writes keep a staging copy until a submit flushes them. */
  #unflushed = 0;

  #write(name: string, bytes: Uint8Array<ArrayBuffer>, shape: readonly number[], dtype: DType): void {
    const old = this.store.get(name);
    if (old && old.info.dtype === dtype && old.info.shape.join() === shape.join()) {
      writeSegments(this.device, old.buffers, bytes);
    } else {
      for (const b of old?.buffers ?? []) b.destroy();
      const info = { shape: [...shape], dtype };
      // Over one storage binding: one buffer per segment (kernels/segments.ts).
      const layout = segmentLayout(info, this.limits.maxBindingBytes);
      const sizes = layout
        ? Array.from({ length: layout.count }, (_, s) => elemBytes(segmentElems(layout, s), dtype))
        : [bytes.byteLength];
      const buffers = sizes.map((size, s) =>
        this.device.createBuffer({ size, usage: STORAGE, label: layout ? `${name} [${s}]` : name })
      );
      writeSegments(this.device, buffers, bytes);
      this.store.set(name, { buffers, info, bytes: bytes.byteLength, layout });
    }
    // Loading a model writes every weight before any step submits: flush every 64 MiB, so the staging copies of
    // the queued writes do not add up to a second copy of the model.
    this.#unflushed += bytes.byteLength;
    if (this.#unflushed >= 64 * 2 ** 20) {
      this.device.queue.submit([]);
      this.#unflushed = 0;
    }
  }

  async getParam(name: string): Promise<HostArray> {
    const s = this.store.get(name);
    if (!s) throw new Error(`no param "${name}" in the store`);
    return decodeHost(await readSegments(this.device, s.buffers, s.bytes), numel(s.info.shape), s.info.dtype);
  }

  hasParam(name: string): boolean {
    return this.store.has(name);
  }

  dispose(): void {
    for (const s of this.store.values()) for (const b of s.buffers) b.destroy();
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
    const lim = { ...this.limits, minStorageBufferOffsetAlignment: this.gpu.limits.minStorageBufferOffsetAlignment };
    const fuse = opts.fuse ?? fusionDefault();
    const { plan, fusion } = planWebGpu(graph, opts.outputs, this.limits, fuse);
    const stored = new Map<number, Stored>();
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
      stored.set(id, s);
    }
    // Which values are segmented, then every node lowered, then the memory laid out with each node's scratch.
    const segments = graphSegments(graph, plan, this.limits);
    const segOf = (r: number) => segments.get(r) ?? stored.get(r)?.layout;
    const lowered = lowerPlan(plan, this.ctx, segOf, fusion?.units);
    const layout = layoutMemory(
      plan,
      new Map([...lowered].map(([si, l]) => [si, l.lowered.scratch ?? []])),
      lim,
      segments,
    );
    const arenas = layout.arenaBytes.map((size, k) =>
      dev.createBuffer({ size, usage: STORAGE, label: layout.arenaBytes.length > 1 ? `arena ${k}` : "arena" })
    );
    const owned: GPUBuffer[] = [...arenas];
    const at = (slots: { arena: number; offset: number; size: number }[]): Loc[] =>
      slots.map((sl) => ({ buffer: arenas[sl.arena], offset: sl.offset, size: sl.size }));
    const locs = new Array<Loc[] | undefined>(graph.values.length);
    for (const [id, s] of stored) locs[id] = s.buffers.map((buffer) => ({ buffer, offset: 0, size: buffer.size }));
    const inputs = new Map<string, { locs: Loc[]; info: TensorInfo; id: number }>();
    for (const [name, id] of graph.inputs) inputs.set(name, { locs: locsOf(id), info: graph.values[id], id });
    for (const v of graph.values) {
      if (v.kind === "const") writeSegments(dev, locsOf(v.id), encodeHost(v.data!, v.dtype));
    }
    function locsOf(id: number): Loc[] {
      if (locs[id]) return locs[id]!;
      const r = plan.root[id];
      if (r !== id) {
        const root = locsOf(r);
        // A view of an unsegmented value binds its own size; a segmented one shares its root's segments.
        return (locs[id] = root.length > 1 ? root : [{ ...root[0], size: Math.max(4, valueBytes(graph.values[id])) }]);
      }
      const slots = layout.values.get(r);
      if (!slots) throw new Error(`internal: value ${id} has no storage`);
      return (locs[id] = at(slots));
    }

    dev.pushErrorScope("validation");
    const steps: { pipeline: GPUComputePipeline; bind: GPUBindGroup; wg: readonly [number, number, number] }[] = [];
    const pending: PendingLaunch<GPUBuffer>[] = [];
    for (const [si, low] of lowered) {
      const scratch = at(layout.scratch.get(si) ?? []);
      for (const l of low.lowered.launches) {
        const ranges = l.bindings.map((b) => resolveBinding(graph, low, b, locsOf, scratch, lim));
        const written = l.bindings.map((b) => !("input" in b) || low.effects.includes(b.input));
        pending.push({ code: l.code, entry: l.entry, workgroups: l.workgroups, ranges, written, alone: low.segmented });
      }
    }
    const glim = this.gpu.limits;
    const batched = (opts.batch ?? fuse)
      ? batchLaunches(pending, {
        maxBindings: glim.maxStorageBuffersPerShaderStage,
        maxWorkgroupStorage: glim.maxComputeWorkgroupStorageSize,
        maxWorkgroupsPerDim: glim.maxComputeWorkgroupsPerDimension,
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

    const outInfo = new Map<string, { locs: Loc[]; info: TensorInfo; bytes: number }>();
    for (const [name, id] of plan.outputs) {
      const v = graph.values[id];
      outInfo.set(name, { locs: locsOf(id), info: v, bytes: Math.max(4, valueBytes(v)) });
    }
    const staging: GPUBuffer[] = [];
    const stats: StepStats = {
      dispatches: steps.length,
      submits: 0,
      bytesReadBack: 0,
      arenaBytes: layout.totalBytes,
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
        writeSegments(dev, inp.locs, encodeHost(f, inp.info.dtype));
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
        for (const w of want) at += copySegments(enc, w.locs, w.bytes, read, at);
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
          return run(completeFeeds(graph, feeds), fetch);
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
