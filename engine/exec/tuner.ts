/**
 * The matmul tuner: for each shape class it times every candidate config on the real device (after
 * checking each against a CPU matmul on a small problem of the same class, dropping the wrong or the
 * ones that fail to compile), keeps the fastest, and caches it per adapter name (see
 * `tuning_cache.ts`), where every executor on that adapter loads it at start-up.
 *
 * @example
 * ```ts
 * const ex = await WebGpuExecutor.create();
 * await tuneMatmul(ex, [matmulProblem(1024, 1024, 1024)]);
 * ```
 * @module
 */
import "../graph/ops/matmul.ts";
import { getOp } from "../graph/op.ts";
import { type MatmulAttrs, matmulDims } from "../graph/ops/matmul.ts";
import { type DType, numel, type TensorInfo } from "../graph/types.ts";
import type { Gpu } from "../gpu/device.ts";
import type { KernelContext, Lowered } from "../../kernels/kernel.ts";
import {
  configLabel,
  generateMatmul,
  matmulCandidates,
  type MatmulConfig,
  matmulShapeClass,
  matmulVariants,
  pickMatmulConfig,
} from "../../kernels/matmul.ts";
import { decodeHost, encodeHost } from "./webgpu.ts";
import { roundTo } from "./dtype.ts";
import { mulberry32 } from "../util/rng.ts";
import { adapterKind, loadTuning, saveTuning, tuningKey, tuningPath } from "./tuning_cache.ts";

/** One matmul problem: operand infos and transpose flags. */
export interface MatmulProblem {
  a: TensorInfo;
  b: TensorInfo;
  attrs: MatmulAttrs;
}

/** op(A)[batch, M, K] · op(B)[batch, K, N] as a problem (B's batch omitted when `bBatch` is false). */
export function matmulProblem(
  M: number,
  N: number,
  K: number,
  opts: { batch?: number[]; bBatch?: boolean; transA?: boolean; transB?: boolean; dtypeA?: DType; dtypeB?: DType } = {},
): MatmulProblem {
  const batch = opts.batch ?? [];
  const transA = !!opts.transA, transB = !!opts.transB;
  return {
    a: { shape: [...batch, ...(transA ? [K, M] : [M, K])], dtype: opts.dtypeA ?? "f32" },
    b: { shape: [...(opts.bBatch === false ? [] : batch), ...(transB ? [N, K] : [K, N])], dtype: opts.dtypeB ?? "f32" },
    attrs: { transA, transB },
  };
}

/** Output info (f32), flop count and a label of a problem. Operands may have different dtypes. */
export function problemInfo(p: MatmulProblem): { out: TensorInfo; flops: number; label: string } {
  const { batch, M, K, N } = matmulDims(p.a, p.b, p.attrs);
  const shape = [...batch, M, N];
  const t = `${p.attrs.transA ? "ᵀ" : ""}·[${p.b.shape}]${p.attrs.transB ? "ᵀ" : ""}`;
  return {
    out: { shape, dtype: "f32" },
    flops: 2 * numel(shape) * K,
    label: `[${p.a.shape}] ${p.a.dtype}${t} ${p.b.dtype}`,
  };
}

/** Kernel context of a bare GPU (no tuned entries but its adapter kind). */
export function gpuContext(gpu: Gpu): KernelContext {
  const ctx: KernelContext = {
    f16: gpu.f16,
    maxWorkgroupsPerDim: gpu.limits.maxComputeWorkgroupsPerDimension,
    maxWorkgroupStorage: gpu.limits.maxComputeWorkgroupStorageSize,
    maxInvocations: gpu.limits.maxComputeInvocationsPerWorkgroup,
    subgroupSize: gpu.subgroupSize,
    tuned: new Map(),
  };
  loadTuning(ctx.tuned, gpu, "/nonexistent/tuning.json");
  return ctx;
}

