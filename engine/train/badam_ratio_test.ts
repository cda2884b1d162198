/**
 * BAdam's ratio mode step by step against fixtures/optim/make_badam_ratio.py (a port of BlockOptimizerRatio's hook,
 * masks, sparse Adam and BAdam's clipping — which clips nothing — on torch's sparse tensors), over 5 steps and two
 * switches (switch_every 2),
 * on the reference executor, ONNX Runtime and WebGPU; and the pure pieces (trainable set, counts, indices).
 */
import assert from "node:assert/strict";
import { Graph } from "../graph/mod.ts";
import { createExecutor } from "../exec/pick.ts";
import { badamRatioOptimizer, ratioStateNames } from "./optimizers_badam_ratio.ts";
import { f32Precision } from "./step/precision.ts";
import { mulberry32 } from "../util/rng.ts";
import {
  badamRatioTrainable,
  ratioBlock,
  ratioCount,
  ratioEpsilon,
  ratioIndices,
  scatterPermutation,
} from "../optim/badam_ratio.ts";

interface Case {
  name: string;
  ratio: number;
  mask_mode: "adjacent" | "scatter";
  max_grad_norm: number;
  seed: number;
  beta1: number;
  beta2: number;
  eps: number;
  switch_every: number;
  params: { name: string; shape: number[]; seed: number }[];
  steps: {
    lr: number;
    grad_norm: number | null;
    params: Record<string, string>;
    states: Record<string, { exp_avg: string; exp_avg_sq: string }>;
  }[];
}
const GOLDENS: { cases: Case[] } = JSON.parse(
  await Deno.readTextFile(new URL("../../fixtures/optim/badam_ratio.json", import.meta.url)),
);
const f32 = (s: string) => new Float32Array(Uint8Array.from(atob(s), (c) => c.charCodeAt(0)).buffer);
const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** make_badam_ratio.py's values(). */
function values(seed: number, shape: number[]): Float32Array {
  const [rows, cols] = shape.length === 2 ? shape : [1, shape[0]];
  const r = mulberry32(seed), out = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    const scale = 2 ** (Math.floor(r() * 6) - 3);
    for (let j = 0; j < cols; j++) out[i * cols + j] = Math.fround(Math.fround(r() + r() + r() - 1.5) * scale);
  }
  return out;
}

Deno.test("badam ratio: the trainable set, counts, epsilons and indices follow BlockOptimizerRatio", () => {
  const names = ["model.embed_tokens.weight", "model.layers.0.mlp.up_proj.weight", "lm_head.weight", "x.embed.y"];
  assert.deepEqual(badamRatioTrainable(names), ["model.layers.0.mlp.up_proj.weight", "x.embed.y"]);
  assert.throws(() => badamRatioTrainable(["model.embed_tokens.weight", "model.norm.weight"]), /tied word embeddings/);
  assert.equal(ratioCount(96, 0.3), 28);
  assert.equal(ratioCount(100, 0.05), 5);
  assert.equal(ratioCount(7, 1), 7);
  assert.equal(ratioEpsilon(99, 0.5), 1e-9);
  assert.equal(ratioEpsilon(100, 0.5), 0);
  assert.equal(ratioEpsilon(100, 1), 1e-9);
  assert.deepEqual(ratioBlock(1, 100), { block: 0, t: 1 });
  assert.deepEqual(ratioBlock(100, 100), { block: 0, t: 100 });
  assert.deepEqual(ratioBlock(101, 100), { block: 1, t: 1 });
  // adjacent: k from offset block·k, wrapping, sorted
  assert.deepEqual([...ratioIndices(10, 4, 0)], [0, 1, 2, 3]);
  assert.deepEqual([...ratioIndices(10, 4, 2)], [0, 1, 8, 9]);
  const perm = scatterPermutation(10, 42);
  assert.deepEqual([...perm].sort((a, b) => a - b), [...Array(10).keys()]);
  assert.deepEqual([...ratioIndices(10, 3, 1, perm)], [perm[3], perm[4], perm[5]].sort((a, b) => a - b));
});

