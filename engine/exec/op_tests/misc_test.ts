/**
 * Tests of the embedding, rope and dropout families beyond the conformance cases: inv_freq against
 * known values, the rope reference against the plain HF formula, rope precision at 128k positions,
 * dropout statistics and identical WebGPU/reference masks, embedding_bwd partition counts.
 */
import assert from "node:assert/strict";
import { Graph } from "../../graph/mod.ts";
import { embedding } from "../../graph/ops/embedding.ts";
import { rope, ropeInvFreq, type RopeOptions, ropeScalingFromHf } from "../../graph/ops/rope.ts";
import { dropout } from "../../graph/ops/dropout.ts";
import { ReferenceExecutor } from "../reference.ts";
import { WebGpuExecutor } from "../webgpu.ts";
import { backward } from "../../graph/autodiff.ts";
import { rng } from "../testing/harness.ts";
import { hasGpu } from "../../gpu/device.ts";
import type { Executor } from "../executor.ts";

const gpu = await hasGpu();

function near(got: number, want: number, rel: number, what: string): void {
  assert.ok(Math.abs(got - want) <= rel * Math.abs(want), `${what}: got ${got}, want ${want}`);
}

Deno.test("rope: inv_freq matches known values (default, linear, llama3 as Llama 3.1)", () => {
  const d = ropeInvFreq(128, 10000);
  assert.equal(d.length, 64);
  near(d[0], 1, 1e-15, "default[0]");
  near(d[1], 0.8659643233600653, 1e-14, "default[1]");
  near(d[63], 0.00011547819846894582, 1e-14, "default[63]");
  const lin = ropeInvFreq(128, 10000, { type: "linear", factor: 4 });
  near(lin[1], 0.8659643233600653 / 4, 1e-14, "linear[1]");
  // Llama 3.1: head_dim 128, rope_theta 500000, factor 8, low 1, high 4, original 8192 (values from an
  // independent f64 implementation of transformers' _compute_llama3_parameters).
  const l3 = ropeInvFreq(
    128,
    500000,
    ropeScalingFromHf({
      rope_type: "llama3",
      factor: 8,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_max_position_embeddings: 8192,
    }),
  );
  const known: [number, number][] = [
    [0, 1],
    [1, 0.8146172338565447], // high frequency: unchanged
    [20, 0.016560440080994446],
    [30, 0.0013718935677611381], // medium band: smoothed
    [40, 3.428102195952591e-05], // low frequency: divided by 8
    [63, 3.068925988914511e-07],
  ];
  for (const [i, v] of known) near(l3[i], v, 1e-13, `llama3[${i}]`);
  assert.deepEqual(ropeScalingFromHf(null), { type: "default" });
  assert.throws(() => ropeScalingFromHf({ type: "ntk-by-parts", factor: 4 }), /not supported/);
});

/** rotate_half RoPE in f64 straight from the HF formula. */
function hfRope(x: number[], pos: number[], [B, L, H, D]: number[], o: RopeOptions): number[] {
  const rd = o.rotaryDim ?? D, half = rd / 2, sc = o.attentionScaling ?? 1;
  const inv = ropeInvFreq(rd, o.theta ?? 10000, o.scaling);
  const out = x.slice();
  for (let bl = 0; bl < B * L; bl++) {
    for (let h = 0; h < H; h++) {
      const b = (bl * H + h) * D;
      for (let i = 0; i < rd; i++) {
        const ang = pos[bl] * inv[i % half];
        const rot = i < half ? -x[b + i + half] : x[b + i - half];
        out[b + i] = x[b + i] * Math.cos(ang) * sc + rot * Math.sin(ang) * sc;
      }
    }
  }
  return out;
}

async function runRope(ex: Executor, x: number[], pos: number[], shape: number[], o: RopeOptions) {
  const g = new Graph();
  g.output("y", rope(g.input("x", shape), g.input("pos", shape.slice(0, 2), "i32"), o));
  return (await (await ex.compile(g)).run({ x, pos })).y;
}

Deno.test("rope: the reference equals the HF rotate_half formula in f64 (partial rotary, scaling)", async () => {
  const r = rng(7);
  const shape = [2, 3, 2, 12];
  const x = Array.from({ length: 144 }, () => r() * 2 - 1);
  const pos = [0, 5, 131071, 3, 77777, 2];
  for (
    const o of [
      {},
      { rotaryDim: 8, attentionScaling: 0.7, theta: 1e6, scaling: { type: "linear", factor: 2 } },
    ] as RopeOptions[]
  ) {
    const got = await runRope(new ReferenceExecutor(), x, pos, shape, o);
    const want = hfRope(x, pos, shape, o);
    for (let i = 0; i < want.length; i++) assert.ok(Math.abs(got[i] - want[i]) < 1e-9, `element ${i}`);
  }
});

