/**
 * Attention checked against an independent oracle: the same attention written with basic ops
 * (permute, matmul, max/exp/sum softmax, where for the mask), values and q/k/v gradients, on the
 * reference executor and (when an adapter exists) on WebGPU; and the WebGPU kernels under block
 * sizes other than the defaults.
 */
import assert from "node:assert/strict";
import {
  add,
  attention,
  backward,
  div,
  eq,
  exp,
  expand,
  Graph,
  log,
  matmul,
  max,
  mul,
  permute,
  reshape,
  sub,
  sum,
  type Tensor,
  where,
} from "../../graph/mod.ts";
import { cases, packedAndPadded } from "../../graph/ops/attention_cases.ts";
import { ReferenceExecutor } from "../reference.ts";
import { WebGpuExecutor } from "../webgpu.ts";
import { checkAgainstReference, relErr, rng } from "../testing/harness.ts";
import type { Executor } from "../executor.ts";
import { hasGpu } from "../../gpu/device.ts";

const gpu = await hasGpu();

/** Attention from basic ops: [B, L, H, D] in, o [B, L, Hq, D] and lse [B, Hq, L] out. */
function composed(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  seg: Tensor,
  o: { window: number; softcap: number; causal: boolean },
): [Tensor, Tensor] {
  const [B, L, Hq, D] = q.shape, Hkv = k.shape[2];
  const heads = (x: Tensor) => {
    const e = expand(reshape(x, [B, L, Hkv, 1, D]), [B, L, Hkv, Hq / Hkv, D]);
    return permute(reshape(e, [B, L, Hq, D]), [0, 2, 1, 3]); // [B, Hq, L, D]
  };
  let s = mul(matmul(permute(q, [0, 2, 1, 3]), heads(k), { transB: true }), 1 / Math.sqrt(D)); // [B, Hq, L, L]
  if (o.softcap) {
    // c · tanh(s / c) with tanh(x) = 1 − 2 / (e^{2x} + 1)
    s = mul(sub(1, div(2, add(exp(mul(s, 2 / o.softcap)), 1))), o.softcap);
  }
  const pos = Array.from({ length: L * L }, (_, n) => {
    const i = Math.floor(n / L), j = n % L;
    return (!o.causal || j <= i) && (!o.window || i - j < o.window) ? 1 : 0;
  });
  const same = eq(reshape(seg, [B, 1, L, 1]), reshape(seg, [B, 1, 1, L])); // [B, 1, L, L]
  const mask = mul(same, q.graph.constant(pos, [L, L], "i32"));
  s = where(mask, s, -1e9);
  const m = max(s, -1, true);
  const e = exp(sub(s, m));
  const z = sum(e, -1, true);
  const out = permute(matmul(div(e, z), heads(v)), [0, 2, 1, 3]);
  return [out, reshape(add(m, log(z)), [B, Hq, L])];
}

async function compare(ex: Executor, opts: { window: number; softcap: number; causal: boolean }, tol: number) {
  const [B, L, Hq, Hkv, D] = [2, 19, 4, 2, 8];
  const g = new Graph();
  const q = g.param("q", [B, L, Hq, D]), k = g.param("k", [B, L, Hkv, D]), v = g.param("v", [B, L, Hkv, D]);
  const seg = g.input("seg", [B, L], "i32");
  const fused = attention(q, k, v, { ...opts, segments: seg });
  const [o2, lse2] = composed(q, k, v, seg, opts);
  const r = rng(7);
  const w = g.constant(Array.from({ length: B * L * Hq * D }, () => r() * 2 - 1), [B, L, Hq, D]);
  const wl = g.constant(Array.from({ length: B * Hq * L }, () => r() * 2 - 1), [B, Hq, L]);
  const loss = (o: Tensor, lse: Tensor) => add(sum(mul(o, w)), sum(mul(lse, wl)));
  const g1 = backward(loss(fused.o, fused.lse), [q, k, v]);
  const g2 = backward(loss(o2, lse2), [q, k, v]);
  const names = ["o", "lse", "dq", "dk", "dv"];
  [fused.o, fused.lse, ...g1].forEach((t, n) => g.output(`a_${names[n]}`, t));
  [o2, lse2, ...g2].forEach((t, n) => g.output(`b_${names[n]}`, t));
  for (const [name, shape] of [["q", q.shape], ["k", k.shape], ["v", v.shape]] as const) {
    ex.setParam(name, Array.from({ length: shape.reduce((x, y) => x * y) }, () => r() * 4 - 2), shape);
  }
  const res = await (await ex.compile(g)).run({ seg: packedAndPadded(L) });
  for (const n of names) {
    const e = relErr(res[`a_${n}`], res[`b_${n}`], n);
    assert.ok(e <= tol, `${ex.name} ${JSON.stringify(opts)}: fused ${n} differs from the composition by ${e}`);
  }
}

const variants = [
  { window: 0, softcap: 0, causal: true },
  { window: 6, softcap: 2.5, causal: true },
  { window: 0, softcap: 0, causal: false },
];

Deno.test("attention matches a composition of basic ops (reference executor)", async () => {
  for (const o of variants) await compare(new ReferenceExecutor(), o, 1e-10);
});

Deno.test({
  name: "attention matches a composition of basic ops (webgpu)",
  ignore: !gpu,
  fn: async () => {
    const ex = await WebGpuExecutor.create();
    for (const o of variants) await compare(ex, o, 1e-4);
    ex.dispose();
  },
});

Deno.test({
  name: "attention kernels under other block sizes match the reference",
  ignore: !gpu,
  fn: async (t) => {
    const ex = await WebGpuExecutor.create();
    const pick = cases.filter((c) => /multi-block|D=5/.test(c.name));
    const tunes = [
      { bq: 16, tm: 1, bk: 3, bkv: 8, tn: 2, bqt: 5, shared: true },
      { bq: 8, tm: 2, bk: 6, bkv: 4, tn: 2, bqt: 3, shared: false },
    ];
    for (const tune of tunes) {
      ex.ctx.tuned.set("attention", tune);
      for (const c of pick) await t.step(`${JSON.stringify(tune)} ${c.name}`, () => checkAgainstReference(ex, c));
    }
    ex.ctx.tuned.delete("attention");
    ex.dispose();
  },
});