for (const kind of ["reference", "onnx", "webgpu"] as const) {
  Deno.test(`badam ratio: 5 steps match the port of BlockOptimizerRatio (${kind})`, async () => {
    const ex = await createExecutor(kind);
    for (const c of GOLDENS.cases) {
      const trainable = badamRatioTrainable(c.params.map((p) => p.name));
      const ps = c.params.filter((p) => trainable.includes(p.name)).map((p) => {
        const n = numel(p.shape);
        return { name: p.name, n, k: ratioCount(n, c.ratio), epsilon: ratioEpsilon(n, c.ratio) };
      }).filter((p) => p.k > 0);
      const opt = badamRatioOptimizer("", ps, { beta1: c.beta1, beta2: c.beta2, eps: c.eps });
      const shapeOf = (n: string) => c.params.find((p) => p.name === n)!.shape;
      const setBlock = (block: number) => {
        for (const p of ps) {
          const st = ratioStateNames(p.name);
          const perm = c.mask_mode === "scatter" && p.k < p.n ? scatterPermutation(p.n, c.seed) : undefined;
          ex.setParam(st.index, ratioIndices(p.n, p.k, block, perm), [p.k], "i32");
          ex.setParam(st.m, new Float32Array(p.k), [p.k]);
          ex.setParam(st.v, new Float32Array(p.k), [p.k]);
        }
      };
      for (const p of c.params) ex.setParam(p.name, values(p.seed, p.shape), p.shape);
      setBlock(0);
      const g = new Graph();
      const lr = g.input("lr", []), step = g.input("step", []);
      const names = ps.map((p) => p.name);
      const params = names.map((n) => g.param(n, shapeOf(n)));
      const grads = names.map((n) => g.input(`grad:${n}`, shapeOf(n)));
      const kept = opt.gradients!(g, names, grads);
      // The session runs ratio mode with max_grad_norm 0: the norm of the kept entries is logged, nothing clips.
      const clipped = f32Precision.clip(g, kept, 0);
      assert.equal(clipped.gradScale, undefined);
      opt.update(g, { names, params, grads: kept, lr, step });
      const compiled = await ex.compile(g);
      let block = 0;
      for (const [i, s] of c.steps.entries()) {
        const { block: b, t } = ratioBlock(i + 1, c.switch_every);
        if (b !== block) setBlock(block = b);
        const feeds: Record<string, ArrayLike<number>> = { lr: [s.lr], step: [t] };
        for (const n of names) {
          feeds[`grad:${n}`] = values(c.params.find((p) => p.name === n)!.seed + 100 * (i + 1), shapeOf(n));
        }
        const out = await compiled.run(feeds, ["grad_norm"]);
        const what = `${kind} ${c.name} step ${i + 1}`;
        if (s.grad_norm !== null) {
          assert.ok(Math.abs(out.grad_norm[0] - s.grad_norm) < 1e-5 * s.grad_norm, `${what}: grad_norm`);
        }
        for (const p of c.params) {
          const got = await ex.getParam(p.name), want = f32(s.params[p.name]);
          for (let j = 0; j < want.length; j++) {
            assert.ok(
              Math.abs(got[j] - want[j]) <= 1e-5 * (1 + Math.abs(want[j])),
              `${what} ${p.name}[${j}] ${got[j]} vs ${want[j]} from ${values(p.seed, p.shape)[j]}`,
            );
          }
        }
        for (const p of ps) {
          const want = s.states[p.name], st = ratioStateNames(p.name);
          if (!want) continue;
          for (const [k, key] of [["exp_avg", st.m], ["exp_avg_sq", st.v]] as const) {
            const got = await ex.getParam(key), w = f32(want[k]);
            assert.equal(got.length, w.length, `${what} ${p.name} ${k}`);
            w.forEach((x, j) =>
              assert.ok(Math.abs(got[j] - x) <= 1e-5 * (1e-3 + Math.abs(x)), `${what} ${p.name} ${k}[${j}]`)
            );
          }
        }
      }
    }
  });
}
