/**
 * The preference losses against fixtures/pref/goldens.json (TRL 1.13 and LLaMA-Factory's formulas in float64, made
 * by fixtures/pref/make_goldens.py) on fixed log-probabilities: loss, gradients w.r.t. the policy log-probs and LF's
 * metrics, within 1e-5 relative on the reference executor and 1e-4 on ONNX Runtime and WebGPU. Every batch carries
 * two extra padding rows (rows = 0) that must change nothing. Finite differences (and executor agreement) cover
 * the pieces on their own: log σ at 0 and far out, log(1 − eᶻ), each loss on random inputs.
 */
import assert from "node:assert/strict";
import { backward, concat, div, Graph, reshape, type Tensor } from "../../graph/mod.ts";
import type { Executor, HostArray } from "../../exec/executor.ts";
import { ReferenceExecutor } from "../../exec/reference.ts";
import { OnnxExecutor } from "../../exec/onnx/executor.ts";
import { WebGpuExecutor } from "../../exec/webgpu.ts";
import { hasGpu } from "../../gpu/device.ts";
import { checkAgainstReference, checkFiniteDifferences, type OpCase } from "../../exec/testing/harness.ts";
import {
  averagesLogps,
  dpoObjective,
  ktoConfig,
  ktoObjective,
  log1mExp,
  logSigmoid,
  metricNames,
  type PrefArgs,
  prefLogs,
  prefLossConfig,
  rmObjective,
  usesReference,
} from "./pref_loss.ts";

// deno-lint-ignore no-explicit-any
type Json = any;
const GOLD: Json = JSON.parse(await Deno.readTextFile(new URL("../../../fixtures/pref/goldens.json", import.meta.url)));
const gpu = await hasGpu();
const PAD = 2;

/** Executors with the relative tolerance each must meet. */
function executors(): [string, number, () => Promise<Executor>][] {
  const list: [string, number, () => Promise<Executor>][] = [
    ["reference", 1e-5, () => Promise.resolve(new ReferenceExecutor())],
    ["onnx", 1e-4, () => OnnxExecutor.create({ threads: 1 })],
  ];
  if (gpu) list.push(["webgpu", 1e-4, () => WebGpuExecutor.create()]);
  return list;
}

/** max |got − want| ≤ tol · max(max |want|, floor). */
function close(what: string, got: ArrayLike<number>, want: ArrayLike<number>, tol: number, floor = 1e-12): void {
  assert.equal(got.length, want.length, `${what}: length`);
  let err = 0, scale = floor;
  for (let i = 0; i < want.length; i++) {
    err = Math.max(err, Math.abs(got[i] - want[i]));
    scale = Math.max(scale, Math.abs(want[i]));
  }
  assert.ok(
    err <= tol * scale,
    `${what}: max error ${err.toExponential(2)} > ${tol} · ${scale.toExponential(2)}; got ` +
      `${Array.from(got).slice(0, 6)}, want ${Array.from(want).slice(0, 6)}`,
  );
}

async function run(ex: Executor, g: Graph, params: Record<string, number[]>, feeds: Record<string, number[]>) {
  for (const [n, d] of Object.entries(params)) ex.setParam(n, d, [d.length]);
  return await (await ex.compile(g)).run(feeds);
}

const stack = (xs: Tensor[]) => concat(xs.map((x) => reshape(x, [1])), 0);
const padded = (xs: number[], v: number) => [...xs, ...new Array(PAD).fill(v)];
const rows = (n: number) => padded(new Array(n).fill(1), 0);

function checkMetrics(what: string, names: string[], got: HostArray, want: Record<string, number>, tol: number) {
  for (const [k, v] of Object.entries(want)) {
    const i = names.indexOf(k);
    assert.ok(i >= 0, `${what}: no metric ${k} among ${names.join(", ")}`);
    close(`${what} ${k}`, [got[i]], [v], tol, 1e-3);
  }
}

