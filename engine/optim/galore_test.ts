import assert from "node:assert/strict";
import { Graph } from "../graph/mod.ts";
import type { Executor } from "../exec/executor.ts";
import { createExecutor } from "../exec/pick.ts";
import { decoderConfig } from "../nn/config.ts";
import { decoderParams } from "../nn/decoder.ts";
import {
  galoreAdamw,
  galoreLayout,
  type GaloreProjType,
  galoreRefreshDue,
  galoreStates,
  galoreTargets,
  projectGrad,
  refreshProjection,
} from "./galore.ts";

interface Step {
  exp_avg: number[];
  exp_avg_sq: number[];
  weight: number[];
  low_rank_grad?: number[];
  proj?: number[];
  proj_b?: number[];
  proj_shape?: number[];
}
interface Case {
  name: string;
  shape: [number, number];
  galore: boolean;
  proj_type: GaloreProjType;
  rank: number;
  update_interval: number;
  scale: number;
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weight_decay: number;
  weight0: number[];
  grads: number[][];
  steps: Step[];
}

const GOLDENS: { cases: Case[] } = JSON.parse(
  await Deno.readTextFile(new URL("../../fixtures/galore/goldens.json", import.meta.url)),
);

function close(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  let worst = 0, at = -1;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i] - want[i]) / (tol + tol * Math.abs(want[i]));
    if (e > worst) [worst, at] = [e, i];
  }
  assert.ok(worst <= 1, `${what}: [${at}] got ${got[at]}, want ${want[at]} (tol ${tol})`);
}

/** The vectors of a projection: rows of P for right/B, columns for left/A ([count, length] row-major). */
function vectorsOf(p: ArrayLike<number>, shape: number[], rows: boolean): Float64Array {
  const [a, b] = shape;
  if (rows) return Float64Array.from(p);
  const out = new Float64Array(a * b);
  for (let i = 0; i < a; i++) for (let j = 0; j < b; j++) out[j * a + i] = p[i * b + j];
  return out;
}

/** Equal up to the sign of each vector. */
function closeUpToSign(got: Float64Array, want: Float64Array, count: number, len: number, tol: number, what: string) {
  for (let i = 0; i < count; i++) {
    let dm = 0, dp = 0;
    for (let t = 0; t < len; t++) {
      dm = Math.max(dm, Math.abs(got[i * len + t] - want[i * len + t]));
      dp = Math.max(dp, Math.abs(got[i * len + t] + want[i * len + t]));
    }
    assert.ok(Math.min(dm, dp) < tol, `${what}: vector ${i} differs by ${Math.min(dm, dp)} even up to sign`);
  }
}

/** One GaLoreAdamW step graph for a case: grad, lr, step in; w, m, v, p (pb) stored; low-rank grad out. */
function stepGraph(c: Case): Graph {
  const g = new Graph();
  const grad = g.input("grad", c.shape), lr = g.input("lr", []), step = g.input("step", []);
  const w = g.param("w", c.shape);
  const opts = { beta1: c.beta1, beta2: c.beta2, eps: c.eps, weightDecay: c.weight_decay };
  if (!c.galore) {
    galoreAdamw(w, grad, g.param("m", c.shape), g.param("v", c.shape), lr, step, opts);
    return g;
  }
  const l = galoreLayout(c.shape, { rank: c.rank, projType: c.proj_type });
  const pr = { side: l.side, p: g.param("p", l.proj), b: l.projB && g.param("pb", l.projB), scale: c.scale };
  galoreAdamw(w, grad, g.param("m", l.low), g.param("v", l.low), lr, step, opts, pr);
  g.output("low", projectGrad(grad, pr));
  return g;
}

/**
 * Runs a case's 3 steps on `ex` with torch's projections, checking every state after every step. With `flip`,
 * vector `flip.index` of the projection set at step `flip.at` (0-based) has its sign flipped, and only the
 * weight is checked, up to the next refresh; returns the largest relative weight error seen.
 */