/** Deterministic data in [-1, 1), rounded to `dtype`. */
function randomData(n: number, seed: number, dtype: DType): Float64Array {
  const r = mulberry32(seed);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.fround(2 * r() - 1);
  return roundTo(out, dtype);
}

/** A problem set up on the device: operand buffers with random data and one lowered kernel. */
export interface MatmulRun {
  /** Encodes `reps` dispatches in one submit and waits; resolves with the wall time in ms. */
  run(reps: number): Promise<number>;
  /** Reads the output back. */
  read(): Promise<Float32Array>;
  /** Host copies of the operands (f64, rounded to their dtypes). */
  readonly a: Float64Array;
  readonly b: Float64Array;
  /** ms spent building the pipeline (shader compile). */
  readonly compileMs: number;
  destroy(): void;
}

/** Sets up `problem` with `lowered` (one launch) on `gpu`; throws if WebGPU rejects the kernel. */
export async function matmulRun(gpu: Gpu, problem: MatmulProblem, lowered: Lowered): Promise<MatmulRun> {
  const dev = gpu.device;
  const { out } = problemInfo(problem);
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  const a = randomData(numel(problem.a.shape), 1, problem.a.dtype);
  const b = randomData(numel(problem.b.shape), 2, problem.b.dtype);
  const bufs: GPUBuffer[] = [];
  const make = (bytes: number, data?: ArrayBuffer) => {
    const buf = dev.createBuffer({ size: Math.max(16, Math.ceil(bytes / 16) * 16), usage });
    if (data) dev.queue.writeBuffer(buf, 0, data);
    bufs.push(buf);
    return buf;
  };
  const A = make(numel(problem.a.shape) * 4, encodeHost(a, problem.a.dtype));
  const B = make(numel(problem.b.shape) * 4, encodeHost(b, problem.b.dtype));
  const C = make(numel(out.shape) * 4);
  if (lowered.launches.length !== 1) throw new Error(`expected one launch, got ${lowered.launches.length}`);
  const l = lowered.launches[0];
  dev.pushErrorScope("validation");
  const t0 = performance.now();
  const module = dev.createShaderModule({ code: l.code });
  const pipeline = dev.createComputePipeline({ layout: "auto", compute: { module, entryPoint: l.entry ?? "main" } });
  const compileMs = performance.now() - t0;
  const byRef = (r: (typeof l.bindings)[number]) => ("input" in r ? [A, B][r.input] : C);
  const bind = dev.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: l.bindings.map((r, i) => ({ binding: i, resource: { buffer: byRef(r) } })),
  });
  const err = await dev.popErrorScope();
  if (err) {
    bufs.forEach((x) => x.destroy());
    throw new Error(`WebGPU rejected the kernel: ${err.message}`);
  }
  return {
    a,
    b,
    compileMs,
    async run(reps) {
      const t0 = performance.now();
      const enc = dev.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bind);
      for (let i = 0; i < reps; i++) pass.dispatchWorkgroups(...l.workgroups);
      pass.end();
      dev.queue.submit([enc.finish()]);
      await dev.queue.onSubmittedWorkDone();
      return performance.now() - t0;
    },
    async read() {
      const bytes = numel(out.shape) * 4;
      const rd = dev.createBuffer({
        size: Math.max(16, Math.ceil(bytes / 16) * 16),
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });
      const enc = dev.createCommandEncoder();
      enc.copyBufferToBuffer(C, 0, rd, 0, rd.size);
      dev.queue.submit([enc.finish()]);
      await rd.mapAsync(GPUMapMode.READ);
      const got = decodeHost(rd.getMappedRange(), numel(out.shape), "f32") as Float32Array;
      rd.unmap();
      rd.destroy();
      return got;
    },
    destroy: () => bufs.forEach((x) => x.destroy()),
  };
}

/**
 * Max error of the device output against f64 dot products, relative to max(1, max |reference|), over
 * `samples` output entries (all when 0).
 */
