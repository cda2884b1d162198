/**
 * Optimizer ops on both executors against a plain f64 re-implementation of torch.optim.AdamW /
 * torch.optim.SGD / clip_grad_norm_ (nothing hard-coded: the expected values are computed here).
 */
import assert from "node:assert/strict";
import { add, backward, Graph, mul, sum, type Tensor } from "../../graph/mod.ts";
import { adamw, type AdamWOptions, clipScale, sgd, type SgdOptions } from "../../graph/ops/optim.ts";
import { ReferenceExecutor } from "../reference.ts";
import { WebGpuExecutor } from "../webgpu.ts";
import type { Executor } from "../executor.ts";
import { OnnxExecutor } from "../onnx/executor.ts";
import { rng } from "../testing/harness.ts";
import { hasGpu } from "../../gpu/device.ts";

const gpu = await hasGpu();
const SHAPES = [[4, 6], [10]];
const STEPS = 5;

/** The hyper-parameters of the options (the gate is per graph). */
type AdamHp = Required<Omit<AdamWOptions, "gate">>;
type SgdHp = Required<Omit<SgdOptions, "gate">>;

/** torch state of one param, in f64. */
interface TorchState {
  p: number[];
  m: number[];
  v: number[];
  buf?: number[];
}

/** torch.nn.utils.clip_grad_norm_'s coefficient: min(1, maxNorm / (‖g‖ + 1e-6)), and the norm. */
function torchClip(grads: number[][], maxNorm: number): { coef: number; norm: number } {
  let ss = 0;
  for (const g of grads) for (const x of g) ss += x * x;
  const norm = Math.sqrt(ss);
  return { coef: Math.min(1, maxNorm / (norm + 1e-6)), norm };
}

/** torch.optim.AdamW's single-tensor step. */
function torchAdamW(s: TorchState, g: number[], lr: number, t: number, o: AdamHp): void {
  const bc1 = 1 - o.beta1 ** t, bc2 = 1 - o.beta2 ** t;
  for (let i = 0; i < s.p.length; i++) {
    s.p[i] *= 1 - lr * o.weightDecay;
    s.m[i] += (g[i] - s.m[i]) * (1 - o.beta1);
    s.v[i] = s.v[i] * o.beta2 + (1 - o.beta2) * g[i] * g[i];
    s.p[i] -= (lr / bc1) * s.m[i] / (Math.sqrt(s.v[i]) / Math.sqrt(bc2) + o.eps);
  }
}

/** torch.optim.SGD's single-tensor step (dampening 0; the buffer starts as a clone of d). */
function torchSgd(s: TorchState, g: number[], lr: number, o: SgdHp): void {
  for (let i = 0; i < s.p.length; i++) {
    let d = g[i] + o.weightDecay * s.p[i];
    if (o.momentum !== 0) {
      if (!s.buf) s.buf = new Array(s.p.length).fill(undefined);
      s.buf[i] = s.buf[i] === undefined ? d : s.buf[i] * o.momentum + d;
      d = o.nesterov ? d + o.momentum * s.buf[i] : s.buf[i];
    }
    s.p[i] -= lr * d;
  }
}

interface Setup {
  kind: "adamw" | "sgd";
  adam?: AdamHp;
  sgd?: SgdHp;
  /** Clip by global norm at this value. */
  maxNorm?: number;
  /** Gradients computed in-graph from loss ½Σp² (so grad = p, read before the in-place update). */
  gradFromParam?: boolean;
  /** Gate every update with the scalar input `ok`; each step first runs once with ok = 0 (and NaN gradients). */
  gated?: boolean;
}

function buildGraph(s: Setup): Graph {
  const g = new Graph();
  const lr = g.input("lr", []), step = g.input("step", []);
  const ps = SHAPES.map((sh, k) => g.param(`p${k}`, sh));
  let grads: Tensor[];
  if (s.gradFromParam) {
    const loss = ps.map((p) => sum(mul(mul(p, p), 0.5))).reduce((a, b) => add(a, b));
    grads = backward(loss, ps);
  } else {
    grads = SHAPES.map((sh, k) => g.input(`g${k}`, sh));
  }
  ps.forEach((p, k) => g.output(`before${k}`, mul(p, 1)));
  const clip = s.maxNorm === undefined ? undefined : clipScale(grads, s.maxNorm);
  if (clip) g.output("norm", clip.norm);
  const gate = s.gated ? g.input("ok", []) : undefined;
  ps.forEach((p, k) => {
    if (s.kind === "adamw") {
      const m = g.param(`p${k}.m`, SHAPES[k]), v = g.param(`p${k}.v`, SHAPES[k]);
      adamw(p, grads[k], m, v, lr, step, { ...s.adam, gate }, clip?.scale);
    } else {
      const buf = s.sgd!.momentum ? g.param(`p${k}.buf`, SHAPES[k]) : undefined;
      sgd(p, grads[k], lr, { ...s.sgd, gate }, buf, clip?.scale);
    }
  });
  return g;
}

