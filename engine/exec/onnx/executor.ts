/**
 * The ONNX Runtime executor: each compiled graph is lowered to one ONNX model (lower.ts) and run by
 * onnxruntime-node's CPU execution provider as one session run per step. Params live in a host store
 * of typed arrays that every compiled graph shares; they are passed as inputs (onnxruntime wraps the
 * arrays, no copy), and the new values of params an effect op writes (optimizer states, KV caches)
 * replace the stored arrays after the run (the output buffers are adopted, no copy).
 *
 * @example
 * ```ts
 * const ex = await OnnxExecutor.create();
 * ex.setParam("w", [1, 2, 3, 4], [2, 2]);
 * const step = await ex.compile(graph);
 * const { y } = await step.run({ x: [1, 1] });
 * ```
 * @module
 */
import { loadOrt, type Ort } from "../../../deps.ts";
import { completeFeeds, type Graph } from "../../graph/graph.ts";
import { getOp } from "../../graph/op.ts";
import { type DType, DTYPE_BYTES, fmtInfo, numel } from "../../graph/types.ts";
import { bytesToF32 } from "../param_bytes.ts";
import { roundTo } from "../dtype.ts";
import { collectGarbage, setMmapThreshold, trimHeap } from "../../util/memory.ts";
import type { CompiledGraph, CompileOptions, Executor, HostArray, StepStats } from "../executor.ts";
import { lowerGraph, type LowerOptions } from "./lower.ts";
import { type Lowered, type SessionCounts, SymbolicSessions } from "./symbolic_sessions.ts";
import { symbolicCacheDir } from "./symbolic_cache.ts";

export type { SessionCounts } from "./symbolic_sessions.ts";
import { encodeModel, ONNX_TYPE } from "./proto.ts";
import { reorderLike } from "./node_order.ts";
import { mark } from "../../util/timings.ts";
import { OnnxBuilder } from "./builder.ts";
import { type FfiData, type FfiOutput, type FfiSession, type FfiSessionOptions, OrtFfi } from "./ffi.ts";
import {
  cachedModel,
  commitModel,
  modelCacheDir,
  modelCacheKey,
  type ModelCacheOptions,
  pendingPath,
} from "./model_cache.ts";

/** A stored param: data in the ONNX type its dtype lives in (FLOAT, INT32 or INT64). */
interface Stored {
  data: Float32Array | Int32Array | BigInt64Array;
  shape: readonly number[];
  dtype: DType;
}

/**
 * A copy of host data in the ONNX storage type of `dtype` (f16/bf16 rounded to their precision, held as f32).
 * Always a copy: stored arrays are written in place by later runs (they become preallocated outputs).
 */
function toStorage(data: ArrayLike<number>, dtype: DType): Stored["data"] {
  // Typed arrays copy at memcpy speed through the constructor (`from` walks an iterator: ~2 s for a 135M model).
  if (dtype === "i32") return data instanceof Int32Array ? new Int32Array(data) : Int32Array.from(data);
  if (dtype === "u32") return BigInt64Array.from(Array.from(data, (v) => BigInt(v >>> 0)));
  if (dtype === "f32") return data instanceof Float32Array ? new Float32Array(data) : Float32Array.from(data);
  return Float32Array.from(roundTo(Float64Array.from(data), dtype));
}

type OrtModule = Awaited<ReturnType<typeof loadOrt>>;

/** State bytes a run hands back (as garbage copies) past which the executor collects them right away. */
const GC_AFTER_BYTES = 64 * 2 ** 20;

/** glibc's mmap threshold once a session runs without the arena (see `session`). */
const MMAP_THRESHOLD = 2 ** 20;

/**
 * ONNX Runtime's level-"basic" graph transformers that never apply to a lowered graph (quantize/dequantize pairs,
 * which no lowering emits, and a vision fusion), left out: each one still walks the whole graph, twice per session
 * (a 135M LoRA step's session: 9.0 → 6.8 s). Leaving an optimizer out can only change speed, never results.
 */
const UNUSED_OPTIMIZERS = [
  "QDQPropagationTransformer",
  "WeightBiasQuantization",
  "EnsureUniqueDQForNodeUnit",
  "DoubleQDQPairsRemover",
  "WhereDummyDq",
  "SliceConcatToSpaceToDepthFusion",
].join(";");

