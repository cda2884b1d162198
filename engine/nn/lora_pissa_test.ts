/**
 * PiSSA: the SVDs on exact small cases; the init against PEFT's (fixtures/models/llama/pissa: torch.linalg.svd,
 * residual base weights); the adapted model at init equals the base model; loading a PiSSA folder as PEFT does;
 * and the PiSSA → LoRA conversion on save.
 */
import assert from "node:assert/strict";
import type { Executor } from "../exec/executor.ts";
import { ReferenceExecutor } from "../exec/reference.ts";
import { WebGpuExecutor } from "../exec/webgpu.ts";
import { hasGpu } from "../gpu/device.ts";
import { openSafetensors } from "../io/safetensors.ts";
import { attachAdapter, LoraAdapter, loraKeys, saveAdapter } from "./lora.ts";
import { jacobiSvd, randomizedSvd } from "./lora_init.ts";
import { Rng } from "../util/rng.ts";
import { loadModel, type Model } from "./model.ts";
import { golden, maskedLogitError } from "./lora_testing.ts";

const root = new URL("../../fixtures/models/", import.meta.url).pathname;
const TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

/** U [m, k] with orthonormal columns: the first k columns of a product of two Householder reflections. */
function orthonormal(m: number, k: number, rng: Rng): Float64Array {
  const q = new Float64Array(m * m);
  for (let i = 0; i < m; i++) q[i * m + i] = 1;
  for (let h = 0; h < 2; h++) {
    const v = Float64Array.from({ length: m }, () => rng.normal());
    const vv = v.reduce((a, x) => a + x * x, 0);
    for (let j = 0; j < m; j++) { // q ← (I − 2vvᵀ/vᵀv) q, column by column
      let d = 0;
      for (let i = 0; i < m; i++) d += v[i] * q[i * m + j];
      for (let i = 0; i < m; i++) q[i * m + j] -= (2 * d / vv) * v[i];
    }
  }
  const u = new Float64Array(m * k);
  for (let i = 0; i < m; i++) for (let j = 0; j < k; j++) u[i * k + j] = q[i * m + j];
  return u;
}

/** U diag(S) Vᵀ for U [m, k], V [n, k] (row-major). */
function compose(U: Float64Array, S: ArrayLike<number>, V: Float64Array, m: number, n: number, k: number) {
  const w = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let c = 0; c < k; c++) s += U[i * k + c] * S[c] * V[j * k + c];
      w[i * n + j] = s;
    }
  }
  return w;
}

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let w = 0;
  for (let i = 0; i < a.length; i++) w = Math.max(w, Math.abs(a[i] - b[i]));
  return w;
};

Deno.test("SVD: exact Jacobi and randomized subspace iteration recover a known spectrum", () => {
  const rng = new Rng(5);
  for (const [m, n] of [[20, 12], [12, 20]]) {
    const k = Math.min(m, n);
    const S = Array.from({ length: k }, (_, i) => 10 * 0.6 ** i);
    const U = orthonormal(m, k, rng), V = orthonormal(n, k, rng);
    const w = compose(U, S, V, m, n, k);
    const ex = jacobiSvd(w, m, n);
    assert.ok(maxAbsDiff(ex.S, S) < 1e-12, `exact S ${ex.S}`);
    assert.ok(maxAbsDiff(compose(ex.U, ex.S, ex.V, m, n, ex.k), w) < 1e-12);
    const r = 4;
    const top = compose(U, S.map((x, i) => (i < r ? x : 0)), V, m, n, k); // the rank-r truncation
    const rs = randomizedSvd(w, m, n, r, 8, new Rng(1));
    assert.equal(rs.k, r);
    assert.ok(maxAbsDiff(rs.S, S.slice(0, r)) < 1e-10, `randomized S ${rs.S}`);
    assert.ok(maxAbsDiff(compose(rs.U, rs.S, rs.V, m, n, r), top) < 1e-9);
  }
});

async function pissaGolden() {
  const g = await golden(`${root}llama/pissa`);
  const f = await openSafetensors(`${root}llama/pissa/adapter_model.safetensors`);
  const ad = new Map<string, Float32Array>();
  for (const k of f.tensors.keys()) ad.set(k, await f.readF32(k));
  f.close();
  return { g, ad, base: await golden(`${root}llama`) };
}

/** s·B·A [out, in] of one module from a lookup of its tensors. */
function product(get: (k: string) => ArrayLike<number>, mod: string, out: number, inp: number, r: number, s: number) {
  const k = loraKeys(mod), A = get(k.A), B = get(k.B);
  const p = new Float64Array(out * inp);
  for (let j = 0; j < out; j++) {
    for (let c = 0; c < r; c++) for (let i = 0; i < inp; i++) p[j * inp + i] += s * B[j * r + c] * A[c * inp + i];
  }
  return p;
}