export async function matmulError(run: MatmulRun, problem: MatmulProblem, samples = 0): Promise<number> {
  const got = await run.read();
  const { out } = problemInfo(problem);
  const ref = getOp("matmul").ref;
  const n = got.length;
  if (!samples || samples >= n) {
    const [want] = ref([{ data: run.a, ...problem.a }, { data: run.b, ...problem.b }], problem.attrs, [out]);
    return maxRel(got, want, (i) => i, n);
  }
  // Sampled: compute single entries by slicing one output element at a time through the reference.
  const shape = out.shape, r = shape.length, M = shape[r - 2], N = shape[r - 1];
  const ra = problem.a.shape.length, rb = problem.b.shape.length;
  const K = problem.attrs.transA ? problem.a.shape[ra - 2] : problem.a.shape[ra - 1];
  if (ra !== 2 || rb !== 2) throw new Error("sampled checks support unbatched problems only");
  const picks = Array.from({ length: samples }, (_, s) => Math.floor(((s * 2654435761) % 2 ** 32) / 2 ** 32 * n));
  const want = picks.map((idx) => {
    const i = Math.floor(idx / N), j = idx % N;
    let acc = 0;
    for (let k = 0; k < K; k++) {
      const x = run.a[problem.attrs.transA ? k * M + i : i * K + k];
      const y = run.b[problem.attrs.transB ? j * K + k : k * N + j];
      acc += x * y;
    }
    return acc;
  });
  return maxRel(got, Float64Array.from(want), (s) => picks[s], picks.length);
}

function maxRel(got: Float32Array, want: Float64Array, at: (s: number) => number, n: number): number {
  let m = 1, d = 0;
  for (let s = 0; s < n; s++) {
    m = Math.max(m, Math.abs(want[s]));
    const e = Math.abs(got[at(s)] - want[s]);
    if (!(e <= d)) d = Number.isNaN(e) ? Infinity : e;
  }
  return d / m;
}

/** Timing of a kernel: ms per dispatch, best and median over the timed submits. */
export interface Timing {
  best: number;
  median: number;
  /** The untimed warm-up dispatch (ms) that sized the timed submits. */
  first: number;
}

/**
 * ms per dispatch of `run`: after two warm-up dispatches (skipped when `warm` gives the ms of one made
 * after compiling), `trials` submits of about `targetMs` each, several dispatches a submit when one is
 * shorter, less the round trip of an empty submit. The best is the number least disturbed by other
 * work on the machine; the median is reported beside it.
 */
export async function timeDispatch(run: MatmulRun, targetMs = 200, trials = 3, warm?: number): Promise<Timing> {
  const first = warm ?? (await run.run(1), await run.run(1)); // the very first may include compiling
  let trip = Infinity; // an empty submit's round trip, taken off each timed submit
  for (let i = 0; i < 3; i++) trip = Math.min(trip, await run.run(0));
  const reps = Math.max(1, Math.min(1000, Math.round(targetMs / Math.max(first - trip, 0.01))));
  const ts: number[] = [];
  for (let t = 0; t < trials; t++) {
    const ms = await run.run(reps);
    ts.push(Math.max(ms - trip, ms / 2) / reps);
  }
  ts.sort((x, y) => x - y);
  return { best: ts[0], median: ts[Math.floor(ts.length / 2)], first };
}

/** A small problem of the same shape class as `p` (layout, dtypes, alignment, size kind kept). */
export function checkProblem(p: MatmulProblem): MatmulProblem {
  const cls = matmulShapeClass(p.a, p.b, p.attrs);
  const a4 = cls.endsWith(":a4");
  const size = cls.split(":")[1];
  const M = size === "rows" ? (a4 ? 4 : 3) : a4 ? 36 : 33;
  const N = size === "cols" ? (a4 ? 4 : 5) : a4 ? 44 : 17;
  const K = a4 ? 52 : 65;
  return matmulProblem(M, N, K, { ...p.attrs, batch: [2], dtypeA: p.a.dtype, dtypeB: p.b.dtype });
}