/** State bytes of a graph from which its session runs without ONNX Runtime's CPU arena (see `session`). */
const NO_ARENA_STATE_BYTES = 64 * 2 ** 20;

const ORT_TYPE = { f32: "float32", f16: "float32", bf16: "float32", i32: "int32", u32: "int64" } as const;

function tensorOf(ort: OrtModule, data: Stored["data"], shape: readonly number[], dtype: DType): Ort.Tensor {
  return new ort.Tensor(ORT_TYPE[dtype], data, [...shape]);
}

/** `WHETSTONE_ONNX_ARENA`: `on` / `off` (every session with or without ONNX Runtime's CPU arena), else undefined. */
export function envArena(): boolean | undefined {
  const v = Deno.env.get("WHETSTONE_ONNX_ARENA");
  if (v === undefined || v === "") return undefined;
  if (v === "on" || v === "off") return v === "on";
  throw new Error(`WHETSTONE_ONNX_ARENA: expected on or off, got "${v}"`);
}

/** Bytes of the params a graph's effect ops write, as f32 (its states, and any KV cache scattered on the host). */
function writtenBytes(graph: Graph): number {
  const written = new Set<number>();
  for (const n of graph.nodes) for (const e of getOp(n.op).effects ?? []) written.add(n.inputs[e]);
  let bytes = 0;
  for (const id of written) bytes += numel(graph.values[id].shape) * 4;
  return bytes;
}

/** Bytes of the states a lowered graph writes. */
function stateBytes(l: Lowered): number {
  return l.states.reduce((n, st) => n + numel(st.shape) * 4, 0);
}

/** A tensor a run reads (a feed or a stored param). */
interface RunTensor {
  name: string;
  data: Stored["data"];
  shape: readonly number[];
  dtype: DType;
}

/** An output a run writes: into a host array (a state), or handed back. */
interface RunOutput {
  name: string;
  into?: Omit<RunTensor, "name">;
}

/**
 * A compiled graph's session: over ONNX Runtime's C API (ffi.ts: states written in place cost no copy), or
 * onnxruntime-node's (which copies every output out, the states too) where FFI cannot be reached.
 */
type Session = { ffi: FfiSession } | { node: Ort.InferenceSession };

function hostOf(t: { data: unknown }, dtype: DType): HostArray {
  if (dtype === "u32") return Uint32Array.from(t.data as BigInt64Array, (v) => Number(v));
  return t.data as Float32Array | Int32Array;
}

/** Options of {@link OnnxExecutor.create}. */
export interface OnnxExecutorOptions {
  /** Threads of one operator (default: onnxruntime's choice, the physical cores). */
  threads?: number;
  /**
   * Extra onnxruntime session options (e.g. `{ enableProfiling: true, profileFilePrefix: "/tmp/ort" }`), over the
   * defaults: `graphOptimizationLevel: "disabled"`, `enableMemPattern: false`, and `enableCpuMemArena: false` for
   * graphs that write 64 MiB of states or more.
   */
  sessionOptions?: Record<string, unknown>;
  /**
   * The on-disk cache of optimized models (model_cache.ts), for sessions at a graph optimization level other than
   * the default "disabled" (`sessionOptions`): on by default for models of 2000 nodes or more, in
   * `$WHETSTONE_CACHE/onnx` or `.cache/whetstone/onnx/` (`WHETSTONE_ONNX_CACHE=off` turns it off); `false`: off.
   */
  modelCache?: ModelCacheOptions | false;
  /**
   * ONNX Runtime's CPU arena for every session (`true`) or none (`false`); default: `WHETSTONE_ONNX_ARENA` (`on`,
   * `off`) when set, else none for graphs writing 64 MiB of states or more (training steps of full or freeze tuning),
   * one for the rest. With it a 135M full step ran ~2.5× faster (no fresh pages each run) and peaked ~0.8 GB higher
   * (the arena keeps its high-water mark, grown by powers of two).
   */
  cpuArena?: boolean;
  /**
   * One session for every size of a graph compiled with `symbolic` sizes (symbolic.ts): default on;
   * `WHETSTONE_ONNX_SYMBOLIC=off` in the environment or `false` here builds one session per traced shape.
   */
  symbolic?: boolean;
  /**
   * Sessions over ONNX Runtime's C API through Deno's FFI (ffi.ts), which write states into the stored arrays with no
   * copy out and build a session off the event loop (onnxruntime-node builds it on the JS thread: a 135M step graph
   * blocked a server's every request for seconds): every session where FFI is allowed and `WHETSTONE_ONNX_FFI` is
   * not `off` (default, or `true`); `false`: onnxruntime-node's. A 135M LoRA run peaked the same (1,591 against
   * 1,579 MiB).
   */
  ffi?: boolean;
}