function dpoGraph(a: PrefArgs, B: number): Graph {
  const cfg = prefLossConfig(a);
  const g = new Graph();
  const pc = g.param("pc", [B]), pr = g.param("pr", [B]);
  const [rc, rr, lc, lr, mask] = ["rc", "rr", "lc", "lr", "rows"].map((n) => g.input(n, [B]));
  const f = (s: Tensor, l: Tensor) => (averagesLogps(cfg.loss) ? div(s, l) : s);
  const ref = usesReference(cfg.loss);
  const { loss, metrics } = dpoObjective(
    {
      chosen: f(pc, lc),
      rejected: f(pr, lr),
      refChosen: ref ? f(rc, lc) : undefined,
      refRejected: ref ? f(rr, lr) : undefined,
      chosenAvg: div(pc, lc),
    },
    mask,
    cfg,
  );
  g.output("loss", loss);
  g.output("metrics", stack(metrics));
  const [gc, gr] = backward(loss, [pc, pr]);
  g.output("grad_pc", gc);
  g.output("grad_pr", gr);
  return g;
}

for (const [exName, tol, make] of executors()) {
  Deno.test(`pref losses on ${exName}: dpo sigmoid/hinge/ipo/orpo/simpo match TRL and LF`, async () => {
    const ex = await make();
    const x = GOLD.logps.inputs, n = x.chosen_sum.length;
    for (const c of GOLD.logps.dpo) {
      const name = c.config.name;
      const out = await run(ex, dpoGraph(c.config, n + PAD), {
        pc: padded(x.chosen_sum, -3),
        pr: padded(x.rejected_sum, -2),
      }, {
        rc: padded(x.ref_chosen_sum, -4),
        rr: padded(x.ref_rejected_sum, -1),
        lc: padded(x.chosen_len, 2),
        lr: padded(x.rejected_len, 3),
        rows: rows(n),
      });
      close(`${name} loss`, out.loss, [c.loss], tol);
      close(`${name} d/d chosen`, out.grad_pc, padded(c.grad.chosen_sum, 0), tol);
      close(`${name} d/d rejected`, out.grad_pr, padded(c.grad.rejected_sum, 0), tol);
      checkMetrics(name, metricNames("dpo", c.config.pref_loss), out.metrics, c.metrics, tol);
    }
    ex.dispose();
  });

  Deno.test(`pref losses on ${exName}: kto matches TRL's kto loss with LF's ftx and metrics`, async () => {
    const ex = await make();
    const x = GOLD.logps.kto_inputs, n = x.logps.length, B = n + PAD;
    for (const c of GOLD.logps.kto) {
      const g = new Graph();
      const lp = g.param("lp", [B]);
      const [len, tags, kl, ref, refKl, mask] = ["len", "tags", "kl", "ref", "ref_kl", "rows"].map((k) =>
        g.input(k, [B])
      );
      const cfg = ktoConfig(c.config);
      const o = ktoObjective(
        { logps: lp, avg: div(lp, len), tags, klLogps: kl, refLogps: ref, refKlLogps: refKl },
        mask,
        cfg,
      );
      g.output("loss", o.loss);
      g.output("metrics", stack(o.metrics));
      g.output("grad", backward(o.loss, [lp])[0]);
      const out = await run(ex, g, { lp: padded(x.logps, -5) }, {
        len: padded(x.len, 2),
        tags: padded(x.tags, 1),
        kl: padded(x.kl_logps, 30),
        ref: padded(x.ref_logps, -9),
        ref_kl: padded(x.ref_kl_logps_list[c.ref_kl], -30),
        rows: rows(n),
      });
      const name = c.config.name;
      close(`${name} loss`, out.loss, [c.loss], tol);
      close(`${name} d/d logps`, out.grad, padded(c.grad.logps, 0), tol);
      checkMetrics(name, metricNames("kto"), out.metrics, c.metrics, tol);
    }
    ex.dispose();
  });

  Deno.test(`pref losses on ${exName}: rm pairwise loss and accuracy match LF`, async () => {
    const ex = await make();
    const c = GOLD.logps.rm, n = c.chosen_scores.length;
    const g = new Graph();
    const cs = g.param("cs", [n + PAD]), rs = g.param("rs", [n + PAD]);
    const o = rmObjective(cs, rs, g.input("rows", [n + PAD]));
    g.output("loss", o.loss);
    g.output("metrics", stack(o.metrics));
    const [gc, gr] = backward(o.loss, [cs, rs]);
    g.output("gc", gc);
    g.output("gr", gr);
    const out = await run(ex, g, { cs: padded(c.chosen_scores, 5), rs: padded(c.rejected_scores, -5) }, {
      rows: rows(n),
    });
    close("rm loss", out.loss, [c.loss], tol);
    close("rm d/d chosen", out.gc, padded(c.grad.chosen, 0), tol);
    close("rm d/d rejected", out.gr, padded(c.grad.rejected, 0), tol);
    const logs = prefLogs("rm", metricNames("rm"), out.metrics, 1, "eval_");
    close("rm accuracy", [logs.eval_accuracy], [c.accuracy], tol);
    ex.dispose();
  });
}

