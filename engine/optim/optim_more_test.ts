/**
 * Lion, Adafactor, Muon, Adam-mini and torch's SGD with momentum, step by step against their references
 * (fixtures/optim/make_optim.py: torch.optim.SGD, transformers' Adafactor, lion-pytorch's update, LLaMA-Factory's
 * Muon), on the f64 reference executor, ONNX Runtime and WebGPU.
 */
import assert from "node:assert/strict";
import { Graph, sgd, type Tensor } from "../graph/mod.ts";
import { createExecutor } from "../exec/pick.ts";
import { adafactor, adafactorStates } from "./adafactor.ts";
import { adamMini, adamMiniBlock, adamMiniDecays, adamMiniStates } from "./adam_mini.ts";
import { lion } from "./lion.ts";
import { apolloAdamw, randomProjection } from "./apollo.ts";
import { galoreLayout, galoreRefreshDue } from "./galore.ts";
import { muon, muonStates, newtonSchulz5, usesMuon } from "./muon.ts";

interface Case {
  name: string;
  optim: "sgd" | "adafactor" | "lion" | "muon" | "adam_mini";
  dim?: number;
  n_heads?: number;
  momentum?: number;
  nesterov?: boolean;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weight_decay: number;
  params: { name: string; shape: number[]; init: number[] }[];
  steps: { lr: number; grads: number[][]; params: number[][]; states: Record<string, number[]>[] }[];
}

const GOLDENS: { cases: Case[] } = JSON.parse(
  await Deno.readTextFile(new URL("../../fixtures/optim/goldens.json", import.meta.url)),
);

/** The states of param `name` of `shape` under case `c`: [torch's state key, shape]. */
function statesOf(c: Case, name: string, shape: number[]): [string, number[]][] {
  if (c.optim === "sgd") return [["momentum_buffer", shape]];
  if (c.optim === "lion") return [["exp_avg", shape]];
  const list = c.optim === "adafactor"
    ? adafactorStates(name, shape)
    : c.optim === "adam_mini"
    ? adamMiniStates(name, shape, { dim: c.dim!, nHeads: c.n_heads! })
    : muonStates(name, shape);
  return list.map((s) => [s.name.slice(name.length + 1), s.shape]);
}

function stepGraph(c: Case): Graph {
  const g = new Graph();
  const lr = g.input("lr", []), step = g.input("step", []);
  c.params.forEach((p, i) => {
    const w = g.param(p.name, p.shape), grad = g.input(`grad${i}`, p.shape);
    const st: Tensor[] = statesOf(c, p.name, p.shape).map(([k, s]) => g.param(`${p.name}.${k}`, s));
    const wd = c.weight_decay;
    if (c.optim === "sgd") sgd(w, grad, lr, { momentum: c.momentum, nesterov: c.nesterov, weightDecay: wd }, st[0]);
    else if (c.optim === "lion") lion(w, grad, st[0], lr, { beta1: c.beta1!, beta2: c.beta2!, weightDecay: wd });
    else if (c.optim === "adafactor") adafactor(w, grad, st, lr, step, { weightDecay: wd });
    else if (c.optim === "adam_mini") {
      const o = { beta1: c.beta1!, beta2: c.beta2!, eps: c.eps!, weightDecay: wd, dim: c.dim!, nHeads: c.n_heads! };
      adamMini(p.name, w, grad, st, lr, step, o);
    } else muon(p.name, w, grad, st, lr, step, { beta1: c.beta1!, beta2: c.beta2!, eps: c.eps!, weightDecay: wd });
  });
  return g;
}

function close(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string): void {
  assert.equal(got.length, want.length, `${what}: length`);
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i] - want[i]);
    assert.ok(e <= tol * (1 + Math.abs(want[i])), `${what}: [${i}] got ${got[i]}, want ${want[i]}`);
  }
}