/** Runs graphs on onnxruntime-node (CPU). */
export class OnnxExecutor implements Executor {
  readonly name = "onnx";
  private readonly store = new Map<string, Stored>();
  /** Per state: the array its next value is written into (the one it held before the last run). */
  private readonly spares = new Map<string, Stored["data"]>();
  /** Runs are serialized: a step reads the params the previous step wrote. */
  private queue: Promise<unknown> = Promise.resolve();
  /** The tiny session of {@link releaseLastAnswer}. */
  private releaser?: Promise<Ort.InferenceSession>;
  /** Sessions this executor created and reused so far. */
  readonly sessions: SessionCounts = { created: 0, reused: 0, fallbacks: [] };
  /** The same counters over every executor of the process (for runs that make their own executor: benches, tests). */
  static readonly allSessions: SessionCounts = { created: 0, reused: 0, fallbacks: [] };
  /** Sessions of symbolic models, one per graph for all its sizes. */
  private readonly symbolic = new SymbolicSessions<Session>(
    (bytes, nodes, lowered) => this.session(bytes, nodes, stateBytes(lowered)),
    [this.sessions, OnnxExecutor.allSessions],
    () => {
      const cache = this.opts.modelCache === false ? undefined : this.opts.modelCache ?? {};
      const dir = cache && (cache.dir ? `${cache.dir}/symbolic` : symbolicCacheDir());
      return dir ? { dir, minNodes: cache.minNodes ?? 2000, maxEntries: cache.maxEntries } : undefined;
    },
  );

  /** ONNX Runtime's C API over FFI, when this executor's sessions run on it (see {@link OnnxExecutorOptions.ffi}). */
  private readonly ffi?: OrtFfi;

  private constructor(private readonly ort: OrtModule, private readonly opts: OnnxExecutorOptions) {
    this.ffi = opts.ffi === false ? undefined : OrtFfi.open();
  }

  /** Whether sessions may run over ONNX Runtime's C API (ffi.ts; see {@link OnnxExecutorOptions.ffi}). */
  get usesFfi(): boolean {
    return this.ffi !== undefined;
  }

  /** An executor on ONNX Runtime's CPU execution provider. */
  static async create(opts: OnnxExecutorOptions = {}): Promise<OnnxExecutor> {
    return new OnnxExecutor(await loadOrt(), opts);
  }

  setParam(name: string, data: ArrayLike<number>, shape: readonly number[], dtype: DType = "f32"): void {
    if (data.length !== numel(shape)) {
      throw new Error(`param "${name}": ${data.length} values for shape [${shape.join(", ")}] (${numel(shape)})`);
    }
    this.store.set(name, { data: toStorage(data, dtype), shape: [...shape], dtype });
  }

  /**
   * Stores a weight file's raw f32/f16/bf16 bytes (see {@link Executor.setParamBytes}): widened straight into the f32
   * array ONNX Runtime is fed (onnxruntime-node has no bf16 tensors), so a load holds one f32 copy of the tensor, not
   * the widened, rounded and narrowed copies `setParam` would make.
   */
  setParamBytes(name: string, bytes: Uint8Array, shape: readonly number[], dtype: DType): void {
    if (dtype !== "f32" && dtype !== "f16" && dtype !== "bf16") {
      throw new Error(`param "${name}": raw bytes of ${dtype} are not a weight file's dtype (f32, f16, bf16)`);
    }
    const want = numel(shape) * DTYPE_BYTES[dtype];
    if (bytes.byteLength !== want) {
      throw new Error(`param "${name}": ${bytes.byteLength} bytes for ${dtype}[${shape.join(", ")}] (${want})`);
    }
    const f = bytesToF32(bytes, dtype);
    // An aligned f32 input comes back as a view of the caller's bytes: keep a copy of our own.
    const data = f.buffer === bytes.buffer ? f.slice() : f;
    this.store.set(name, { data, shape: [...shape], dtype });
  }

