/**
 * bitsandbytes' 8-bit AdamW (`optim: adamw_8bit`) step by step against fixtures/optim/make_optim8.py, a line-by-line
 * numpy port of bitsandbytes' kernels (bitsandbytes does not install here), on the reference executor, ONNX Runtime
 * and WebGPU: params, 8-bit codes, absmax and 32-bit states after each of 3 steps.
 */
import assert from "node:assert/strict";
import { Graph, type Tensor } from "../graph/mod.ts";
import { createExecutor } from "../exec/pick.ts";
import { dynamicMap } from "../quant/codes.ts";
import {
  adam8bitStep,
  codeAt,
  packCodes,
  quantize2D,
  quantizeSigned,
  unpackCodes,
  unsignedDynamicMap,
} from "../quant/optim8.ts";
import { mulberry32 } from "../util/rng.ts";
import { bnbAdamw, bnbAdamwStates, uses8bit } from "./bnb_adamw.ts";

interface StepParam {
  p: string;
  state1: string;
  state2: string;
  absmax1?: string;
  absmax2?: string;
}
interface Case {
  name: string;
  beta1: number;
  beta2: number;
  eps: number;
  weight_decay: number;
  params: { name: string; shape: number[]; seed: number }[];
  steps: { lr: number; params: StepParam[] }[];
}
const GOLDENS: { qmap1: string; qmap2: string; cases: Case[] } = JSON.parse(
  await Deno.readTextFile(new URL("../../fixtures/optim/goldens8.json", import.meta.url)),
);

const u8 = (s: string) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const f32 = (s: string) => new Float32Array(u8(s).buffer);
const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** make_optim8.py's values(): bell-shaped values, each row scaled by a power of two in [1/8, 4]. */
function values(seed: number, shape: number[]): Float32Array {
  const [rows, cols] = shape.length === 2 ? shape : [1, shape[0]];
  const r = mulberry32(seed), out = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    const scale = 2 ** (Math.floor(r() * 6) - 3);
    for (let j = 0; j < cols; j++) out[i * cols + j] = Math.fround(Math.fround(r() + r() + r() - 1.5) * scale);
  }
  return out;
}

/** Step t's gradient of param k (the first param's elements [256, 512) are 0). */
function gradOf(c: Case, k: number, t: number): Float32Array {
  const g = values(c.params[k].seed + 100 * t, c.params[k].shape);
  if (k === 0) g.fill(0, 256, 512);
  return g;
}

/** The state of param k before step t (from 1): zeros, or the golden's after step t − 1. */
function stateBefore(c: Case, k: number, t: number): { p: Float32Array; states: Float32Array[] | Int32Array[] } {
  const prm = c.params[k], n = numel(prm.shape);
  if (t === 1) {
    const states = bnbAdamwStates(prm.name, prm.shape).map((s) =>
      s.dtype === "i32" ? new Int32Array(numel(s.shape)) : new Float32Array(numel(s.shape))
    );
    return { p: values(prm.seed, prm.shape), states: states as Float32Array[] };
  }
  const s = c.steps[t - 2].params[k];
  if (!uses8bit(prm.shape)) return { p: f32(s.p), states: [f32(s.state1), f32(s.state2)] };
  const w1 = packCodes(u8(s.state1)), w2 = packCodes(u8(s.state2));
  assert.equal(unpackCodes(w1, n).length, n);
  return { p: f32(s.p), states: [w1, w2, f32(s.absmax1!), f32(s.absmax2!)] as unknown as Float32Array[] };
}