/** Checks |got − want| / max(floor, |want|) <= tol elementwise. */
function close(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string, floor = 1): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i] - want[i]) / Math.max(floor, Math.abs(want[i]));
    assert.ok(e <= tol, `${what}[${i}]: got ${got[i]}, want ${want[i]} (error ${e.toExponential(2)} > ${tol})`);
  }
}

async function runSetup(ex: Executor, s: Setup, tol: number): Promise<void> {
  const r = rng(0xc0ffee);
  const states: TorchState[] = SHAPES.map((sh) => {
    const n = sh.reduce((a, b) => a * b, 1);
    return { p: Array.from({ length: n }, () => r() * 2 - 1), m: Array(n).fill(0), v: Array(n).fill(0) };
  });
  states.forEach((st, k) => {
    ex.setParam(`p${k}`, st.p, SHAPES[k]);
    for (const suffix of ["m", "v", "buf"]) ex.setParam(`p${k}.${suffix}`, st.m, SHAPES[k]);
  });
  // f32 start values, as the store holds them.
  for (const [k, st] of states.entries()) st.p = Array.from(await ex.getParam(`p${k}`));
  const compiled = await ex.compile(buildGraph(s));
  const names = SHAPES.flatMap((_, k) => [`p${k}`, `p${k}.m`, `p${k}.v`, `p${k}.buf`]);
  for (let t = 1; t <= STEPS; t++) {
    const lr = 0.05 * (1 - 0.15 * (t - 1)); // a schedule: fed per step, same pipelines
    if (s.gated) {
      // ok = 0: nothing moves, bit for bit, even with NaN gradients.
      const held = await Promise.all(names.map(async (n) => Array.from(await ex.getParam(n))));
      const skip: Record<string, number[]> = { lr: [lr], step: [t], ok: [0] };
      if (!s.gradFromParam) SHAPES.forEach((_, k) => (skip[`g${k}`] = states[k].p.map(() => NaN)));
      await compiled.run(skip);
      for (const [i, n] of names.entries()) assert.deepEqual(Array.from(await ex.getParam(n)), held[i], `${n} held`);
    }
    const grads = s.gradFromParam
      ? states.map((st) => st.p.slice())
      : states.map((st) => st.p.map(() => Math.fround((r() * 2 - 1) * 3)));
    const feeds: Record<string, number[]> = { lr: [lr], step: [t], ...(s.gated ? { ok: [1] } : {}) };
    if (!s.gradFromParam) grads.forEach((g, k) => (feeds[`g${k}`] = g));
    const out = await compiled.run(feeds);
    states.forEach((st, k) => close(out[`before${k}`], st.p, tol, `step ${t} before${k}`));
    const clip = s.maxNorm === undefined ? undefined : torchClip(grads, s.maxNorm);
    if (clip) close(out.norm, [clip.norm], tol, `step ${t} norm`);
    const lrF = Math.fround(lr);
    states.forEach((st, k) => {
      const g = grads[k].map((x) => x * (clip?.coef ?? 1));
      if (s.kind === "adamw") torchAdamW(st, g, lrF, t, s.adam!);
      else torchSgd(st, g, lrF, s.sgd!);
    });
    for (const [k, st] of states.entries()) {
      close(await ex.getParam(`p${k}`), st.p, tol, `step ${t} p${k}`);
      if (s.kind === "adamw") {
        close(await ex.getParam(`p${k}.m`), st.m, tol, `step ${t} p${k}.m`, 0.1);
        close(await ex.getParam(`p${k}.v`), st.v, tol, `step ${t} p${k}.v`, 1e-6);
      } else if (s.sgd!.momentum) {
        close(await ex.getParam(`p${k}.buf`), st.buf!, tol, `step ${t} p${k}.buf`);
      }
    }
  }
}

const adam = (o: AdamWOptions = {}): AdamHp => ({
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0.01,
  ...o,
});
const sgdOpts = (o: SgdOptions = {}): SgdHp => ({ momentum: 0, weightDecay: 0, nesterov: false, ...o });

const setups: Record<string, Setup> = {
  "adamw (torch defaults)": { kind: "adamw", adam: adam() },
  "adamw, weight decay 0.1, clipping at 1": { kind: "adamw", adam: adam({ weightDecay: 0.1 }), maxNorm: 1 },
  "adamw, betas (0.8, 0.95), eps 1e-6, no decay": {
    kind: "adamw",
    adam: adam({ beta1: 0.8, beta2: 0.95, eps: 1e-6, weightDecay: 0 }),
  },
  "sgd plain": { kind: "sgd", sgd: sgdOpts() },
  "sgd weight decay, clipping at 0.5": { kind: "sgd", sgd: sgdOpts({ weightDecay: 0.05 }), maxNorm: 0.5 },
  "sgd momentum 0.9": { kind: "sgd", sgd: sgdOpts({ momentum: 0.9 }) },
  "sgd nesterov, weight decay, clipping": {
    kind: "sgd",
    sgd: sgdOpts({ momentum: 0.9, nesterov: true, weightDecay: 0.01 }),
    maxNorm: 2,
  },
  "sgd momentum, gradient of the param itself (reads before the in-place update)": {
    kind: "sgd",
    sgd: sgdOpts({ momentum: 0.5, weightDecay: 0.01 }),
    gradFromParam: true,
  },
  "adamw, gradient of the param itself, clipping": {
    kind: "adamw",
    adam: adam({ weightDecay: 0.05 }),
    gradFromParam: true,
    maxNorm: 1,
  },
};