  getParam(name: string): Promise<HostArray> {
    // After the runs issued before: an FFI run writes states in place off the event loop.
    return this.queue.then(() => {
      const p = this.store.get(name);
      if (!p) throw new Error(`no param "${name}" in the store`);
      if (p.dtype === "u32") return Uint32Array.from(p.data as BigInt64Array, (v) => Number(v));
      return p.data.slice() as Float32Array | Int32Array;
    });
  }

  /** Stores a param of zeros (see {@link Executor.setParamZeros}): one fresh array, no copy. */
  setParamZeros(name: string, shape: readonly number[], dtype: DType = "f32"): void {
    const n = numel(shape);
    const data = dtype === "i32" ? new Int32Array(n) : dtype === "u32" ? new BigInt64Array(n) : new Float32Array(n);
    this.store.set(name, { data, shape: [...shape], dtype });
  }

  getParamView(name: string): Promise<HostArray> {
    return this.queue.then(() => {
      const p = this.store.get(name);
      if (!p) throw new Error(`no param "${name}" in the store`);
      return p.dtype === "u32" ? Uint32Array.from(p.data as BigInt64Array, (v) => Number(v)) : p.data as Float32Array;
    });
  }

  hasParam(name: string): boolean {
    return this.store.has(name);
  }

  dispose(): void {
    this.store.clear();
    this.spares.clear();
  }

  /** Lowers `graph` and builds its onnxruntime session. */
  async compile(graph: Graph, opts: CompileOptions = {}): Promise<CompiledGraph> {
    // The fused head in chunks (lower_linear_ce.ts) where memory is what counts: graphs that write large states (full
    // and freeze steps, run without the arena). Elsewhere its [N, V] logits stay whole: chunks recompute them in the
    // backward (a 135M LoRA run: 10 steps ~1–3 s slower for ~300 MB less at its peak, far under its plan anyway).
    const headChunks = this.arenaFor(writtenBytes(graph)) ? "off" : "auto";
    const lowerOpts: LowerOptions = { outputs: opts.outputs, hostScatter: true, inPlaceStates: true, headChunks };
    let lowered: Lowered | undefined, session: Session | undefined;
    const on = this.opts.symbolic ?? Deno.env.get("WHETSTONE_ONNX_SYMBOLIC") !== "off";
    const sym = on ? await this.symbolic.get(graph, opts, lowerOpts) : undefined;
    if (sym) {
      try {
        session = await sym.session;
        lowered = sym.lowered;
      } catch (e) {
        // ONNX Runtime refused the symbolic model: this graph gets a session of its own shape.
        const why = `the symbolic model's session failed: ${(e as Error).message}`;
        this.sessions.fallbacks.push(why), OnnxExecutor.allSessions.fallbacks.push(why);
      }
    }
    if (!session || !lowered) {
      const l = lowerGraph(graph, lowerOpts);
      mark("lowering");
      session = await this.session(encodeModel(l.model), l.model.graph.nodes.length, stateBytes(l));
      lowered = l;
    }
    mark(`compile done (${sym ? "symbolic" : "per shape"})`);
    const stats: StepStats = { dispatches: 1, submits: 1, bytesReadBack: 0, arenaBytes: 0 };
    const [s, l] = [session, lowered];
    const run = (feeds: Record<string, ArrayLike<number>>, fetch?: readonly string[]) => {
      const result = this.queue.then(() => this.runOnce(s, l, completeFeeds(graph, feeds), fetch, stats));
      this.queue = result.catch(() => {});
      return result;
    };
    return { run, stats };
  }

