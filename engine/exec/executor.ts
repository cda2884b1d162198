/**
 * The interface every executor implements (reference, WebGPU, later ONNX Runtime).
 * @module
 */
import type { Graph } from "../graph/graph.ts";
import type { DType } from "../graph/types.ts";

/** Host data for feeds, params and fetched outputs. */
export type HostArray = Float64Array | Float32Array | Int32Array | Uint32Array | Uint16Array;

/** Per-step counters. */
export interface StepStats {
  dispatches: number;
  submits: number;
  bytesReadBack: number;
  /** Planned peak bytes of the intermediate arena. */
  arenaBytes: number;
  /** Device bytes this compiled graph allocated for itself (arena, inputs, constants, kernel scratch), if known. */
  ownedBytes?: number;
}

/** A graph compiled for one executor; run it once per step. */
export interface CompiledGraph {
  /**
   * Writes `feeds`, runs the graph once, and resolves with the outputs in `fetch` (all planned outputs
   * when omitted). Calls may overlap: a step can be issued before the previous one's outputs arrive.
   */
  run(feeds: Record<string, ArrayLike<number>>, fetch?: readonly string[]): Promise<Record<string, HostArray>>;
  /** Counters of the last run. */
  readonly stats: StepStats;
}

/**
 * The sizes a graph was traced at (batch, padded length, cache capacity: whatever the caller pads to) and how to
 * trace it at others. The ONNX Runtime executor uses it to build one model with symbolic dims for every size
 * (onnx/symbolic.ts); the others ignore it.
 */
export interface SymbolicSizes {
  /**
   * The sizes, by name, in probe order: the executor traces at small probe sizes, a later name's larger than an
   * earlier's (name a cache capacity after the lengths it holds).
   */
  sizes: Record<string, number>;
  /** The same graph traced at other sizes (pure: no effect on the executor or the model). */
  trace(sizes: Record<string, number>): Graph;
}

/** Compile options. */
export interface CompileOptions {
  /** The graph's sizes and how to trace it at others: lets an executor compile once for every size. */
  symbolic?: SymbolicSizes;
  /** Outputs this compiled graph can fetch (default: all graph outputs). */
  outputs?: readonly string[];
  /**
   * WebGPU: fuse elementwise chains into one kernel each and into matmul / reduction epilogues and reduction
   * prologues (engine/exec/fuse.ts). Default on; `WHETSTONE_FUSE=off` in the environment turns it off. Other
   * executors ignore it.
   */
  fuse?: boolean;
  /**
   * WebGPU: merge independent launches with the same workgroup size into one dispatch (engine/exec/batch.ts).
   * Default: as `fuse`.
   */
  batch?: boolean;
}

/** An executor with a persistent parameter store shared by all graphs it compiles. */
export interface Executor {
  readonly name: string;
  compile(graph: Graph, opts?: CompileOptions): Promise<CompiledGraph>;
  /** Creates or overwrites a stored param/state. */
  setParam(name: string, data: ArrayLike<number>, shape: readonly number[], dtype?: DType): void;
  /**
   * Optional: creates or overwrites a stored param from its raw little-endian bytes in `dtype` (f32, f16 or bf16, as
   * a safetensors file holds them). The executor takes the bytes over (the caller keeps no reference): with no
   * decoding and no second host copy where it stores that dtype as it is. Callers go through `setParamFromBytes`
   * (param_bytes.ts), which decodes to f32 and calls {@link setParam} on executors without it.
   */
  setParamBytes?(name: string, bytes: Uint8Array, shape: readonly number[], dtype: DType): void;
  /**
   * Optional: creates or overwrites a stored param of zeros, as `setParam` with zeros would, without the caller's
   * array and the executor's copy of it (AdamW's states of a 135M full run are 1.1 GB).
   */
  setParamZeros?(name: string, shape: readonly number[], dtype?: DType): void;
  /** Reads a stored param back as f32 (f64 on the reference). */
  getParam(name: string): Promise<HostArray>;
  /**
   * Optional: the stored param itself, not a copy, after the runs issued before (as {@link getParam}); a param stored
   * in another type than it is read as comes converted. Read-only, and valid only until the next run is issued: runs
   * write states in place. For writing a checkpoint without a copy of every weight and state.
   */
  getParamView?(name: string): Promise<HostArray>;
  hasParam(name: string): boolean;
  /** Releases device memory. */
  dispose(): void;
}
