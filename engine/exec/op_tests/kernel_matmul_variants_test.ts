/**
 * The matmul's f16 and subgroup variants: refused where the adapter lacks the feature, offered to the
 * tuner where it has it, compile-checked on any adapter (engine/exec/op_tests/wgsl_check.ts), the
 * subgroup kernel's indexing run for real through its workgroup-memory emulation, and — where the
 * adapter has the feature — each variant run against a CPU matmul and through the matmul conformance
 * cases. Tests that need a feature this adapter lacks are ignored with a message saying so.
 */
import assert from "node:assert/strict";
import { hasGpu, openGpu } from "../../gpu/device.ts";
import { gpuContext, matmulError, type MatmulProblem, matmulProblem, matmulRun, problemInfo } from "../tuner.ts";
import {
  ADAPTER_KIND_KEY,
  configLabel,
  generateMatmul,
  generateMatmulSg,
  matmulCandidates,
  type MatmulConfig,
  matmulVariants,
} from "../../../kernels/matmul.ts";
import { configProblem } from "../../../kernels/matmul_gen.ts";
import type { KernelContext } from "../../../kernels/kernel.ts";
import { tuningKey } from "../tuning_cache.ts";
import { compileErrors, f16AsF32, onlyMissingSubgroups } from "./wgsl_check.ts";
import { cases as matmulCases } from "../../graph/ops/matmul_cases.ts";
import { checkAgainstReference } from "../testing/harness.ts";
import { WebGpuExecutor } from "../webgpu.ts";

const gpu = await hasGpu();
const facts = gpu ? await openGpu() : undefined;
const hasF16 = !!facts?.f16, sgSize = facts?.subgroupSize ?? 0;
if (gpu && !hasF16) {
  console.warn(
    `matmul variants: SKIP the f16 runs: ${facts!.adapterName} has no working shader-f16 (compile checks only)`,
  );
}
if (gpu && !sgSize) {
  console.warn(
    `matmul variants: SKIP the subgroup runs: ${
      facts!.adapterName
    } has no fixed-size subgroups (emulation and compile checks only)`,
  );
}

const ctxOf = (over: Partial<KernelContext> = {}): KernelContext => ({
  f16: false,
  maxWorkgroupsPerDim: 65535,
  maxWorkgroupStorage: 16384,
  maxInvocations: 256,
  tuned: new Map([[ADAPTER_KIND_KEY, "gpu"]]),
  ...over,
});

const sg = (wgX: number, wgY: number, tm: number, tn: number, vec = true): MatmulConfig => ({
  wgX,
  wgY,
  tm,
  tn,
  tk: 0,
  vec,
  sg: true,
});
const h = (c: Omit<MatmulConfig, "f16">): MatmulConfig => ({ ...c, f16: true });

// Every layout, odd and aligned sizes, K tails shorter and longer than a subgroup, batch broadcast,
// 16-bit operands (f16 native in the f16 variant, bf16 unpacked).
const problems: [string, MatmulProblem][] = [
  ["odd, batched, B broadcast", matmulProblem(37, 41, 20, { batch: [2], bBatch: false })],
  ["Aᵀ·Bᵀ, bf16 B, K=65", matmulProblem(33, 17, 65, { transA: true, transB: true, dtypeB: "bf16" })],
  ["aligned, batched", matmulProblem(36, 44, 52, { batch: [2] })],
  ["rows, f16·f16ᵀ", matmulProblem(3, 45, 28, { transB: true, dtypeA: "f16", dtypeB: "f16" })],
  ["f16 A, Aᵀ, aligned", matmulProblem(16, 8, 12, { transA: true, dtypeA: "f16", batch: [3], bBatch: false })],
  ["f32·f16 B, aligned", matmulProblem(20, 16, 40, { dtypeB: "f16" })],
  ["cols, K=1", matmulProblem(13, 3, 1)],
  ["x·Wᵀ, K over two subgroup chunks", matmulProblem(10, 24, 72, { transB: true })],
];

Deno.test("matmul variants: refused with the reason where the adapter lacks what they need", () => {
  const base = { wgX: 8, wgY: 8, tm: 4, tn: 4, tk: 8, vec: false };
  assert.match(configProblem(h(base), ctxOf())!, /shader-f16/);
  assert.equal(configProblem(h(base), ctxOf({ f16: true })), undefined);
  assert.match(configProblem(sg(32, 4, 4, 4), ctxOf())!, /subgroups/);
  assert.match(configProblem(sg(32, 4, 4, 4), ctxOf({ subgroupSize: 16 }))!, /wgX = the subgroup size 16/);
  assert.match(configProblem({ ...sg(32, 4, 4, 4), tk: 8 }, ctxOf({ subgroupSize: 32 }))!, /tk 0/);
  assert.equal(configProblem(sg(32, 4, 4, 4), ctxOf({ subgroupSize: 32 })), undefined);
  const p = matmulProblem(8, 8, 8);
  assert.throws(() => generateMatmul([p.a, p.b], problemInfo(p).out, p.attrs, sg(32, 1, 1, 4), ctxOf()), /subgroups/);
});