  /** Whether a graph writing `stateBytes` of states runs with ONNX Runtime's CPU arena (see `session`). */
  private arenaFor(stateBytes: number): boolean {
    return this.opts.cpuArena ?? envArena() ?? stateBytes < NO_ARENA_STATE_BYTES;
  }

  /**
   * The session of an encoded model: from the model cache when it holds this model's optimized graph (loaded with
   * optimization off), else built, its optimized graph saved to the cache on the way when the model is cached.
   */
  private async session(bytes: Uint8Array, nodes: number, stateBytes: number): Promise<Session> {
    const arena = this.arenaFor(stateBytes);
    // Without the arena ONNX Runtime's tensors come from malloc: have glibc map the large ones on their own, so they
    // are given back as they die instead of staying resident in the heap (under the outputs' copies, at the least).
    // Measured on a 135M full step (batch 4 × 128): peak 3.59 → 3.41 GiB, resident between steps 3.0 → 1.9 GiB.
    if (!arena && setMmapThreshold(MMAP_THRESHOLD)) {
      // What loading the weights freed (file bytes, widened copies) goes back now, not after the first steps.
      collectGarbage();
      trimHeap();
    }
    const options: Ort.InferenceSession.SessionOptions = {
      executionProviders: ["cpu"],
      // Level "disabled": ONNX Runtime's level-"basic" transformers find little in a lowered graph (the builder already
      // shares equal nodes, and a symbolic step's shapes are computed at run time anyway; on a 135M LoRA step constant
      // folding removed ~660 small per-layer nodes of 19,815, which forced a second pass of ten whole-graph walks), yet
      // cost its session ~5 s (8.5 s against 3.4 s) and gained nothing on its steps or the decode; the losses are the
      // same, bit for bit (docs/benchmarks.md). "extended"/"all" fusions cost ~5 s more again and gained nothing
      // either.
      graphOptimizationLevel: "disabled",
      // ONNX Runtime's memory pattern replans the arena at each session's second run: one more run at the cost of a
      // first one (fresh memory) for every new step graph, and no measurable gain after (bench onnx_compile).
      enableMemPattern: false,
      // No arena for a graph that writes large states (full or freeze tuning: at least 64 MiB of weights and
      // optimizer states): an arena keeps the high-water mark of its session (one per compiled graph, so one per
      // padded length) for the session's life, ~1.5 GB each for a 135M full step; without it a run's tensors go back
      // to malloc as they die and every session shares one heap. The price is fresh pages for the large tensors of
      // every run (page faults: ~3× the faults of a step, docs/benchmarks.md), so LoRA steps, forward, eval and
      // decode graphs (smaller, run often) keep it. `cpuArena` overrides the choice.
      enableCpuMemArena: arena,
      // Config entries (onnxruntime-node's sessions; the FFI ones leave them out).
      extra: { optimization: { disable_specified_optimizers: UNUSED_OPTIMIZERS } },
      ...(this.opts.threads ? { intraOpNumThreads: this.opts.threads } : {}),
      ...this.opts.sessionOptions,
    };
    const ffi = this.ffi; // undefined where FFI cannot be reached: onnxruntime-node's sessions
    mark(`model of ${nodes} nodes ready for its session`);
    const create = async (model: Uint8Array | string, o: Ort.InferenceSession.SessionOptions): Promise<Session> => {
      this.sessions.created++, OnnxExecutor.allSessions.created++;
      const what = `${typeof model === "string" ? "from the cache" : "built"}, ${nodes} nodes${ffi ? ", ffi" : ""}`;
      if (!ffi) {
        const node = await this.ort.InferenceSession.create(model as Uint8Array, o);
        mark(`session create (${what})`);
        return { node };
      }
      const bytes = typeof model === "string" ? await Deno.readFile(model) : model;
      const { extra: _, ...fo } = o;
      const s = await ffi.createSession(bytes, fo as FfiSessionOptions);
      mark(`session create (${what})`);
      return { ffi: s };
    };
    const cache = this.opts.modelCache === false ? undefined : this.opts.modelCache ?? {};
    const dir = cache && (cache.dir ?? modelCacheDir());
    if (
      !cache || !dir || nodes < (cache.minNodes ?? 2000) || options.graphOptimizationLevel === "disabled" ||
      options.optimizedModelFilePath !== undefined
    ) return create(bytes, options);
    // Entries hold the lowered model's node order (node_order.ts); those saved before it are not taken.
    const key = await modelCacheKey(bytes, this.ort.env.versions.common, { ...options, nodeOrder: "lowered" });
    const hit = await cachedModel(dir, key).catch(() => undefined); // e.g. no read permission: build it
    if (hit) {
      try {
        return await create(hit, { ...options, graphOptimizationLevel: "disabled" });
      } catch {
        await Deno.remove(hit).catch(() => {}); // unreadable entry: rebuild it
      }
    }
    let tmp: string;
    try {
      tmp = await pendingPath(dir, key);
    } catch {
      return create(bytes, options); // no writable cache directory
    }
    let session: Session;
    try {
      // Quiet: onnxruntime warns that a level-"all" model may hold CPU-specific kernels (the key holds the CPU).
      session = await create(bytes, { logSeverityLevel: 3, ...options, optimizedModelFilePath: tmp });
    } catch {
      await Deno.remove(tmp).catch(() => {});
      return create(bytes, options); // the model itself fails (the error says why), or saving it did
    }
    // ONNX Runtime saves the nodes in its own order: the entry gets the lowered model's order back (node_order.ts).
    try {
      const ordered = reorderLike(await Deno.readFile(tmp), bytes);
      if (ordered) await Deno.writeFile(tmp, ordered);
    } catch {
      // unreadable: committed as saved (or not at all, below)
    }
    // A cache that cannot be written costs the next run the optimization again, nothing else.
    await commitModel(dir, key, tmp, cache.maxEntries).catch(() => Deno.remove(tmp).catch(() => {}));
    return session;
  }