Deno.test({
  name: "rope: webgpu stays within 1e-6 of the f64 reference at positions up to 128k",
  ignore: !gpu,
  fn: async () => {
    const r = rng(11);
    const shape = [1, 256, 1, 128];
    const x = Array.from({ length: 256 * 128 }, () => r() * 2 - 1);
    const pos = Array.from({ length: 256 }, (_, i) => (i < 128 ? i : 131072 - 256 + i));
    const o = { theta: 500000 };
    const want = await runRope(new ReferenceExecutor(), x, pos, shape, o);
    const got = await runRope(await WebGpuExecutor.create(), x, pos, shape, o);
    let err = 0;
    for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i] - want[i]));
    assert.ok(err < 1e-6, `max abs error ${err}`);
  },
});

async function runDropout(ex: Executor, x: number[], seed: number, p: number, offset: number) {
  const g = new Graph();
  g.output("y", dropout(g.input("x", [x.length]), g.input("seed", [], "u32"), { p, offset }));
  return Array.from((await (await ex.compile(g)).run({ x, seed: [seed] })).y);
}

Deno.test("dropout: keeps ~1−p on 100k elements, scales by 1/(1−p), sites and seeds differ", async () => {
  const n = 100_000, p = 0.3;
  const x = Array.from({ length: n }, (_, i) => 1 + (i % 7));
  const ex = new ReferenceExecutor();
  const y = await runDropout(ex, x, 42, p, 0);
  let kept = 0;
  y.forEach((v, i) => {
    if (v !== 0) {
      kept++;
      near(v, x[i] / (1 - p), 1e-15, `kept value ${i}`);
    }
  });
  assert.ok(Math.abs(kept / n - (1 - p)) < 0.005, `kept fraction ${kept / n}`);
  for (const [seed, offset] of [[42, 1], [43, 0]]) {
    const z = await runDropout(ex, x, seed, p, offset);
    const same = z.filter((v, i) => (v === 0) === (y[i] === 0)).length / n;
    // independent masks agree on p² + (1−p)² = 0.58 of the elements
    assert.ok(Math.abs(same - 0.58) < 0.01, `seed ${seed} offset ${offset}: masks agree on ${same}`);
  }
  const g = new Graph();
  const t = g.input("x", [3]);
  assert.equal(dropout(t, g.input("s", [], "u32"), { p: 0 }), t);
  assert.throws(() => dropout(t, g.input("s2", [], "u32"), { p: 1 }), /\[0, 1\)/);
});

Deno.test({
  name: "dropout: webgpu and reference masks are identical on 100k elements",
  ignore: !gpu,
  fn: async () => {
    const n = 100_000;
    const x = Array.from({ length: n }, (_, i) => (i % 13) - 6.5);
    for (const [seed, p, offset] of [[0xdeadbeef, 0.3, 0], [7, 0.9, 12345]]) {
      const want = await runDropout(new ReferenceExecutor(), x, seed, p, offset);
      const got = await runDropout(await WebGpuExecutor.create(), x, seed, p, offset);
      for (let i = 0; i < n; i++) {
        assert.equal(got[i] === 0, want[i] === 0, `mask differs at ${i}`);
        assert.ok(Math.abs(got[i] - want[i]) <= 1e-6 * Math.abs(want[i]), `value differs at ${i}`);
      }
    }
  },
});

Deno.test("embedding: out-of-range ids give zero rows and no gradient", async () => {
  const g = new Graph();
  const w = g.param("w", [3, 2]);
  const y = embedding(w, g.input("ids", [4], "i32"));
  g.output("y", y);
  const [dw] = backward(y, [w]);
  g.output("dw", dw);
  const ex = new ReferenceExecutor();
  ex.setParam("w", [1, 2, 3, 4, 5, 6], [3, 2]);
  const out = await (await ex.compile(g)).run({ ids: [-1, 2, 3, 2] });
  assert.deepEqual(Array.from(out.y), [0, 0, 5, 6, 0, 0, 5, 6]);
  assert.deepEqual(Array.from(out.dw), [0, 0, 0, 0, 2, 2]);
});

Deno.test({
  name: "embedding_bwd: every partition count gives the reference's sums",
  ignore: !gpu,
  fn: async () => {
    const r = rng(3);
    const [T, V, D] = [700, 9, 40];
    const ids = Array.from({ length: T }, () => Math.floor(r() * (V + 2)) - 1);
    const dy = Array.from({ length: T * D }, () => r() * 2 - 1);
    const g = new Graph();
    g.output("dw", g.apply("embedding_bwd", [g.input("ids", [T], "i32"), g.input("dy", [T, D])], { vocab: V })[0]);
    const want = (await (await new ReferenceExecutor().compile(g)).run({ ids, dy })).dw;
    const ex = await WebGpuExecutor.create();
    for (const parts of [1, 2, 5, 9, 64]) {
      ex.ctx.tuned.set("embedding_bwd.partitions", parts);
      const got = (await (await ex.compile(g)).run({ ids, dy })).dw;
      for (let i = 0; i < want.length; i++) {
        assert.ok(Math.abs(got[i] - want[i]) < 1e-4, `partitions ${parts}: dw[${i}] ${got[i]} vs ${want[i]}`);
      }
    }
    ex.ctx.tuned.delete("embedding_bwd.partitions");
  },
});
