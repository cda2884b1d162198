/**
 * One ONNX Runtime session for every size (exec/onnx/symbolic.ts): a training step (LoRA and full), an eval graph and
 * generation's prefill and decode graphs compiled at several padded lengths and batch sizes share one session each,
 * and give what a session built for each shape gives.
 */
import nodeAssert from "node:assert/strict";
import { OnnxExecutor } from "../exec/onnx/executor.ts";
import type { Executor, HostArray, SymbolicSizes } from "../exec/executor.ts";
import { TINY_LLAMA } from "./testing.ts";
import { decoderParams } from "../nn/decoder.ts";
import { Model } from "../nn/model.ts";
import { attachAdapter } from "../nn/lora.ts";
import { adamwStepPlan, LOSS_SUM, traceEvalStep, traceTrainStep } from "./step/lm.ts";
import { stateNames } from "./step/optimizer.ts";
import { mulberry32 as rng } from "../util/rng.ts";
import type { DType } from "../graph/mod.ts";
import { generateBatch } from "../nn/generate.ts";
const assert = (ok: unknown, msg?: string) => nodeAssert.ok(ok, msg);
const assertEquals = (a: unknown, b: unknown, msg?: string) => nodeAssert.deepStrictEqual(a, b, msg);
const assertAlmostEquals = (a: number, b: number, tol: number, msg?: string) =>
  nodeAssert.ok(Math.abs(a - b) <= tol, `${msg}: ${a} vs ${b}`);
import { flattenGraph } from "../exec/onnx/symbolic_fit.ts";
import { buildSymbolic, instantiate, matchSymbolic } from "../exec/onnx/symbolic.ts";

const CFG = TINY_LLAMA;

/** A random model on `ex` (same weights on every executor) with LoRA or every weight trainable, AdamW states at 0. */
async function setup(ex: Executor, method: "lora" | "full" | "none") {
  const r = rng(5);
  const params = new Map<string, { shape: number[]; dtype: DType }>();
  for (const [name, shape] of decoderParams(CFG)) {
    ex.setParam(name, Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => (r() - 0.5) * 0.2), shape);
    params.set(name, { shape, dtype: "f32" });
  }
  const model = new Model(CFG, ex, params);
  let trainable: string[] = [];
  if (method === "lora") {
    trainable = [...(await attachAdapter(model, { r: 4, alpha: 8, targets: ["all"] })).params.keys()];
  }
  if (method === "full") trainable = [...params.keys()];
  for (const name of trainable) {
    const shape = (params.get(name) ?? model.adapter!.params.get(name)!).shape;
    const zeros = new Float32Array(shape.reduce((a, b) => a * b, 1));
    ex.setParam(stateNames(name).m, zeros, shape);
    ex.setParam(stateNames(name).v, zeros, shape);
  }
  ex.setParam(LOSS_SUM, [0], [1]);
  return { model, trainable };
}

/** Feeds of a step of B × L (row b's last b tokens are padding with label -100). */
function feeds(B: number, L: number, step: number): Record<string, ArrayLike<number>> {
  const r = rng(100 * B + L), n = B * L;
  const pad = (i: number) => i % L >= L - Math.floor(i / L);
  return {
    ids_0: Int32Array.from({ length: n }, () => Math.floor(r() * CFG.vocab)),
    positions_0: Int32Array.from({ length: n }, (_, i) => i % L),
    segments_0: Int32Array.from({ length: n }, (_, i) => (pad(i) ? 0 : 1)),
    labels_0: Int32Array.from({ length: n }, (_, i) => (pad(i) ? -100 : Math.floor(r() * CFG.vocab))),
    inv_targets: [1 / n],
    lr: [1e-2],
    step: [step],
  };
}

const SHAPES: [number, number][] = [[2, 8], [2, 24], [3, 16], [1, 5]];

