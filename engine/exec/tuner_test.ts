import assert from "node:assert/strict";
import { hasGpu, openGpu } from "../gpu/device.ts";
import {
  configLabel,
  generateMatmul,
  matmulCandidates,
  type MatmulConfig,
  matmulShapeClass,
} from "../../kernels/matmul.ts";
import { gpuContext, matmulError, matmulProblem, matmulRun, problemInfo, tuneMatmul } from "./tuner.ts";
import { loadTuning, readTuning, saveTuning, tuningKey } from "./tuning_cache.ts";
import { WebGpuExecutor } from "./webgpu.ts";

const gpu = await hasGpu();

/** Every config either adapter kind may try, once. */
function allCandidates(): MatmulConfig[] {
  const seen = new Set<string>();
  return [...matmulCandidates("cpu"), ...matmulCandidates("gpu")].filter((c) => {
    const k = JSON.stringify(c);
    return !seen.has(k) && !!seen.add(k);
  });
}

// Shapes that exercise bounds guards, every layout, vector and scalar loads, batch broadcast, 16-bit
// operands. Each candidate runs two of them (rotating), so every shape meets several block sizes.
// Every layout and dtype mix is covered by the big blocks (the first candidates) too.
const shapes = [
  matmulProblem(37, 41, 20, { batch: [2], bBatch: false }),
  matmulProblem(33, 17, 65, { transA: true, transB: true, dtypeB: "bf16" }),
  matmulProblem(36, 44, 52, { transA: true, batch: [2] }),
  matmulProblem(3, 45, 28, { transB: true, dtypeA: "f16", dtypeB: "f16" }),
  matmulProblem(40, 5, 12, { transB: true }),
];

Deno.test({
  name: "tuner: every candidate config is correct",
  ignore: !gpu,
  fn: async (t) => {
    const g = await openGpu();
    const ctx = gpuContext(g);
    const cands = allCandidates();
    for (let i = 0; i < cands.length; i++) {
      const cfg = cands[i];
      // Big register blocks take seconds to compile on software adapters: one shape for those.
      const mine = cfg.tm * cfg.tn >= 256
        ? [shapes[i % shapes.length]]
        : [shapes[i % shapes.length], shapes[(i + 2) % shapes.length]];
      for (const p of mine) {
        await t.step(`${configLabel(cfg)} on ${problemInfo(p).label}`, async () => {
          const run = await matmulRun(g, p, generateMatmul([p.a, p.b], problemInfo(p).out, p.attrs, cfg, ctx));
          await run.run(1);
          const e = await matmulError(run, p);
          run.destroy();
          assert.ok(e <= 1e-5, `error ${e}`);
        });
      }
    }
  },
});

Deno.test("tuner: the cache merges per adapter and loads into ctx.tuned", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/sub/tuning.json`;
  try {
    await saveTuning("adapter A", { "matmul:l:nn:f32.f32:a4": { wgX: 8 } }, path);
    await saveTuning("adapter B", { k: 1 }, path);
    await saveTuning("adapter A", { k2: 2 }, path);
    const file = readTuning(path);
    assert.deepEqual(Object.keys(file.adapters).sort(), ["adapter A", "adapter B"]);
    assert.deepEqual(file.adapters["adapter A"], { "matmul:l:nn:f32.f32:a4": { wgX: 8 }, k2: 2 });
    assert.deepEqual([...Deno.readDirSync(`${dir}/sub`)].map((e) => e.name), ["tuning.json"]); // no temp left
    const tuned = new Map<string, unknown>();
    assert.equal(loadTuning(tuned, { adapterName: "adapter A", isFallback: false }, path), 2);
    assert.equal(tuned.get("adapterKind"), "gpu");
    assert.deepEqual(tuned.get("k2"), 2);
    assert.equal(loadTuning(new Map(), { adapterName: "other", isFallback: true }, `${dir}/missing.json`), 0);
    // Entries tuned with the f16/subgroup variants load only where those can run.
    await saveTuning("adapter A +f16 +sg32", { k3: 3 }, path);
    const withVariants = new Map<string, unknown>();
    const facts = { adapterName: "adapter A", isFallback: false, f16: true, subgroupSize: 32 };
    assert.equal(loadTuning(withVariants, facts, path), 1);
    assert.equal(withVariants.get("k3"), 3);
    assert.equal(withVariants.get("k2"), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "tuner: picks the faster correct candidate, drops broken ones, caches and applies the result",
  ignore: !gpu,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const path = `${dir}/tuning.json`;
    try {
      const ex = await WebGpuExecutor.create();
      const p = matmulProblem(96, 64, 80);
      const cls = matmulShapeClass(p.a, p.b, p.attrs);
      const candidates: MatmulConfig[] = [
        { wgX: 8, wgY: 1, tm: 8, tn: 8, tk: 0, vec: true },
        { wgX: 2048, wgY: 1, tm: 1, tn: 1, tk: 0, vec: false }, // too many threads: dropped
        { wgX: 8, wgY: 8, tm: 2, tn: 2, tk: 8, vec: false },
      ];
      const [r] = await tuneMatmul(ex, [p, p], { candidates, save: path, targetMs: 20 });
      assert.equal(r.shapeClass, cls);
      assert.equal(r.trials.length, 3);
      assert.match(r.trials[1].dropped ?? "", /threads/);
      const ran = r.trials.filter((x) => x.ms !== undefined);
      assert.equal(ran.length, 2);
      assert.equal(r.ms, Math.min(...ran.map((x) => x.ms!)));
      assert.deepEqual(ex.ctx.tuned.get(cls), r.best);
      assert.deepEqual(readTuning(path).adapters[tuningKey(ex.gpu)][cls], r.best);
      ex.dispose();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