Deno.test("optim8: the code books are bitsandbytes' create_dynamic_map(signed=True / False)", () => {
  assert.deepEqual([...dynamicMap()], [...f32(GOLDENS.qmap1)]);
  assert.deepEqual([...unsignedDynamicMap()], [...f32(GOLDENS.qmap2)]);
  const q1 = dynamicMap(), q2 = unsignedDynamicMap();
  assert.equal(q2[0], 0);
  assert.equal(q2[255], 1);
  // Every code quantizes to itself; the sign fix keeps a negative value off the code of 0.
  for (let c = 0; c < 256; c++) {
    assert.equal(quantize2D(q1, true, q1[c]), c);
    assert.equal(quantize2D(q2, false, q2[c]), c);
  }
  assert.equal(q1[127], 0);
  assert.equal(quantizeSigned(q1, -1e-9, -1e-9), 126);
  assert.equal(quantizeSigned(q1, 1e-9, 1e-9), 127);
  assert.deepEqual([...unpackCodes(packCodes([1, 2, 255, 128, 7]), 5)], [1, 2, 255, 128, 7]);
  assert.equal(codeAt(packCodes([0, 0, 0, 200]), 3), 200);
});

Deno.test("optim8: the host port equals the numpy port bit for bit", () => {
  for (const c of GOLDENS.cases) {
    c.params.forEach((prm, k) => {
      if (!uses8bit(prm.shape)) return;
      for (let t = 1; t <= c.steps.length; t++) {
        const before = stateBefore(c, k, t);
        const [state1, state2, absmax1, absmax2] = before.states;
        const p = Float64Array.from(before.p);
        const st = { state1, state2, absmax1, absmax2 };
        const o = { beta1: c.beta1, beta2: c.beta2, eps: c.eps, weightDecay: c.weight_decay };
        adam8bitStep(p, gradOf(c, k, t), st, c.steps[t - 1].lr, t, o);
        const want = c.steps[t - 1].params[k], what = `${c.name} ${prm.name} step ${t}`;
        assert.deepEqual([...unpackCodes(state1, numel(prm.shape))], [...u8(want.state1)], `${what} state1`);
        assert.deepEqual([...unpackCodes(state2, numel(prm.shape))], [...u8(want.state2)], `${what} state2`);
        assert.deepEqual([...absmax1], [...f32(want.absmax1!)], `${what} absmax1`);
        assert.deepEqual([...absmax2], [...f32(want.absmax2!)], `${what} absmax2`);
        assert.deepEqual([...Float32Array.from(p)], [...f32(want.p)], `${what} p`);
      }
    });
  }
});

function stepGraph(c: Case): Graph {
  const g = new Graph();
  const lr = g.input("lr", []), step = g.input("step", []);
  c.params.forEach((p, i) => {
    const w = g.param(p.name, p.shape), grad = g.input(`grad${i}`, p.shape);
    const st: Tensor[] = bnbAdamwStates(p.name, p.shape).map((s) => g.param(s.name, s.shape, s.dtype));
    const o = { beta1: c.beta1, beta2: c.beta2, eps: c.eps, weightDecay: c.weight_decay };
    bnbAdamw(w, grad, st, lr, step, o);
  });
  return g;
}

/** Codes may differ where the f32 ops of an executor round a value across a midpoint: at most 0.5% of them by ±1. */
function closeCodes(got: Uint8Array, want: Uint8Array, what: string): void {
  let off = 0;
  for (let i = 0; i < want.length; i++) {
    if (got[i] === want[i]) continue;
    assert.ok(Math.abs(got[i] - want[i]) === 1, `${what}: code [${i}] ${got[i]}, want ${want[i]}`);
    off++;
  }
  assert.ok(off <= want.length * 0.005, `${what}: ${off} of ${want.length} codes differ`);
}

function close(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i] - want[i]);
    assert.ok(e <= tol * (1 + Math.abs(want[i])), `${what}: [${i}] got ${got[i]}, want ${want[i]}`);
  }
}

