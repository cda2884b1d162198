/**
 * Bench "matmul": GFLOPS of square f32 matmuls (256..2048) with the tuned kernel (the config the
 * executor would pick: tuned from the cache, else the adapter default) and the naive baseline, and
 * their ratio; plus f16-stored operands (unpacked in the kernel, f32 accumulate) with the tuned kernel.
 *
 * Each number is the best of several timed submits (dispatches batched a submit), because other work
 * on a shared machine only ever slows a run down; the median is given beside it. The naive kernel
 * stops at 1024 (at 2048 one dispatch takes about half a minute on lavapipe).
 * @module
 */
import type { Bench, Measurement } from "./report.ts";
import { WebGpuExecutor } from "../engine/exec/webgpu.ts";
import { matmulError, matmulProblem, matmulRun, problemInfo, timeDispatch } from "../engine/exec/tuner.ts";
import { configLabel, generateMatmul, matmulShapeClass, naiveMatmul, pickMatmulConfig } from "../kernels/matmul.ts";
import type { DType } from "../engine/graph/types.ts";
import type { Lowered } from "../kernels/kernel.ts";

const SIZES = [256, 512, 1024, 2048];
const NAIVE_MAX = 1024;

/** The matmul bench. */
export const matmulBench: Bench = {
  name: "matmul",
  description: `square matmul GFLOPS, tuned vs naive (naive up to ${NAIVE_MAX}), f32 and f16-stored operands`,
  async *run(): AsyncIterable<Measurement> {
    const ex = await WebGpuExecutor.create();
    const { gpu, ctx } = ex;
    const measure = async (dtype: DType, size: number, lowered: (p: ReturnType<typeof matmulProblem>) => Lowered) => {
      const p = matmulProblem(size, size, size, { dtypeA: dtype, dtypeB: dtype });
      const run = await matmulRun(gpu, p, lowered(p));
      try {
        const t = await timeDispatch(run, 300, size >= 2048 ? 3 : 5);
        const err = await matmulError(run, p, 64);
        if (!(err <= 1e-3)) throw new Error(`matmul ${size}³ ${dtype} is wrong: error ${err}`);
        const { flops } = problemInfo(p);
        return { gflops: flops / t.best / 1e6, median: flops / t.median / 1e6, ms: t.best };
      } finally {
        run.destroy();
      }
    };
    const round = (x: number) => Math.round(x * 100) / 100;
    for (const size of SIZES) {
      for (const dtype of ["f32", "f16"] as DType[]) {
        const p = matmulProblem(size, size, size, { dtypeA: dtype, dtypeB: dtype });
        const cfg = pickMatmulConfig(p.a, p.b, p.attrs, ctx);
        const tuned = ctx.tuned.has(matmulShapeClass(p.a, p.b, p.attrs));
        const t = await measure(dtype, size, (q) => generateMatmul([q.a, q.b], problemInfo(q).out, q.attrs, cfg, ctx));
        const params = { dtype, size, kernel: "tuned", config: configLabel(cfg), tuned, median: round(t.median) };
        const note: Record<string, string> = dtype === "f32" && size > NAIVE_MAX
          ? { naive: `skipped above ${NAIVE_MAX}` }
          : {};
        yield { bench: "matmul", metric: "gflops", value: round(t.gflops), unit: "GFLOPS", ...params, ...note };
        if (dtype !== "f32" || size > NAIVE_MAX) continue;
        const n = await measure(
          dtype,
          size,
          (q) => naiveMatmul({ inputs: [q.a, q.b], outputs: [problemInfo(q).out], attrs: q.attrs }, ctx),
        );
        yield {
          bench: "matmul",
          metric: "gflops",
          value: round(n.gflops),
          unit: "GFLOPS",
          dtype,
          size,
          kernel: "naive",
          median: round(n.median),
        };
        yield {
          bench: "matmul",
          metric: "speedup",
          value: round(t.gflops / n.gflops),
          unit: "x",
          dtype,
          size,
          kernel: "tuned/naive",
        };
      }
    }
    ex.dispose();
  },
};