for (const kind of ["reference", "onnx", "webgpu"] as const) {
  Deno.test(`optim: sgd momentum, adafactor, lion and muon match their references over 3 steps (${kind})`, async () => {
    const ex = await createExecutor(kind);
    assert.deepEqual(
      new Set(GOLDENS.cases.map((c) => c.optim)),
      new Set(["sgd", "adafactor", "lion", "muon", "adam_mini"]),
    );
    for (const c of GOLDENS.cases) {
      for (const p of c.params) {
        ex.setParam(p.name, p.init, p.shape);
        for (const [k, s] of statesOf(c, p.name, p.shape)) {
          ex.setParam(`${p.name}.${k}`, new Float32Array(s.reduce((a, b) => a * b, 1)), s);
        }
      }
      const compiled = await ex.compile(stepGraph(c));
      for (const [t, s] of c.steps.entries()) {
        const feeds: Record<string, ArrayLike<number>> = { lr: [s.lr], step: [t + 1] };
        s.grads.forEach((gr, i) => feeds[`grad${i}`] = gr);
        // Each step starts from the reference's weights, so the update check below is of this step's update alone.
        for (const [i, p] of c.params.entries()) ex.setParam(p.name, t ? c.steps[t - 1].params[i] : p.init, p.shape);
        await compiled.run(feeds, []);
        for (const [i, p] of c.params.entries()) {
          const what = `${kind} ${c.name} step ${t + 1} ${p.name}`;
          const got = await ex.getParam(p.name), before = t ? c.steps[t - 1].params[i] : p.init;
          close(got, s.params[i], 2e-5, what);
          // The update itself, to 1e-4 of its size (the params' values alone would hide small update errors).
          const want = s.params[i].map((x, j) => x - before[j]), scale = Math.max(...want.map(Math.abs));
          want.forEach((d, j) => {
            const e = Math.abs(got[j] - before[j] - d);
            assert.ok(e <= 1e-4 * scale + 1e-7, `${what}: update [${j}] off by ${e} (largest ${scale})`);
          });
          for (const [k] of statesOf(c, p.name, p.shape)) {
            assert.ok(s.states[i][k], `${what}: golden has ${k}`);
            close(await ex.getParam(`${p.name}.${k}`), s.states[i][k], 2e-5, `${what} ${k}`);
          }
        }
      }
    }
  });
}

Deno.test("muon: LF's split (2-D, not embed / lm_head) and Newton-Schulz's shape", () => {
  assert.ok(usesMuon("model.layers.0.mlp.up_proj.weight", [8, 4]));
  assert.ok(usesMuon("model.layers.0.self_attn.q_proj.lora_A.weight", [2, 4]));
  assert.ok(!usesMuon("model.embed_tokens.weight", [8, 4]));
  assert.ok(!usesMuon("lm_head.weight", [8, 4]));
  assert.ok(!usesMuon("model.norm.weight", [4]));
  const g = new Graph();
  assert.deepEqual(newtonSchulz5(g.input("x", [6, 3])).shape, [6, 3]);
  assert.throws(() => newtonSchulz5(g.input("y", [2, 3, 4])), /2-D/);
});

Deno.test("adam-mini: the official partition by name, and heads of dim·dim / n_heads", () => {
  assert.equal(adamMiniBlock("model.embed_tokens.weight"), "adamw");
  assert.equal(adamMiniBlock("lm_head.weight"), "adamw");
  assert.equal(adamMiniBlock("model.layers.0.self_attn.q_proj.weight"), "heads");
  assert.equal(adamMiniBlock("model.layers.0.self_attn.k_proj.weight"), "heads");
  assert.equal(adamMiniBlock("model.layers.0.self_attn.v_proj.weight"), "tensor");
  assert.equal(adamMiniBlock("model.layers.0.self_attn.q_proj.lora_A.weight"), "tensor");
  assert.ok(!adamMiniDecays("model.norm.weight") && adamMiniDecays("model.layers.0.self_attn.q_proj.bias"));
  // GQA: k_proj [kvHeads·headDim, dim] splits into kvHeads blocks.
  const k = adamMiniStates("layers.0.self_attn.k_proj.weight", [64, 128], { dim: 128, nHeads: 4 });
  assert.deepEqual(k.map((s) => s.shape), [[2, 4096], [2, 1]]);
  assert.throws(() => adamMiniStates("q_proj.weight", [10, 10], { dim: 10, nHeads: 3 }), /not a multiple/);
});