  /** A 1-value run of a tiny session: onnxruntime-node then drops the previous run's answer (see runOnce). */
  private async releaseLastAnswer(): Promise<void> {
    this.releaser ??= (() => {
      const b = new OnnxBuilder();
      b.output(b.input("x", ONNX_TYPE.FLOAT, [1]), "y", ONNX_TYPE.FLOAT, [1]);
      return this.ort.InferenceSession.create(encodeModel(b.model("release")));
    })();
    await (await this.releaser).run({ x: new this.ort.Tensor("float32", new Float32Array(1), [1]) });
  }

  private async runOnce(
    session: Session,
    lowered: Lowered,
    feeds: Record<string, ArrayLike<number>>,
    fetch: readonly string[] | undefined,
    stats: StepStats,
  ): Promise<Record<string, HostArray>> {
    const inputs: RunTensor[] = [];
    for (const v of lowered.inputs) {
      const f = feeds[v.name];
      if (f === undefined) throw new Error(`missing feed "${v.name}" (${fmtInfo(v)})`);
      if (f.length !== numel(v.shape)) {
        throw new Error(`feed "${v.name}": expected ${numel(v.shape)} values for ${fmtInfo(v)}, got ${f.length}`);
      }
      inputs.push({ name: v.onnx, data: toStorage(f, v.dtype), shape: v.shape, dtype: v.dtype });
    }
    for (const p of lowered.params) {
      const s = this.store.get(p.name);
      if (!s) throw new Error(`param "${p.name}" (${fmtInfo(p)}) is not in the store; set it first`);
      if (s.dtype !== p.dtype || s.shape.join() !== p.shape.join()) {
        throw new Error(`param "${p.name}" is stored as ${fmtInfo(s)} but the graph declares ${fmtInfo(p)}`);
      }
      inputs.push({ name: p.onnx, data: s.data, shape: s.shape, dtype: s.dtype });
    }
    const wanted = fetch ?? lowered.outputs.map((o) => o.name);
    const outs = wanted.map((name) => {
      const o = lowered.outputs.find((x) => x.name === name);
      if (!o) throw new Error(`"${name}" is not an output of this compiled graph`);
      return o;
    });
    // States are written by onnxruntime straight into host arrays (preallocated outputs: no copy out of its
    // memory). One written in place (inplace.ts orders its writer after every reader) goes into its stored array
    // itself; any other into a spare array, which then becomes the stored value, the array it replaces the next spare.
    const fetches: RunOutput[] = [];
    const read = new Set([...outs.map((o) => o.onnx), ...lowered.scatters.flatMap((sc) => [sc.index, sc.value])]);
    for (const name of read) fetches.push({ name });
    const spares = new Map<string, Stored["data"]>();
    for (const st of lowered.states) {
      const cur = this.store.get(st.name)!;
      let into = cur.data;
      if (!st.inPlace) {
        let spare = this.spares.get(st.name);
        if (!spare || spare.length !== cur.data.length || spare.constructor !== cur.data.constructor) {
          spare = new (cur.data.constructor as new (n: number) => Stored["data"])(cur.data.length);
        }
        spares.set(st.name, spare);
        into = spare;
      }
      fetches.push({ name: st.onnx, into: { data: into, shape: st.shape, dtype: st.dtype } });
    }
    const res = "ffi" in session
      ? await this.runFfi(session.ffi, inputs, fetches)
      : await this.runNode(session.node, inputs, fetches);
    for (const [name, spare] of spares) {
      const old = this.store.get(name)!;
      this.store.set(name, { ...old, data: spare });
      this.spares.set(name, old.data);
    }
    // KV-cache rows: target[n, index[n, l]] = value[n, l] in the stored array itself (indices outside [0, C) skipped).
    for (const sc of lowered.scatters) {
      const t = this.store.get(sc.param)!.data as Float32Array | Int32Array;
      const index = res[sc.index].data as Int32Array, value = res[sc.value].data as Float32Array | Int32Array;
      const [N, C] = sc.shape, L = index.length / N, R = t.length / (N * C);
      for (let r = 0; r < N * L; r++) {
        const c = index[r];
        if (c >= 0 && c < C) t.set(value.subarray(r * R, (r + 1) * R), (Math.floor(r / L) * C + c) * R);
      }
    }
    const out: Record<string, HostArray> = {};
    let bytes = 0;
    for (const o of outs) {
      out[o.name] = hostOf(res[o.onnx], o.dtype);
      bytes += out[o.name].byteLength;
    }
    stats.bytesReadBack = bytes;
    return out;
  }