Deno.test("logSigmoid: exact at 0 and finite far out", async () => {
  const xs = [-200, -30, -1, 0, 1e-3, 4, 30, 200];
  const g = new Graph();
  const x = g.param("x", [xs.length]);
  const y = logSigmoid(x);
  g.output("y", y);
  g.output("g", backward(y, [x])[0]);
  for (const [exName, tol, make] of executors()) {
    const ex = await make();
    const out = await run(ex, g, { x: xs }, {});
    const want = xs.map((v) => (v < 0 ? v - Math.log1p(Math.exp(v)) : -Math.log1p(Math.exp(-v))));
    const dwant = xs.map((v) => 1 / (1 + Math.exp(v)));
    xs.forEach((_, i) => {
      assert.ok(Math.abs(out.y[i] - want[i]) <= tol * Math.max(Math.abs(want[i]), 1e-6), `${exName} log σ(${xs[i]})`);
      assert.ok(Math.abs(out.g[i] - dwant[i]) <= tol * Math.max(dwant[i], 1e-6), `${exName} σ(−${xs[i]})`);
    });
    ex.dispose();
  }
});

Deno.test("prefLossConfig and ktoConfig: LF's defaults and checks", () => {
  assert.deepEqual(prefLossConfig(), {
    loss: "sigmoid",
    beta: 0.1,
    ftx: 0,
    labelSmoothing: 0,
    simpoGamma: 0.5,
    bcoWeight: 0,
  });
  assert.deepEqual(ktoConfig({ pref_beta: 0.2 }), { beta: 0.2, ftx: 0, chosenWeight: 1, rejectedWeight: 1 });
  assert.throws(() => prefLossConfig({ pref_loss: "bco_pair" }), /pref_loss must be one of sigmoid/);
  assert.throws(() => prefLossConfig({ pref_loss: "ipo", dpo_label_smoothing: 0.1 }), /only valid for sigmoid/);
  assert.throws(() => prefLossConfig({ pref_beta: 0 }), /pref_beta must be a positive number, got 0/);
});

Deno.test("prefLogs: LF's and TRL's aggregation of stored metrics", () => {
  const dpo = metricNames("dpo", "sigmoid");
  const d = prefLogs("dpo", dpo, dpo.map((_, i) => 2 * i), 2);
  assert.equal(d["rewards/rejected"], 1);
  assert.equal(d["logits/rejected"], 7);
  const kto = metricNames("kto");
  const k = prefLogs("kto", kto, [1, -32, 4, -0.5, -10, 2, 0.5], 2);
  assert.deepEqual(k, {
    "rewards/chosen": 0.25,
    "logps/chosen": -8,
    "rewards/rejected": -0.25,
    "logps/rejected": -5,
    "rewards/margins": 0.5,
    kl: 0.25,
  });
  assert.deepEqual(prefLogs("kto", kto, [1, -32, 4, 0, 0, 0, 0], 1), {
    "rewards/chosen": 0.25,
    "logps/chosen": -8,
    kl: 0,
  });
  assert.deepEqual(prefLogs("rm", ["correct", "pairs"], [3, 4], 2), {});
  assert.deepEqual(prefLogs("rm", ["correct", "pairs"], [3, 4], 2, "eval_"), { eval_accuracy: 0.75 });
});