interface ApolloCase {
  name: string;
  shape: [number, number];
  scale_type: "channel" | "tensor";
  scale_front: boolean;
  weight_decay: number;
  rank: number;
  update_interval: number;
  scale: number;
  beta1: number;
  beta2: number;
  eps: number;
  init: number[];
  steps: {
    lr: number;
    grad: number[];
    proj?: number[];
    weight: number[];
    exp_avg: number[];
    exp_avg_sq: number[];
    scaled_grad: number[];
  }[];
}

const APOLLO: ApolloCase[] = (GOLDENS as unknown as { apollo: ApolloCase[] }).apollo;

for (const kind of ["reference", "onnx", "webgpu"] as const) {
  Deno.test(`apollo: apollo-torch's AdamW step with a given random projection, 3 steps, a refresh (${kind})`, async () => {
    const ex = await createExecutor(kind);
    assert.equal(APOLLO.length, 4);
    for (const c of APOLLO) {
      const o = { rank: c.rank, projType: "std" as const };
      const l = galoreLayout(c.shape, o);
      const g = new Graph();
      const lr = g.input("lr", []), step = g.input("step", []), grad = g.input("grad", c.shape);
      const w = g.param("w", c.shape);
      const st = {
        m: g.param("m", l.low),
        v: g.param("v", l.low),
        proj: g.param("p", l.proj),
        scaled: g.param("s", [1]),
      };
      apolloAdamw(w, grad, st, l.side, lr, step, {
        beta1: c.beta1,
        beta2: c.beta2,
        eps: c.eps,
        weightDecay: c.weight_decay,
        scale: c.scale,
        scaleType: c.scale_type,
        scaleFront: c.scale_front,
      });
      ex.setParam("w", c.init, c.shape);
      for (const [n, s] of [["m", l.low], ["v", l.low], ["p", l.proj], ["s", [1]]] as const) {
        ex.setParam(n, new Float32Array(s[0] * (s[1] ?? 1)), [...s]);
      }
      const compiled = await ex.compile(g);
      let before = c.init;
      for (const [t, s] of c.steps.entries()) {
        const what = `${kind} ${c.name} step ${t + 1}`;
        assert.equal(galoreRefreshDue(t + 1, c.update_interval), s.proj !== undefined, `${what}: refresh`);
        if (s.proj) ex.setParam("p", s.proj, l.proj);
        ex.setParam("w", before, c.shape); // this step's update alone is checked below
        await compiled.run({ lr: [s.lr], step: [t + 1], grad: s.grad }, []);
        close(await ex.getParam("m"), s.exp_avg, 2e-5, `${what}: exp_avg`);
        close(await ex.getParam("v"), s.exp_avg_sq, 2e-5, `${what}: exp_avg_sq`);
        close(await ex.getParam("s"), s.scaled_grad, 2e-5, `${what}: limiter norm`);
        const got = await ex.getParam("w");
        const want = s.weight.map((x, j) => x - before[j]), scale = Math.max(...want.map(Math.abs));
        want.forEach((d, j) => {
          const e = Math.abs(got[j] - before[j] - d);
          assert.ok(e <= 1e-4 * scale + 1e-7, `${what}: update [${j}] off by ${e} (largest ${scale})`);
        });
        before = s.weight;
      }
    }
  });
}

Deno.test("apollo: random projections are N(0, 1/r), deterministic per seed and refresh", () => {
  const o = { rank: 8, projType: "std" as const };
  const a = randomProjection([512, 256], o, 3, 0), b = randomProjection([512, 256], o, 3, 0);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, randomProjection([512, 256], o, 3, 1));
  assert.notDeepEqual(a, randomProjection([512, 256], o, 4, 0));
  assert.equal(a.length, 8 * 256);
  const mean = a.reduce((s, x) => s + x, 0) / a.length;
  const variance = a.reduce((s, x) => s + (x - mean) ** 2, 0) / a.length;
  assert.ok(Math.abs(mean) < 0.02, `mean ${mean}`);
  assert.ok(Math.abs(variance * 8 - 1) < 0.05, `variance ${variance} (want 1/8)`);
});