async function runCase(ex: Executor, c: Case, flip?: { index: number; at: number }): Promise<number> {
  let worst = 0;
  const low = c.galore ? galoreLayout(c.shape, { rank: c.rank, projType: c.proj_type }) : undefined;
  const lowShape = low?.low ?? c.shape;
  ex.setParam("w", c.weight0, c.shape);
  ex.setParam("m", new Float32Array(lowShape[0] * lowShape[1]), lowShape);
  ex.setParam("v", new Float32Array(lowShape[0] * lowShape[1]), lowShape);
  // Every param must exist before compiling (WebGPU binds buffers then); P is overwritten at step 1.
  if (low) ex.setParam("p", new Float32Array(low.proj[0] * low.proj[1]), low.proj);
  if (low?.projB) ex.setParam("pb", new Float32Array(low.projB[0] * low.projB[1]), low.projB);
  const compiled = await ex.compile(stepGraph(c));
  for (let t = 0; t < c.steps.length; t++) {
    const s = c.steps[t];
    const what = `${ex.name} ${c.name} step ${t + 1}`;
    if (low) {
      assert.equal(galoreRefreshDue(t + 1, c.update_interval), s.proj !== undefined, `${what}: refresh`);
      if (s.proj) {
        const proj = Float32Array.from(s.proj);
        // Sign invariance: flip one vector of P (a row for right, a column for left/full A).
        if (flip && t === flip.at) {
          for (let i = 0; i < low.proj[0]; i++) {
            for (let j = 0; j < low.proj[1]; j++) {
              if ((low.side === "right" ? i : j) === flip.index) proj[i * low.proj[1] + j] *= -1;
            }
          }
        }
        ex.setParam("p", proj, low.proj);
        if (low.projB) ex.setParam("pb", s.proj_b!, low.projB);
      }
    }
    const out = await compiled.run({ grad: c.grads[t], lr: [c.lr], step: [t + 1] });
    const w = await ex.getParam("w");
    if (flip && t >= flip.at) {
      for (let i = 0; i < w.length; i++) {
        worst = Math.max(worst, Math.abs(w[i] - s.weight[i]) / (1 + Math.abs(s.weight[i])));
      }
      if (t + 1 >= flip.at + c.update_interval) break;
      continue;
    }
    close(w, s.weight, 2e-5, `${what}: weight`);
    if (!flip) {
      if (low) close(out.low, s.low_rank_grad!, 2e-5, `${what}: low-rank gradient`);
      close(await ex.getParam("m"), s.exp_avg, 2e-5, `${what}: exp_avg`);
      close(await ex.getParam("v"), s.exp_avg_sq, 2e-5, `${what}: exp_avg_sq`);
    }
  }
  return worst;
}

for (const kind of ["reference", "onnx", "webgpu"] as const) {
  Deno.test(`galore: GaLoreAdamW matches galore_torch over 3 steps with a refresh (${kind})`, async () => {
    const ex = await createExecutor(kind);
    // WebGPU (lavapipe here) compiles slowly: one case per projection side there.
    const some = ["std_tall", "std_wide", "full", "plain_adamw"];
    for (const c of GOLDENS.cases.filter((c) => kind !== "webgpu" || some.includes(c.name))) await runCase(ex, c);
  });
}

Deno.test("galore: a flipped singular vector gives the same update (sign invariance)", async () => {
  const ex = await createExecutor("reference");
  for (const c of GOLDENS.cases.filter((c) => c.galore)) {
    const r = galoreLayout(c.shape, { rank: c.rank, projType: c.proj_type }).rank;
    for (const index of [0, r - 1]) {
      // From zero states (the first interval) the update does not depend on the signs the SVD picked ...
      const first = await runCase(ex, c, { index, at: 0 });
      assert.ok(first < 2e-6, `${c.name}: flipped vector ${index} changed the first interval's update by ${first}`);
    }
    // ... but at a refresh galore_torch keeps m from the old basis, so there the sign does matter (as it does
    // between torch builds): documented here, not hidden.
    const later = await runCase(ex, c, { index: 0, at: 2 });
    assert.ok(later > 1e-4, `${c.name}: expected a flipped vector at the refresh to change the update`);
  }
});

