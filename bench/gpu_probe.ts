/**
 * GPU self-check, printed as JSON lines (one object a line, `"what"` naming it), quick (< 10 s on a
 * real GPU; a few more on lavapipe):
 * - `adapter`: name, vendor/architecture, fallback flag, subgroup sizes, the adapter's features, the
 *   features the engine requested, and Deno's version;
 * - `limits`: the device limits the kernels read;
 * - `probe`: the shader-f16 and subgroup known-answer kernels (engine/gpu/probes.ts) — ok, values, why not;
 * - `matmul` (unless `--no-matmul`): each matmul variant the adapter can run (plain, f16, subgroup)
 *   checked against a CPU matmul on small odd problems, then timed once on 2048³ (f32 operands, and
 *   an f16-stored B) — `error` and `gflops` per config;
 * - `done`: seconds taken.
 *
 * Run: `deno run -A --unstable-webgpu bench/gpu_probe.ts [--no-matmul]`. On software adapters the
 * matmul part runs only with `--matmul` (their shader compiles take minutes), without the timings.
 * @module
 */
import { openGpu } from "../engine/gpu/device.ts";
import { probeF16, probeSubgroups } from "../engine/gpu/probes.ts";
import {
  gpuContext,
  matmulError,
  type MatmulProblem,
  matmulProblem,
  matmulRun,
  problemInfo,
  timeDispatch,
} from "../engine/exec/tuner.ts";
import { tuningKey } from "../engine/exec/tuning_cache.ts";
import { configLabel, generateMatmul, type MatmulConfig } from "../kernels/matmul.ts";
import { configProblem } from "../kernels/matmul_gen.ts";

const t0 = performance.now();
const line = (what: string, o: Record<string, unknown>) => console.log(JSON.stringify({ what, ...o }));

const gpu = await openGpu();
const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
const info = (adapter?.info ?? {}) as unknown as Record<string, unknown>;
const infoKeys = ["vendor", "architecture", "device", "description", "subgroupMinSize", "subgroupMaxSize"];
line("adapter", {
  name: gpu.adapterName,
  tuningKey: tuningKey(gpu),
  isFallback: gpu.isFallback,
  ...Object.fromEntries(infoKeys.map((k) => [k, info[k]])),
  adapterFeatures: adapter ? [...adapter.features].sort() : [],
  requested: gpu.features,
  f16: gpu.f16,
  subgroups: gpu.subgroups,
  subgroupSize: gpu.subgroupSize,
  deno: Deno.version.deno,
});
line("limits", { ...gpu.limits, maxComputeWorkgroupSizeX: gpu.device.limits.maxComputeWorkgroupSizeX });
const has = (f: string) => gpu.features.includes(f);
line("probe", {
  name: "shader-f16",
  requested: has("shader-f16"),
  ...(has("shader-f16") ? await probeF16(gpu.device) : {}),
});
if (has("subgroups")) {
  for (const wg of [64, 128]) line("probe", { name: "subgroups", wg, ...(await probeSubgroups(gpu.device, wg)) });
} else {
  line("probe", { name: "subgroups", requested: false, why: "the adapter does not list the subgroups feature" });
}

const software = gpu.isFallback || /llvmpipe|lavapipe|swiftshader/i.test(gpu.adapterName);
if (software && !Deno.args.includes("--matmul")) {
  line("matmul", { skipped: "software adapter (minutes of shader compiles here); --matmul runs the checks anyway" });
} else if (!Deno.args.includes("--no-matmul")) {
  const ctx = gpuContext(gpu);
  const S = gpu.subgroupSize;
  const configs: MatmulConfig[] = [
    { wgX: 16, wgY: 16, tm: 4, tn: 4, tk: 16, vec: false },
    { wgX: 16, wgY: 16, tm: 4, tn: 4, tk: 16, vec: false, f16: true },
    { wgX: 16, wgY: 16, tm: 4, tn: 4, tk: 32, vec: false, f16: true },
    { wgX: 16, wgY: 16, tm: 4, tn: 4, tk: 0, vec: true },
    { wgX: 16, wgY: 16, tm: 4, tn: 4, tk: 0, vec: true, f16: true },
    ...(S ? [[4, 4, 4], [4, 8, 4], [8, 4, 4], [2, 8, 8]] : []).map(([wgY, tm, tn]) => ({
      wgX: S,
      wgY,
      tm,
      tn,
      tk: 0,
      vec: true,
      sg: true,
    })),
  ];
  const small: MatmulProblem[] = [
    matmulProblem(37, 41, 67, { batch: [2], bBatch: false }),
    matmulProblem(33, 20, 52, { transB: true, dtypeB: "f16" }),
    matmulProblem(5, 44, 36, { transA: true, dtypeA: "f16", dtypeB: "f16" }),
  ];
  const big = [matmulProblem(2048, 2048, 2048), matmulProblem(2048, 2048, 2048, { transB: true, dtypeB: "f16" })];
  for (const cfg of configs) {
    const problem = configProblem(cfg, ctx);
    if (problem) {
      line("matmul", { config: configLabel(cfg), skipped: problem });
      continue;
    }
    const out: Record<string, unknown> = { config: configLabel(cfg) };
    try {
      let worst = 0;
      for (const p of small) {
        const run = await matmulRun(gpu, p, generateMatmul([p.a, p.b], problemInfo(p).out, p.attrs, cfg, ctx));
        await run.run(1);
        worst = Math.max(worst, await matmulError(run, p));
        run.destroy();
      }
      out.error = worst;
      if (!software) { // 2048³ takes seconds a dispatch on lavapipe
        for (const p of big) {
          const run = await matmulRun(gpu, p, generateMatmul([p.a, p.b], problemInfo(p).out, p.attrs, cfg, ctx));
          const t = await timeDispatch(run, 40, 2);
          out[`gflops ${problemInfo(p).label}`] = Math.round(problemInfo(p).flops / t.best / 1e6);
          run.destroy();
        }
      }
    } catch (e) {
      out.failed = (e as Error).message.slice(0, 400);
    }
    line("matmul", out);
  }
}
line("done", { seconds: +((performance.now() - t0) / 1000).toFixed(2) });