  /** A run over the C API: inputs and states are the host arrays themselves; the rest come back as fresh arrays. */
  private async runFfi(session: FfiSession, inputs: readonly RunTensor[], fetches: readonly RunOutput[]) {
    const got = await session.run(
      inputs.map((t) => ({ name: t.name, data: t.data, shape: t.shape })),
      fetches.map((f): FfiOutput => ({ name: f.name, into: f.into && { data: f.into.data, shape: f.into.shape } })),
    );
    const res: Record<string, { data: FfiData }> = {};
    fetches.forEach((f, i) => {
      if (!f.into) res[f.name] = got[i]!;
    });
    return res;
  }

  /** A run on onnxruntime-node's session (its copies of the states dropped and, when large, collected at once). */
  private async runNode(session: Ort.InferenceSession, inputs: readonly RunTensor[], fetches: readonly RunOutput[]) {
    const feeds: Record<string, Ort.Tensor> = {};
    for (const t of inputs) feeds[t.name] = tensorOf(this.ort, t.data, t.shape, t.dtype);
    const want: Record<string, Ort.Tensor | null> = {};
    for (const f of fetches) want[f.name] = f.into ? tensorOf(this.ort, f.into.data, f.into.shape, f.into.dtype) : null;
    const res: Record<string, Ort.Tensor> = { ...await session.run(feeds, want) };
    // onnxruntime-node hands every output back as a fresh copy, preallocated ones too: drop the copies of the
    // states at once, and when they are large collect them now, before the next run allocates its own.
    let copied = 0;
    for (const f of fetches) {
      if (!f.into) continue;
      copied += (res[f.name]?.data as ArrayBufferView | undefined)?.byteLength ?? 0;
      delete res[f.name];
    }
    if (copied >= GC_AFTER_BYTES) {
      // The binding's last answer stays reachable until its next call (measured: a 2 GiB answer survived a full
      // collection until another run): a 1-value run on a tiny session lets it go, then V8 collects it.
      await this.releaseLastAnswer();
      collectGarbage();
    }
    return res;
  }
}