// Finite differences on the reference, and ONNX / WebGPU against the reference, on random inputs.
const B = 4;
const lp = (lo: number, hi: number) => ({ shape: [B], range: [lo, hi] as [number, number], grad: true });
const fixed = (data: number[]) => ({ shape: [B], data });
// Metrics are detached: they join the executor comparison only (`metrics: true`, no finite differences).
const dpoCase = (a: PrefArgs, avg = false, metrics = false): OpCase => ({
  name: `pref.dpo.${a.pref_loss}${a.dpo_label_smoothing ? ".cdpo" : ""}${a.pref_ftx ? ".ftx" : ""}${
    metrics ? ".metrics" : ""
  }`,
  noFd: metrics,
  operands: {
    pc: avg ? lp(-3, -0.2) : lp(-20, -2),
    pr: avg ? lp(-3, -0.2) : lp(-20, -2),
    rc: { shape: [B], range: avg ? [-3, -0.2] : [-20, -2] },
    rr: { shape: [B], range: avg ? [-3, -0.2] : [-20, -2] },
    avg: lp(-3, -0.2),
    rows: fixed([1, 1, 1, 0]),
  },
  build: (t) => {
    const cfg = prefLossConfig(a);
    const o = dpoObjective(
      { chosen: t.pc, rejected: t.pr, refChosen: t.rc, refRejected: t.rr, chosenAvg: t.avg },
      t.rows,
      cfg,
    );
    return metrics ? o.metrics : o.loss;
  },
});
const ktoCase = (metrics: boolean): OpCase => ({
  name: `pref.kto${metrics ? ".metrics" : ""}`,
  noFd: metrics,
  operands: {
    lp: lp(-20, -2),
    avg: lp(-3, -0.2),
    kl: fixed([-5, -6, -7, -8]),
    ref: fixed([-6, -11, -9, -3]),
    refKl: fixed([-5.5, -6.5, -6, -9]),
    tags: fixed([1, 0, 1, 0]),
    rows: fixed([1, 1, 1, 0]),
  },
  build: (t) => {
    const cfg = ktoConfig({ pref_beta: 0.3, pref_ftx: 0.5, kto_chosen_weight: 1.2, kto_rejected_weight: 0.7 });
    const x = { logps: t.lp, avg: t.avg, tags: t.tags, klLogps: t.kl, refLogps: t.ref, refKlLogps: t.refKl };
    const o = ktoObjective(x, t.rows, cfg);
    return metrics ? o.metrics : o.loss;
  },
});
const FD_CASES: OpCase[] = [
  {
    name: "pref.logSigmoid",
    operands: { x: { shape: [16], range: [-40, 40], grad: true } },
    build: (t) => logSigmoid(t.x),
  },
  {
    name: "pref.log1mExp",
    operands: { x: { shape: [8], range: [-4, -0.1], grad: true } },
    build: (t) => log1mExp(t.x),
  },
  dpoCase({ pref_loss: "sigmoid", pref_beta: 0.5, dpo_label_smoothing: 0.2, pref_ftx: 0.3 }),
  dpoCase({ pref_loss: "hinge", pref_beta: 0.1 }),
  dpoCase({ pref_loss: "ipo", pref_beta: 0.2 }, true),
  dpoCase({ pref_loss: "orpo", pref_beta: 0.3, pref_ftx: 0.1 }, true),
  dpoCase({ pref_loss: "simpo", pref_beta: 2, simpo_gamma: 0.7 }, true),
  ktoCase(false),
  ktoCase(true),
  dpoCase({ pref_loss: "sigmoid", pref_beta: 0.5 }, false, true),
  dpoCase({ pref_loss: "orpo", pref_beta: 0.3 }, true, true),
  {
    name: "pref.rm",
    operands: { c: lp(-3, 3), r: lp(-3, 3), rows: fixed([1, 0, 1, 1]) },
    build: (t) => rmObjective(t.c, t.r, t.rows).loss,
  },
];

Deno.test("pref losses: finite differences on the reference", async (t) => {
  for (const c of FD_CASES) await t.step(c.name, () => checkFiniteDifferences(c));
});

for (const [exName, , make] of executors().slice(1)) {
  Deno.test(`pref losses: ${exName} matches the reference on random inputs`, async (t) => {
    const ex = await make();
    for (const c of FD_CASES) await t.step(c.name, () => checkAgainstReference(ex, c));
    ex.dispose();
  });
}