Deno.test("galore: refreshProjection gives torch's singular vectors up to sign", async () => {
  for (const c of GOLDENS.cases.filter((c) => c.galore)) {
    const opts = { rank: c.rank, projType: c.proj_type };
    const l = galoreLayout(c.shape, opts);
    for (let t = 0; t < c.steps.length; t++) {
      const s = c.steps[t];
      if (!s.proj) continue;
      const p = await refreshProjection(c.grads[t], c.shape, opts);
      const rows = l.side === "right";
      const [count, len] = rows ? l.proj : [l.proj[1], l.proj[0]];
      const what = `${c.name} step ${t + 1}`;
      closeUpToSign(vectorsOf(p.proj, l.proj, rows), vectorsOf(s.proj, l.proj, rows), count, len, 1e-5, what);
      if (l.projB) {
        const want = vectorsOf(s.proj_b!, l.projB, true);
        closeUpToSign(vectorsOf(p.projB!, l.projB, true), want, l.projB[0], l.projB[1], 1e-5, `${what} B`);
      }
    }
  }
  // and the same through the subspace iteration (forced on a small matrix)
  const c = GOLDENS.cases[0];
  const exact = await refreshProjection(c.grads[0], c.shape, { rank: c.rank, projType: c.proj_type });
  const iter = await refreshProjection(c.grads[0], c.shape, { rank: c.rank, projType: c.proj_type }, { tol: 1e-12 });
  close(iter.proj, exact.proj, 1e-6, "iterative = exact");
});

Deno.test("galore: layout by proj type and shape, states, refresh schedule", () => {
  const side = (shape: number[], projType: GaloreProjType) => galoreLayout(shape, { rank: 4, projType }).side;
  assert.equal(side([8, 6], "std"), "right");
  assert.equal(side([6, 8], "std"), "left");
  assert.equal(side([6, 6], "std"), "right");
  assert.equal(side([8, 6], "reverse_std"), "left");
  assert.equal(side([6, 8], "reverse_std"), "right");
  assert.equal(side([6, 8], "right"), "right");
  assert.equal(side([8, 6], "left"), "left");
  assert.deepEqual(galoreLayout([8, 6], { rank: 4, projType: "full" }), {
    side: "full",
    rank: 4,
    proj: [8, 4],
    projB: [4, 6],
    low: [4, 4],
  });
  assert.deepEqual(galoreLayout([3, 6], { rank: 16, projType: "std" }), {
    side: "left",
    rank: 3,
    proj: [3, 3],
    low: [3, 6],
  });
  assert.deepEqual(galoreStates("w", [8, 6], { rank: 2, projType: "std" }), [
    { name: "w.galore_exp_avg", shape: [8, 2] },
    { name: "w.galore_exp_avg_sq", shape: [8, 2] },
    { name: "w.galore_proj", shape: [2, 6] },
  ]);
  assert.deepEqual([1, 2, 3, 200, 201, 401].map((s) => galoreRefreshDue(s, 200)), [
    true,
    false,
    false,
    false,
    true,
    true,
  ]);
  assert.throws(() => galoreLayout([4], { rank: 2, projType: "std" }), /2-D weights/);
  assert.throws(() => galoreLayout([4, 4], { rank: 2, projType: "xx" as GaloreProjType }), /must be one of std/);
});

Deno.test("galore: targets are LF's linear modules (all = every linear but lm_head)", async () => {
  const raw = JSON.parse(await Deno.readTextFile(new URL("../../fixtures/models/llama/config.json", import.meta.url)));
  const c = decoderConfig(raw);
  const all = [...decoderParams(c).keys()];
  const t = galoreTargets(c, all, "all");
  assert.equal(t.length, 14);
  assert.ok(t.every((n) => /^model\.layers\.\d\.(self_attn|mlp)\.\w+_proj\.weight$/.test(n)));
  assert.deepEqual(galoreTargets(c, all, "mlp"), t.filter((n) => n.includes(".mlp.")));
  assert.deepEqual(galoreTargets(c, all, ["q_proj", "v_proj"]).length, 4);
  assert.deepEqual(galoreTargets(c, all, "lm_head"), ["lm_head.weight"]);
  assert.deepEqual(galoreTargets(c, t.slice(0, 3), "all"), t.slice(0, 3), "only trainable params");
  assert.throws(() => galoreTargets(c, all, "nothing"), /matches no trainable linear weight/);
});