/** Loss and updated params of two steps at each shape, one graph per shape (the trainer's caching). */
async function trainRun(symbolic: boolean, method: "lora" | "full") {
  const ex = await OnnxExecutor.create({ symbolic, modelCache: false });
  const { model, trainable } = await setup(ex, method);
  const out: { loss: number; params: HostArray[] }[] = [];
  let step = 0;
  for (const [B, L] of SHAPES) {
    const sym: SymbolicSizes = {
      sizes: { B, L },
      trace: (s) => traceTrainStep(model, adamwStepPlan(s.B, s.L, trainable)),
    };
    const c = await ex.compile(traceTrainStep(model, adamwStepPlan(B, L, trainable)), { symbolic: sym });
    for (let k = 0; k < 2; k++) {
      const o = await c.run(feeds(B, L, ++step), ["loss", "grad_norm"]);
      out.push({ loss: o.loss[0], params: await Promise.all(trainable.slice(0, 6).map((n) => ex.getParam(n))) });
    }
  }
  ex.dispose();
  return { out, sessions: ex.sessions };
}

function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, tol: number, what: string) {
  assertEquals(got.length, want.length, what);
  for (let i = 0; i < got.length; i++) {
    assert(Math.abs(got[i] - want[i]) <= tol * (1 + Math.abs(want[i])), `${what}[${i}]: ${got[i]} vs ${want[i]}`);
  }
}

for (const method of ["lora", "full"] as const) {
  Deno.test(`symbolic: one session serves a ${method} training step at every batch and length`, async () => {
    const sym = await trainRun(true, method);
    const fixed = await trainRun(false, method);
    assertEquals(sym.sessions.fallbacks, []);
    assertEquals(sym.sessions.created, 1);
    assertEquals(sym.sessions.reused, SHAPES.length - 1);
    assertEquals(fixed.sessions.created, SHAPES.length);
    sym.out.forEach((o, i) => {
      assertAlmostEquals(o.loss, fixed.out[i].loss, 1e-6 * (1 + Math.abs(o.loss)), `loss of run ${i}`);
      o.params.forEach((p, k) => assertClose(p, fixed.out[i].params[k], 1e-6, `run ${i} param ${k}`));
    });
  });
}

Deno.test("symbolic: one session serves the eval graph at every length; the per-shape session agrees", async () => {
  const run = async (symbolic: boolean) => {
    const ex = await OnnxExecutor.create({ symbolic, modelCache: false });
    const { model } = await setup(ex, "none");
    const losses: number[] = [];
    for (const [B, L] of SHAPES) {
      const trace = (s: Record<string, number>) => traceEvalStep(model, s.B, s.L);
      const c = await ex.compile(trace({ B, L }), { symbolic: { sizes: { B, L }, trace } });
      const f = feeds(B, L, 1);
      losses.push((await c.run(f)).loss_sum[0]);
    }
    return { losses, sessions: ex.sessions };
  };
  const sym = await run(true), fixed = await run(false);
  assertEquals(sym.sessions.created, 1);
  assertEquals(fixed.sessions.created, SHAPES.length);
  assertClose(sym.losses, fixed.losses, 1e-6, "eval loss_sum");
});

Deno.test("symbolic: generation's prefill and decode graphs take one session each across batches and lengths", async () => {
  const run = async (symbolic: boolean) => {
    const ex = await OnnxExecutor.create({ symbolic, modelCache: false });
    const { model } = await setup(ex, "none");
    const outs: number[][][] = [], logits: number[] = [];
    // (B, prompt bucket, cache): (1, 16, 64), (2, 32, 64), (4, 128, 192)
    const long = Array.from({ length: 70 }, (_, i) => (i * 7) % CFG.vocab);
    const batches = [[[1, 5, 9]], [[3, ...long.slice(0, 17)], [2, 7]], [long, [4], [5, 6], long.slice(9)]];
    for (const prompts of batches) {
      outs.push(await generateBatch(model, prompts, { maxNewTokens: 20, onLogits: (l) => logits.push(...l) }));
    }
    return { outs, logits, sessions: ex.sessions };
  };
  const sym = await run(true), fixed = await run(false);
  assertEquals(sym.outs, fixed.outs);
  assertClose(sym.logits, fixed.logits, 1e-6, "logits of prefill and decode steps");
  assertEquals(sym.sessions.fallbacks, []);
  assertEquals(sym.sessions.created, 2, "one prefill and one decode session");
  assertEquals(fixed.sessions.created, 6, "per shape: a prefill and a decode session per batch");
});