Deno.test("matmul variants: the tuner's candidates include them only where they can run and help", () => {
  const f32 = matmulProblem(64, 64, 64), half = matmulProblem(64, 64, 64, { dtypeB: "f16" });
  assert.deepEqual(matmulVariants(half.a, half.b, ctxOf()), { f16: false, subgroupSize: 0 });
  assert.deepEqual(matmulVariants(f32.a, f32.b, ctxOf({ f16: true })), { f16: false, subgroupSize: 0 });
  assert.deepEqual(matmulVariants(half.a, half.b, ctxOf({ f16: true, subgroupSize: 32 })), {
    f16: true,
    subgroupSize: 32,
  });
  assert.equal(matmulVariants(f32.a, f32.b, ctxOf({ f16: true, matmulF16Operands: true })).f16, true);
  const plain = matmulCandidates("gpu");
  assert.ok(plain.every((c) => !c.f16 && !c.sg));
  const all = matmulCandidates("gpu", { f16: true, subgroupSize: 32 });
  assert.ok(all.some((c) => c.f16 && c.tk) && all.some((c) => c.f16 && !c.tk));
  assert.ok(all.filter((c) => c.sg).length >= 4 && all.filter((c) => c.sg).every((c) => c.wgX === 32 && !c.tk));
  assert.equal(all.length - plain.length, all.filter((c) => c.f16 || c.sg).length);
});

Deno.test("matmul variants: tuned entries are cached per adapter and its usable features", () => {
  const name = "NVIDIA H200";
  assert.equal(tuningKey({ adapterName: name, isFallback: false }), name);
  assert.equal(tuningKey({ adapterName: name, isFallback: false, f16: true, subgroupSize: 32 }), `${name} +f16 +sg32`);
  assert.equal(tuningKey({ adapterName: name, isFallback: false, subgroupSize: 0, f16: false }), name);
});

Deno.test({
  name: "matmul variants: the subgroup kernel's indexing, emulated through workgroup memory, matches a CPU matmul",
  ignore: !gpu,
  fn: async (t) => {
    const g = await openGpu();
    // Small subgroup sizes and odd blocks on three problems each; then three of the tuner's candidates for
    // 32-lane subgroups (NVIDIA) on one each (big emulated workgroups compile for seconds on lavapipe).
    const configs = [sg(8, 2, 4, 4), sg(8, 1, 1, 3), sg(4, 4, 2, 8), sg(16, 2, 3, 4, false)];
    const tunerOnes = matmulCandidates("gpu", { subgroupSize: 32 }).filter((c) => c.sg);
    const picked = [[1, 1, 4], [4, 8, 4], [2, 8, 8]].map(([wgY, tm, tn]) =>
      tunerOnes.find((c) => c.wgY === wgY && c.tm === tm && c.tn === tn)!
    );
    for (const [i, cfg] of [...configs, ...picked].entries()) {
      const ctx = { ...gpuContext(g), subgroupSize: cfg.wgX };
      const picks = new Set(
        i < configs.length ? [i % problems.length, (i + 3) % problems.length, 6] : [[7, 1, 2][i - configs.length]],
      );
      for (const [name, p] of [...picks].map((k) => problems[k])) {
        await t.step(`${configLabel(cfg)} on ${name}`, async () => {
          const l = generateMatmulSg([p.a, p.b], problemInfo(p).out, p.attrs, cfg, ctx, { output: 0 }, {
            emulate: true,
          });
          const run = await matmulRun(g, p, l);
          await run.run(1);
          const e = await matmulError(run, p);
          run.destroy();
          assert.ok(e <= 1e-5, `${problemInfo(p).label}: error ${e}`);
        });
      }
    }
  },
});