for (const kind of ["reference", "onnx", "webgpu"] as const) {
  Deno.test(`optim8: bitsandbytes' 8-bit AdamW matches its port over 3 steps (${kind})`, async () => {
    const ex = await createExecutor(kind);
    for (const c of GOLDENS.cases) {
      // Each step starts from the port's state, so each check is of this step's update alone.
      const setState = (t: number) =>
        c.params.forEach((prm, k) => {
          const before = stateBefore(c, k, t);
          ex.setParam(prm.name, before.p, prm.shape);
          bnbAdamwStates(prm.name, prm.shape).forEach((st, i) =>
            ex.setParam(st.name, before.states[i], st.shape, st.dtype)
          );
        });
      setState(1);
      const compiled = await ex.compile(stepGraph(c));
      for (const [t0, s] of c.steps.entries()) {
        const t = t0 + 1, feeds: Record<string, ArrayLike<number>> = { lr: [s.lr], step: [t] };
        c.params.forEach((_, k) => feeds[`grad${k}`] = gradOf(c, k, t));
        setState(t);
        await compiled.run(feeds, []);
        for (const [k, prm] of c.params.entries()) {
          const want = s.params[k], what = `${kind} ${c.name} ${prm.name} step ${t}`, n = numel(prm.shape);
          close(await ex.getParam(prm.name), f32(want.p), 2e-6, `${what} p`);
          if (!uses8bit(prm.shape)) {
            close(await ex.getParam(`${prm.name}.state1`), f32(want.state1), 1e-5, `${what} state1`);
            close(await ex.getParam(`${prm.name}.state2`), f32(want.state2), 1e-5, `${what} state2`);
            continue;
          }
          closeCodes(unpackCodes(await ex.getParam(`${prm.name}.state1`), n), u8(want.state1), `${what} state1`);
          closeCodes(unpackCodes(await ex.getParam(`${prm.name}.state2`), n), u8(want.state2), `${what} state2`);
          close(await ex.getParam(`${prm.name}.absmax1`), f32(want.absmax1!), 1e-5, `${what} absmax1`);
          close(await ex.getParam(`${prm.name}.absmax2`), f32(want.absmax2!), 1e-5, `${what} absmax2`);
        }
      }
    }
  });
}

for (const kind of ["reference", "onnx", "webgpu"] as const) {
  Deno.test(`optim8: the gate skips the whole update, the grad scale multiplies the gradient (${kind})`, async () => {
    const ex = await createExecutor(kind);
    const shape = [4100], n = 4100, o = { beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.01 };
    const p0 = values(7, shape), g0 = values(8, shape);
    const states = bnbAdamwStates("w", shape);
    const reset = () => {
      ex.setParam("w", p0, shape);
      for (const st of states) ex.setParam(st.name, new Float32Array(numel(st.shape)), st.shape, st.dtype);
    };
    reset();
    const g = new Graph();
    const lr = g.input("lr", []), step = g.input("step", []), gs = g.input("gs", []), ok = g.input("ok", []);
    const st = states.map((s) => g.param(s.name, s.shape, s.dtype));
    bnbAdamw(g.param("w", shape), g.input("grad", shape), st, lr, step, o, gs, ok);
    const compiled = await ex.compile(g);
    const read = () => Promise.all([ex.getParam("w"), ...states.map((s) => ex.getParam(s.name))]);
    const before = await read();
    await compiled.run({ lr: [1e-2], step: [1], gs: [0.5], ok: [0], grad: g0 }, []);
    (await read()).forEach((x, i) => assert.deepEqual([...x], [...before[i]], `${kind}: gate 0 wrote ${i}`));
    await compiled.run({ lr: [1e-2], step: [1], gs: [0.5], ok: [1], grad: g0 }, []);
    // The host port with the gradient halved.
    const want = Float64Array.from(p0);
    const wst = {
      state1: new Int32Array(1025),
      state2: new Int32Array(1025),
      absmax1: new Float32Array(17),
      absmax2: new Float32Array(17),
    };
    adam8bitStep(want, g0.map((x) => x * 0.5), wst, 1e-2, 1, o);
    close(await ex.getParam("w"), want, 2e-6, `${kind} w`);
    closeCodes(unpackCodes(await ex.getParam("w.state1"), n), unpackCodes(wst.state1, n), `${kind} state1`);
    close(await ex.getParam("w.absmax2"), wst.absmax2, 1e-5, `${kind} absmax2`);
  });
}