Deno.test("symbolic: a graph that has no symbolic model falls back to a session of its own shape", async () => {
  const ex = await OnnxExecutor.create({ modelCache: false });
  const { model } = await setup(ex, "none");
  // A length clamped to 16 (as a window would): no polynomial of the sizes.
  const c = await ex.compile(traceEvalStep(model, 2, 8), {
    symbolic: { sizes: { B: 2, L: 8 }, trace: (s) => traceEvalStep(model, s.B, Math.min(s.L, 16)) },
  });
  assertEquals(ex.sessions.created, 1);
  assertEquals(ex.sessions.fallbacks.length, 1);
  assert((await c.run(feeds(2, 8, 1))).loss_sum[0] > 0);
});

Deno.test("buildSymbolic: inputs carry dim_params, computed Reshapes named dims, a trace at other sizes matches", async () => {
  const ex = await OnnxExecutor.create({ modelCache: false });
  const { model } = await setup(ex, "none");
  const trace = (s: Record<string, number>) => traceEvalStep(model, s.B, s.L);
  const sm = buildSymbolic(trace({ B: 2, L: 8 }), { sizes: { B: 2, L: 8 }, trace }, { hostScatter: true });
  assert(!("why" in sm), "why" in sm ? sm.why : "");
  if ("why" in sm) return;
  assertEquals(sm.model.graph.inputs.find((v) => v.name === "ids_0")?.dims, ["B", "L"]);
  assertEquals(sm.model.graph.inputs.find((v) => v.name === "labels_0")?.dims, ["B*L"]);
  assert(sm.model.graph.valueInfo!.some((v) => v.dims.includes("B*L")), "a Reshape to [B·L, ...] is named");
  assert(matchSymbolic(sm, flattenGraph(trace({ B: 5, L: 100 })), [5, 100]));
  assert(!matchSymbolic(sm, flattenGraph(trace({ B: 5, L: 100 })), [5, 99]), "sizes that are not the trace's");
  assertEquals(instantiate(sm, [5, 100]).inputs.find((v) => v.name === "ids_0")?.shape, [5, 100]);
});

Deno.test("buildSymbolic: every value a checkpointed LoRA step computes has its dims named for ONNX Runtime", async () => {
  const ex = await OnnxExecutor.create({ modelCache: false });
  const { model, trainable } = await setup(ex, "lora");
  const trace = (s: Record<string, number>) =>
    traceTrainStep(model, adamwStepPlan(s.B, s.L, trainable, { checkpoint: true }));
  const sm = buildSymbolic(trace({ B: 2, L: 8 }), { sizes: { B: 2, L: 8 }, trace }, {});
  assert(!("why" in sm), "why" in sm ? sm.why : "");
  if ("why" in sm) return;
  const g = sm.model.graph, info = new Map(g.valueInfo!.map((v) => [v.name, v.dims]));
  const declared = new Set([...g.outputs, ...g.initializers].map((v) => v.name));
  // The run-time shape arithmetic (sym:*) is small vectors ONNX Runtime infers; everything else is named.
  const unnamed = g.nodes.flatMap((n) => n.outputs).filter((o) => !declared.has(o) && !o.startsWith("sym:"))
    .filter((o) => !info.has(o));
  assertEquals(unnamed, []);
  const named = [...info.values()].filter((d) => d.some((x) => typeof x === "string"));
  assert(named.length > info.size / 2, `${named.length} of ${info.size} values have a dim that changes with B or L`);
  assert(named.some((d) => d.includes("B*L")) && named.some((d) => d.includes("L") && d.includes("B")));
});