Deno.test({
  name: "matmul variants: the subgroup and f16 WGSL parse and type-check on this adapter",
  ignore: !gpu,
  fn: async () => {
    const g = await openGpu();
    const ctx = { ...gpuContext(g), f16: true, subgroupSize: 32 };
    const variants = [sg(32, 4, 4, 4), sg(32, 1, 1, 4), sg(32, 2, 3, 5, false)];
    const halves = [
      h({ wgX: 16, wgY: 16, tm: 4, tn: 4, tk: 16, vec: false }),
      h({ wgX: 8, wgY: 1, tm: 4, tn: 8, tk: 0, vec: true }),
      h({ wgX: 8, wgY: 2, tm: 3, tn: 5, tk: 0, vec: false }),
    ];
    for (const [name, p] of problems) {
      for (const cfg of variants) {
        const code = generateMatmul([p.a, p.b], problemInfo(p).out, p.attrs, cfg, ctx).launches[0].code;
        const errs = await compileErrors(g.device, code);
        const ok = g.subgroupSize ? errs.length === 0 : onlyMissingSubgroups(errs);
        assert.ok(ok, `${configLabel(cfg)} on ${name}:\n${errs.join("\n")}`);
      }
      for (const cfg of halves) {
        const code = generateMatmul([p.a, p.b], problemInfo(p).out, p.attrs, cfg, ctx).launches[0].code;
        assert.equal(code.includes("enable f16;"), [p.a.dtype, p.b.dtype].includes("f16"), `${name}: enable f16`);
        const errs = await compileErrors(g.device, g.f16 ? code : f16AsF32(code));
        assert.deepEqual(errs, [], `${configLabel(cfg)} on ${name}`);
      }
    }
    // The checks catch a typo: a misspelt builtin is a parse error, not the missing capability.
    const p = problems[0][1];
    const code = generateMatmul([p.a, p.b], problemInfo(p).out, p.attrs, variants[0], ctx).launches[0].code;
    const broken = await compileErrors(g.device, code.replace("subgroupShuffle(", "subgroupShufle("));
    assert.ok(broken.length && !onlyMissingSubgroups(broken), broken.join("\n"));
    const half = generateMatmul([p.a, p.b], problemInfo(p).out, p.attrs, halves[0], ctx).launches[0].code;
    assert.notDeepEqual(await compileErrors(g.device, f16AsF32(half).replace("select(", "selekt(")), []);
  },
});

/** Runs each problem with each config on the real device against a CPU matmul. */
async function runAll(t: Deno.TestContext, configs: MatmulConfig[]) {
  const g = await openGpu();
  const ctx = gpuContext(g);
  for (const cfg of configs) {
    for (const [name, p] of problems) {
      await t.step(`${configLabel(cfg)} on ${name}`, async () => {
        const run = await matmulRun(g, p, generateMatmul([p.a, p.b], problemInfo(p).out, p.attrs, cfg, ctx));
        await run.run(1);
        const e = await matmulError(run, p);
        run.destroy();
        assert.ok(e <= 1e-5, `${problemInfo(p).label}: error ${e}`);
      });
    }
  }
}

/** The matmul conformance cases through the executor with every matmul forced to `cfg`. */
async function conformanceWith(t: Deno.TestContext, cfg: MatmulConfig) {
  const ex = await WebGpuExecutor.create();
  const get = ex.ctx.tuned.get.bind(ex.ctx.tuned);
  ex.ctx.tuned.get = (k: string) => (k.startsWith("matmul:") ? cfg : get(k));
  try {
    for (const c of matmulCases) await t.step(`${configLabel(cfg)}: ${c.name}`, () => checkAgainstReference(ex, c));
  } finally {
    ex.dispose();
  }
}

Deno.test({
  name: "matmul variants: f16 variant matches a CPU matmul and the conformance cases (needs shader-f16)",
  ignore: !hasF16,
  fn: async (t) => {
    const configs = [
      h({ wgX: 16, wgY: 16, tm: 4, tn: 4, tk: 16, vec: false }),
      h({ wgX: 8, wgY: 8, tm: 4, tn: 4, tk: 8, vec: false }),
      h({ wgX: 16, wgY: 1, tm: 8, tn: 4, tk: 0, vec: true }),
      h({ wgX: 8, wgY: 2, tm: 3, tn: 5, tk: 0, vec: false }),
    ];
    await runAll(t, configs);
    await conformanceWith(t, configs[0]);
  },
});

Deno.test({
  name: "matmul variants: subgroup variant matches a CPU matmul and the conformance cases (needs subgroups)",
  ignore: !sgSize,
  fn: async (t) => {
    const S = sgSize;
    const configs = [sg(S, 4, 4, 4), sg(S, 1, 1, 4), sg(S, 2, 3, 5, false), sg(S, 2, 8, 8)];
    await runAll(t, configs.filter((c) => c.wgX * c.wgY <= facts!.limits.maxComputeInvocationsPerWorkgroup));
    await conformanceWith(t, configs[0]);
  },
});