/** Setups gated (each op, with and without gradScale): ok = 1 gives the ungated update, ok = 0 leaves param and
 * states bit-identical. */
const gatedSetups: Record<string, Setup> = Object.fromEntries(
  [
    "adamw (torch defaults)",
    "adamw, gradient of the param itself, clipping",
    "sgd weight decay, clipping at 0.5",
    "sgd momentum 0.9",
    "sgd nesterov, weight decay, clipping",
  ].map((name) => [`gated: ${name}`, { ...setups[name], gated: true }]),
);

Deno.test("optim: reference executor matches torch's update formulas over 5 steps", async (t) => {
  for (const [name, s] of Object.entries(setups)) {
    await t.step(name, () => runSetup(new ReferenceExecutor(), s, 5e-7));
  }
});

Deno.test("optim: gated ops on the reference executor skip on ok = 0 and match torch on ok = 1", async (t) => {
  for (const [name, s] of Object.entries(gatedSetups)) {
    await t.step(name, () => runSetup(new ReferenceExecutor(), s, 5e-7));
  }
});

Deno.test({
  name: "optim: gated ops on the webgpu executor skip on ok = 0 and match torch on ok = 1",
  ignore: !gpu,
  fn: async (t) => {
    const ex = await WebGpuExecutor.create();
    for (const [name, s] of Object.entries(gatedSetups)) await t.step(name, () => runSetup(ex, s, 1e-6));
    ex.dispose();
  },
});

Deno.test("optim: gated ops on the onnx executor skip on ok = 0 and match torch on ok = 1", async (t) => {
  const ex = await OnnxExecutor.create({ threads: 1 });
  for (const [name, s] of Object.entries(gatedSetups)) await t.step(name, () => runSetup(ex, s, 1e-6));
  ex.dispose();
});

Deno.test({
  name: "optim: webgpu executor matches torch's update formulas over 5 steps",
  ignore: !gpu,
  fn: async (t) => {
    const ex = await WebGpuExecutor.create();
    for (const [name, s] of Object.entries(setups)) await t.step(name, () => runSetup(ex, s, 1e-6));
    ex.dispose();
  },
});

Deno.test("optim: onnx executor matches torch's update formulas over 5 steps", async (t) => {
  const ex = await OnnxExecutor.create({ threads: 1 });
  for (const [name, s] of Object.entries(setups)) await t.step(name, () => runSetup(ex, s, 1e-6));
  ex.dispose();
});

Deno.test({
  name: "optim: a graph of only effect ops (no outputs) runs and updates in place on both executors",
  ignore: !gpu,
  fn: async () => {
    const results: number[][] = [];
    const all = [new ReferenceExecutor(), await WebGpuExecutor.create(), await OnnxExecutor.create()] as Executor[];
    for (const ex of all) {
      const g = new Graph();
      const p = g.param("w", [3]);
      const lr = g.input("lr", []);
      sgd(p, g.input("grad", [3]), lr, { weightDecay: 0.5 });
      ex.setParam("w", [1, 2, 3], [3]);
      const c = await ex.compile(g);
      assert.deepEqual(await c.run({ lr: [0.5], grad: [1, 1, 1] }), {});
      results.push(Array.from(await ex.getParam("w")));
      ex.dispose();
    }
    // p − lr·(g + wd·p) = p − 0.5·(1 + 0.5p)
    for (const r of results) assert.deepEqual(r, [0.25, 1, 1.75]);
  },
});

Deno.test("optim: argument checks name what was expected", () => {
  const g = new Graph();
  const p = g.param("p", [2]), gr = g.input("g", [3]), lr = g.input("lr", []);
  assert.throws(() => sgd(p, gr, lr), /input 1 must be f32 \[2\]/);
  assert.throws(() => sgd(p, g.input("g2", [2]), lr, { momentum: 0.9 }), /needs a momentum buffer/);
  assert.throws(() => sgd(p, g.input("g3", [2]), g.input("lr2", [2])), /must be an f32 scalar/);
  assert.throws(() => clipScale([], 1), /at least one gradient/);
  const p2 = g.param("q", [2]), g4 = g.input("g4", [2]);
  assert.throws(() => sgd(p2, g4, lr, { gate: g.input("ok2", [2]) }), /input 3 must be an f32 scalar/);
  const m = g.param("q.m", [2]), v = g.param("q.v", [2]), st = g.input("st", []);
  assert.throws(() => adamw(p2, g4, m, v, lr, st, { gate: g.input("ok3", [3]) }, lr), /input 7 must be an f32 scalar/);
});