async function checkInit(model: Model, niter: number, tol: { prod: number; S: number }) {
  const { g, ad, base } = await pissaGolden();
  for (const mod of (model.adapter as LoraAdapter).targets) {
    const A = await model.executor.getParam(loraKeys(mod).A), B = await model.executor.getParam(loraKeys(mod).B);
    const [out, inp] = [B.length / 4, A.length / 4];
    const mine = product((k) => (k.endsWith("A.weight") ? A : B), mod, out, inp, 4, 2);
    const peft = product((k) => ad.get(k)!, mod, out, inp, 4, 2);
    const scale = Math.max(...peft.map(Math.abs));
    assert.ok(maxAbsDiff(mine, peft) <= tol.prod * scale, `${mod} (niter ${niter}): s·B·A differs from PEFT's`);
    // s·‖A_i‖² = S_i: the top-r singular values of the original W (torch.linalg.svd, float64)
    const S = g.tensors.get(`svd.${mod}.S`)!;
    for (let i = 0; i < 4; i++) {
      let a2 = 0;
      for (let c = 0; c < inp; c++) a2 += A[i * inp + c] ** 2;
      assert.ok(Math.abs(2 * a2 - S[i]) <= tol.S * S[0], `${mod}: S[${i}] = ${2 * a2} vs ${S[i]}`);
    }
    if (niter < 0) {
      const res = await model.executor.getParam(`${mod}.weight`);
      const want = g.tensors.get(`residual.${mod}.weight`)!;
      assert.ok(maxAbsDiff(res, want) <= 1e-5, `${mod}: residual W − s·B·A differs from PEFT's`);
    }
  }
  const res = await model.forward(base.ids, { labels: base.labels, attentionMask: base.mask });
  const err = maskedLogitError(res.logits, base.logits, base.mask, 128);
  assert.ok(err <= 1e-4, `PiSSA at init changed the logits by ${err}`);
  assert.ok(Math.abs(res.loss! - base.loss) <= 1e-5 * base.loss, `loss ${res.loss} vs base ${base.loss}`);
  assert.ok(maskedLogitError(res.logits, g.logits, base.mask, 128) <= 1e-4, "logits vs PEFT's PiSSA model");
}

Deno.test("PiSSA (exact) matches PEFT's init: s·B·A, singular values, residual base; output = base at init", async () => {
  const model = await loadModel(`${root}llama`, { executor: "reference" });
  await attachAdapter(model, { r: 4, alpha: 8, targets: TARGETS, init: "pissa" });
  await checkInit(model, -1, { prod: 1e-5, S: 1e-6 });
});

Deno.test("PiSSA with pissa_niter_16 (randomized, seeded) is close to the exact init", async () => {
  const model = await loadModel(`${root}llama`, { executor: "reference" });
  await attachAdapter(model, { r: 4, alpha: 8, targets: TARGETS, init: "pissa_niter_16" }, { seed: 3 });
  await checkInit(model, 16, { prod: 5e-3, S: 1e-5 });
});

Deno.test("a PiSSA adapter folder loads as PEFT loads it (SVD recomputed and subtracted from the base)", async () => {
  const model = await loadModel(`${root}llama`, { executor: "reference", adapter: `${root}llama/pissa` });
  await checkInit(model, -1, { prod: 1e-6, S: 1e-5 });
});

Deno.test("PiSSA export: as PEFT's pissa adapter, and converted to a LoRA of rank 2r on the original base", async () => {
  const execs: (() => Promise<Executor>)[] = [() => Promise.resolve(new ReferenceExecutor())];
  if (await hasGpu()) execs.push(() => WebGpuExecutor.create());
  const base = await golden(`${root}llama`);
  for (const make of execs) {
    const model = await loadModel(`${root}llama`, { executor: await make() });
    const ad = await attachAdapter(model, { r: 4, alpha: 8, targets: "all", useRslora: true, init: "pissa" });
    const rng = new Rng(11); // "training": move every A and B
    for (const [k, p] of ad.params) {
      const v = await model.executor.getParam(k);
      model.executor.setParam(k, v.map((x) => x + 0.05 * rng.normal()), p.shape);
    }
    const want = await model.forward(base.ids, { attentionMask: base.mask });
    assert.ok(maskedLogitError(want.logits, base.logits, base.mask, 128) > 1e-2, "the update changes the model");
    const dir = await Deno.makeTempDir();
    try {
      for (const convertPissa of [false, true]) {
        await saveAdapter(model, `${dir}/${convertPissa}`, { convertPissa });
        const cfg = JSON.parse(await Deno.readTextFile(`${dir}/${convertPissa}/adapter_config.json`));
        assert.deepEqual(
          [cfg.r, cfg.lora_alpha, cfg.init_lora_weights],
          convertPissa ? [8, 8 * Math.SQRT2, true] : [4, 8, "pissa"],
        );
        const fresh = await loadModel(`${root}llama`, { executor: await make(), adapter: `${dir}/${convertPissa}` });
        const got = await fresh.forward(base.ids, { attentionMask: base.mask });
        const err = maskedLogitError(got.logits, want.logits, base.mask, 128);
        assert.ok(err <= 1e-4, `convertPissa ${convertPissa} on ${model.executor.name}: logits differ by ${err}`);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});
