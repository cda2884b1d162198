/**
 * The op conformance harness: one list of cases, run against every executor (values and
 * gradients compared with the f64 reference) and checked by finite differences on the reference.
 *
 * A case declares its operands and a function that builds outputs from them. Float operands marked
 * `grad` become params, so the harness can differentiate `Σ out·R` (R fixed random weights) w.r.t.
 * them; the others are fed as inputs.
 * @module
 */
import { backward, type DType, Graph, mul, sum, type Tensor } from "../../graph/mod.ts";
import { add } from "../../graph/ops/elementwise.ts";
import { ReferenceExecutor } from "../reference.ts";
import { mulberry32 } from "../../util/rng.ts";
import type { Executor, HostArray } from "../executor.ts";
import type { OpCase } from "../../graph/ops/testing.ts";

export type { OpCase, Operand } from "../../graph/ops/testing.ts";

/** Deterministic PRNG (mulberry32), shared with the engine. */
export const rng = mulberry32;

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** The data of every operand of a case (deterministic per case name). */
export function caseData(c: OpCase): Record<string, number[]> {
  const r = rng(hash(c.name));
  const out: Record<string, number[]> = {};
  for (const [name, o] of Object.entries(c.operands)) {
    const n = o.shape.reduce((a, b) => a * b, 1);
    if (o.data) {
      if (o.data.length !== n) {
        throw new Error(`case ${c.name}: operand ${name} has ${o.data.length} values, needs ${n}`);
      }
      out[name] = o.data;
      continue;
    }
    const [lo, hi] = o.range ?? [-1, 1];
    const int = o.dtype === "i32" || o.dtype === "u32";
    out[name] = Array.from({ length: n }, () => (int ? Math.floor(lo + r() * (hi - lo)) : lo + r() * (hi - lo)));
  }
  return out;
}

/** A traced case: graph with outputs out0.., grads grad_<name>, and the loss used for them. */
export interface Traced {
  graph: Graph;
  outputs: string[];
  grads: string[];
  feeds: Record<string, number[]>;
  params: Record<string, { data: number[]; shape: number[]; dtype: DType }>;
}

/** Traces a case, adding `loss = Σ out_k · R_k` and its gradients w.r.t. the grad operands. */
export function traceCase(c: OpCase, withGrads = true): Traced {
  const g = new Graph();
  const data = caseData(c);
  const t: Record<string, Tensor> = {};
  const feeds: Traced["feeds"] = {};
  const params: Traced["params"] = {};
  for (const [name, o] of Object.entries(c.operands)) {
    const dtype = o.dtype ?? "f32";
    if (o.grad) {
      t[name] = g.param(name, o.shape, dtype);
      params[name] = { data: data[name], shape: o.shape, dtype };
    } else {
      t[name] = g.input(name, o.shape, dtype);
      feeds[name] = data[name];
    }
  }
  const built = c.build(t);
  const outs = Array.isArray(built) ? built : [built];
  const outputs = outs.map((o, k) => (g.output(`out${k}`, o), `out${k}`));
  const grads: string[] = [];
  const wrt = Object.entries(c.operands).filter(([, o]) => o.grad).map(([n]) => n);
  if (withGrads && wrt.length) {
    const r = rng(hash(c.name) ^ 0x5bd1e995);
    let loss: Tensor | undefined;
    for (const o of outs) {
      if (o.dtype !== "f32") continue;
      const n = o.shape.reduce((a, b) => a * b, 1);
      const w = g.constant(Array.from({ length: n }, () => r() * 2 - 1), o.shape);
      const s = sum(mul(o, w));
      loss = loss ? add(loss, s) : s;
    }
    if (loss) {
      g.output("loss", loss);
      const gs = backward(loss, wrt.map((n) => t[n]));
      gs.forEach((gt, k) => {
        g.output(`grad_${wrt[k]}`, gt);
        grads.push(`grad_${wrt[k]}`);
      });
    }
  }
  return { graph: g, outputs, grads, feeds, params };
}

/** Runs a traced case on an executor; returns every output and gradient. */
export async function runTraced(ex: Executor, tr: Traced): Promise<Record<string, HostArray>> {
  for (const [name, p] of Object.entries(tr.params)) ex.setParam(name, p.data, p.shape, p.dtype);
  const compiled = await ex.compile(tr.graph);
  return await compiled.run(tr.feeds, [...tr.outputs, ...tr.grads]);
}

/** Max abs difference of a and b divided by max(1, max|b|); throws naming `what` on length mismatch. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>, what = "values"): number {
  if (a.length !== b.length) throw new Error(`${what}: length ${a.length} vs ${b.length}`);
  let m = 1, d = 0;
  for (let i = 0; i < b.length; i++) {
    m = Math.max(m, Math.abs(b[i]));
    const e = Math.abs(a[i] - b[i]);
    if (!(e <= d)) d = Number.isNaN(e) ? Infinity : e;
  }
  return d / m;
}

/** Compares an executor against the reference on one case; throws with the worst output named. */
export async function checkAgainstReference(ex: Executor, c: OpCase): Promise<void> {
  const tr = traceCase(c);
  const want = await runTraced(new ReferenceExecutor(), tr);
  const got = await runTraced(ex, tr);
  const tol = c.tol ?? 1e-4;
  for (const k of Object.keys(want)) {
    const e = relErr(got[k], want[k], `${c.name}/${k}`);
    if (!(e <= tol)) {
      throw new Error(
        `${c.name}: ${ex.name} output ${k} differs from the reference by ${e.toExponential(2)} (tolerance ${tol}); ` +
          `got ${Array.from(got[k].slice(0, 6))}, want ${Array.from(want[k].slice(0, 6))}`,
      );
    }
  }
}

/**
 * Finite differences on the reference executor: for up to `samples` entries of each grad operand,
 * (L(x+ε) − L(x−ε)) / 2ε must match the analytic gradient.
 */
export async function checkFiniteDifferences(c: OpCase, samples = 6): Promise<void> {
  if (c.noFd) return;
  const tr = traceCase(c);
  if (!tr.grads.length) return;
  const ex = new ReferenceExecutor();
  const compiled = await (async () => {
    for (const [name, p] of Object.entries(tr.params)) ex.setParam(name, p.data, p.shape, p.dtype);
    return await ex.compile(tr.graph);
  })();
  const base = await compiled.run(tr.feeds, ["loss", ...tr.grads]);
  const eps = c.fdEps ?? 1e-5;
  const tol = c.fdTol ?? 1e-5;
  const r = rng(hash(c.name) ^ 0x1234);
  for (const gname of tr.grads) {
    const pname = gname.slice(5);
    const p = tr.params[pname];
    const an = base[gname];
    const scale = Math.max(1, ...Array.from(an, Math.abs));
    const picks = new Set<number>();
    for (let s = 0; s < Math.min(samples, p.data.length); s++) picks.add(Math.floor(r() * p.data.length));
    for (const i of picks) {
      const at = (d: number) => {
        const v = p.data.slice();
        v[i] += d;
        ex.setParam(pname, v, p.shape, p.dtype);
        return compiled.run(tr.feeds, ["loss"]).then((o) => o.loss[0]);
      };
      const num = ((await at(eps)) - (await at(-eps))) / (2 * eps);
      ex.setParam(pname, p.data, p.shape, p.dtype);
      const err = Math.abs(num - an[i]) / scale;
      if (!(err <= tol)) {
        throw new Error(
          `${c.name}: d loss/d ${pname}[${i}] is ${an[i]} by the gradient rule but ${num} by finite differences ` +
            `(error ${err.toExponential(2)} > ${tol})`,
        );
      }
    }
  }
}