/** One candidate's outcome. */
export interface Trial {
  config: MatmulConfig;
  /** Best ms per dispatch on the tuned problem, when it ran. */
  ms?: number;
  /** ms to build its pipeline and run it once on the small check problem. */
  compileMs?: number;
  /** Why it was dropped. */
  dropped?: string;
}

/** The tuner's result for one shape class. */
export interface TuneResult {
  shapeClass: string;
  problem: string;
  best: MatmulConfig;
  ms: number;
  gflops: number;
  trials: Trial[];
}

/** Options of {@link tuneMatmul}. */
export interface TuneOptions {
  /**
   * Candidate configs (default: {@link matmulCandidates} of the adapter kind with the variants the
   * adapter and each problem's operands allow, {@link matmulVariants}).
   */
  candidates?: MatmulConfig[];
  /** Approximate ms per timed submit (default 150). */
  targetMs?: number;
  /** Timed submits per candidate (default 3). */
  trials?: number;
  /** Drop candidates whose pipeline takes longer to build (default 20 s; every shape compiles its own, once per machine with a shader cache). */
  maxCompileMs?: number;
  /** Write the results to the cache: true for the default path, a path, or false (default true). */
  save?: boolean | string;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

type Tunable = Gpu | { gpu: Gpu; ctx: KernelContext };

/**
 * Tunes the matmul for each problem's shape class on the device of `target` (an executor or a bare
 * GPU): checks every candidate on a small problem of that class, times the correct ones on the
 * problem itself, keeps the fastest (its output checked on sampled entries), stores it in the
 * executor's `ctx.tuned` when given one, and in the cache file (unless `save` is false).
 */
export async function tuneMatmul(
  target: Tunable,
  problems: MatmulProblem[],
  opts: TuneOptions = {},
): Promise<TuneResult[]> {
  const gpu = "ctx" in target ? target.gpu : target;
  const ctx = "ctx" in target ? target.ctx : gpuContext(gpu);
  const log = opts.log ?? (() => {});
  const results: TuneResult[] = [];
  const saved: Record<string, MatmulConfig> = {};
  for (const p of problems) {
    const cls = matmulShapeClass(p.a, p.b, p.attrs);
    if (results.some((r) => r.shapeClass === cls)) continue;
    const { out, flops, label } = problemInfo(p);
    const candidates = opts.candidates ?? matmulCandidates(adapterKind(gpu), matmulVariants(p.a, p.b, ctx));
    const small = checkProblem(p);
    const smallOut = problemInfo(small).out;
    const trials: Trial[] = [];
    let best: { cfg: MatmulConfig; ms: number } | undefined;
    for (const cfg of candidates) {
      const trial: Trial = { config: cfg };
      trials.push(trial);
      let run: MatmulRun | undefined;
      try {
        // Build time: pipeline creation plus the first dispatch (software adapters compile there).
        const t0 = performance.now();
        run = await matmulRun(gpu, small, generateMatmul([small.a, small.b], smallOut, small.attrs, cfg, ctx));
        await run.run(1);
        trial.compileMs = performance.now() - t0;
        if (trial.compileMs > (opts.maxCompileMs ?? 20000)) {
          throw new Error(`pipeline build took ${trial.compileMs.toFixed(0)} ms`);
        }
        const e = await matmulError(run, small);
        // f32 operands rounded to f16 (allowed by the caller) are off by f16 rounding, not by a bug.
        const tol = cfg.f16 && ctx.matmulF16Operands ? 1e-2 : 1e-4;
        if (!(e <= tol)) throw new Error(`wrong result on ${problemInfo(small).label}: error ${e.toExponential(2)}`);
        run.destroy();
        run = await matmulRun(gpu, p, generateMatmul([p.a, p.b], out, p.attrs, cfg, ctx));
        await run.run(1); // compiles on software adapters
        const probe = await run.run(1);
        if (best && probe > 3 * best.ms + 30) {
          throw new Error(`slow: ${probe.toFixed(1)} ms vs best ${best.ms.toFixed(1)} ms`);
        }
        trial.ms = (await timeDispatch(run, opts.targetMs ?? 150, opts.trials ?? 3, probe)).best;
        if (!best || trial.ms < best.ms) best = { cfg, ms: trial.ms };
        log(`${cls} ${configLabel(cfg)}: ${trial.ms.toFixed(2)} ms, ${(flops / trial.ms / 1e6).toFixed(2)} GFLOPS`);
      } catch (e) {
        trial.dropped = (e as Error).message;
        log(`${cls} ${configLabel(cfg)}: dropped: ${trial.dropped}`);
      } finally {
        run?.destroy();
      }
    }
    if (!best) throw new Error(`no matmul candidate ran correctly for ${cls} (${label})`);
    const run = await matmulRun(gpu, p, generateMatmul([p.a, p.b], out, p.attrs, best.cfg, ctx));
    await run.run(1);
    const unbatched = p.a.shape.length === 2 && p.b.shape.length === 2;
    const err = unbatched || flops < 2 ** 28 ? await matmulError(run, p, unbatched ? 256 : 0) : 0;
    run.destroy();
    if (!(err <= (best.cfg.f16 && ctx.matmulF16Operands ? 1e-2 : 1e-3))) {
      throw new Error(`tuned matmul ${configLabel(best.cfg)} is wrong on ${label}: error ${err}`);
    }
    results.push({
      shapeClass: cls,
      problem: label,
      best: best.cfg,
      ms: best.ms,
      gflops: flops / best.ms / 1e6,
      trials,
    });
    saved[cls] = best.cfg;
    if ("ctx" in target) target.ctx.tuned.set(cls, best.cfg);
  }
  if (opts.save !== false && Object.keys(saved).length) {
    await saveTuning(tuningKey(gpu), saved, typeof opts.save === "string" ? opts.save : tuningPath());
  }
  return results;
}

/** The config the lowering would use for `p` on `ctx` now (tuned or default). */
export function currentConfig(p: MatmulProblem, ctx: KernelContext): MatmulConfig {
  return pickMatmulConfig(p.a, p.b, p.attrs, ctx);
}

if (import.meta.main) {
  // deno run -A --unstable-webgpu engine/exec/tuner.ts [size ...] [--f16] [--target-ms=N]: tunes square
  // matmuls of each size in the nn, nt and tn layouts (f32; with --f16 also with f16-stored operands,
  // where the f16 variant competes) and saves the results for this adapter and its features.
  const { openGpu } = await import("../gpu/device.ts");
  const gpu = await openGpu();
  const flags = Deno.args.filter((a) => a.startsWith("--"));
  const nums = Deno.args.filter((a) => !a.startsWith("--")).map(Number);
  const sizes = nums.length ? nums : [256, 1024];
  const dtypes: DType[] = flags.includes("--f16") ? ["f32", "f16"] : ["f32"];
  const targetMs = Number(flags.find((f) => f.startsWith("--target-ms="))?.split("=")[1] ?? 150);
  const problems = sizes.flatMap((s) =>
    dtypes.flatMap((d) => [
      matmulProblem(s, s, s, { dtypeA: d, dtypeB: d }),
      matmulProblem(s, s, s, { transB: true, dtypeA: d, dtypeB: d }),
      matmulProblem(s, s, s, { transA: true, dtypeA: d, dtypeB: d }),
    ])
  );
  console.log(`tuning ${problems.length} problems on ${tuningKey(gpu)}, cache ${tuningPath()}`);
  for (const r of await tuneMatmul(gpu, problems, { targetMs, log: (l) => console.log(`  ${l}`) })) {
    console.log(`${r.shapeClass}: ${configLabel(r.best)}, ${r.gflops.toFixed(2)} GFLOPS on ${r.problem}`);
  }
}
