/**
 * gpt_oss's routed experts with sparse dispatch (moe_gpt_oss.ts `gptOssExperts`) against the dense reference
 * (moe_dense.ts `denseGptOssExperts`) through the whole traced block (router with its bias, top-k, softmax over the k,
 * fused interleaved gate_up with biases, clamped SwiGLU, down with biases, an adapter's ΔW on gate_up): the output and
 * the gradients of x, the router weight and bias, both fused weights, both expert biases and the ΔW, on every
 * executor; an expert that no token picks gets exactly zero gradient; the traced block has no dense expert matmul
 * (a symbolic ONNX session across shapes: engine/train/moe_gpt_oss_train_test.ts).
 */
import assert from "node:assert/strict";
import { backward, Graph, mul, sum, type Tensor } from "../graph/mod.ts";
import { gptOssMoeConfig, traceGptOssMoe } from "./moe_gpt_oss.ts";
import { denseGptOssExperts } from "./moe_dense.ts";
import { executors } from "./executors_testing.ts";
import { relErr } from "../exec/testing/harness.ts";
import { mulberry32 } from "../util/rng.ts";

const B = 2, L = 5, H = 6, I = 3, E = 4, K = 2;
const m = gptOssMoeConfig({ num_local_experts: E, num_experts_per_tok: K, intermediate_size: I }, 1);
const blk = "model.layers.0.mlp";
const PARAMS: [string, number[], number][] = [ // name, shape, scale
  ["x", [B, L, H], 1],
  [`${blk}.router.weight`, [E, H], 1],
  [`${blk}.router.bias`, [E], 0.5],
  [`${blk}.experts.gate_up_proj`, [E, H, 2 * I], 6], // large enough that both clamps at ±7 bite
  [`${blk}.experts.gate_up_proj_bias`, [E, 2 * I], 1],
  [`${blk}.experts.down_proj`, [E, I, H], 1],
  [`${blk}.experts.down_proj_bias`, [E, H], 1],
  ["delta", [E, H, 2 * I], 0.3],
];
/** Expert 3's router bias keeps every token away from it. */
const SHUNNED = 3;

function build(sparse: boolean): { g: Graph; ops: string[] } {
  const g = new Graph();
  const p = new Map<string, Tensor>(PARAMS.map(([n, s]) => [n, g.param(n, s)]));
  const { out } = traceGptOssMoe(
    m,
    0,
    p.get("x")!,
    (n) => p.get(n)!,
    (_, proj) => (proj === "gate_up" ? p.get("delta") : undefined),
    sparse ? undefined : denseGptOssExperts,
  );
  const r = mulberry32(11);
  const seed = g.constant(Array.from({ length: B * L * H }, () => r() * 2 - 1), [B, L, H]);
  g.output("out", out);
  backward(sum(mul(out, seed)), [...p.values()]).forEach((d, i) => g.output(`d.${PARAMS[i][0]}`, d));
  return { g, ops: g.nodes.map((n) => n.op) };
}

function values(): [string, number[], number[]][] {
  const r = mulberry32(5);
  return PARAMS.map(([n, s, scale]) => {
    const v = Array.from({ length: s.reduce((a, b) => a * b, 1) }, () => (r() * 2 - 1) * scale);
    if (n.endsWith("router.bias")) v[SHUNNED] = -40;
    return [n, v, s];
  });
}

Deno.test("gpt_oss experts: sparse dispatch matches dense, forward and every gradient, on every executor", async () => {
  const params = values();
  const names = ["out", ...PARAMS.map(([n]) => `d.${n}`)];
  let want: Record<string, ArrayLike<number>> | undefined;
  for (const [name, make] of executors()) {
    const res: Record<string, ArrayLike<number>>[] = [];
    for (const sparse of [true, false]) {
      const ex = await make();
      for (const [n, d, s] of params) ex.setParam(n, d, s);
      res.push(await (await ex.compile(build(sparse).g)).run({}));
      ex.dispose();
    }
    want ??= res[1];
    for (const n of names) {
      const tol = name === "reference" ? 1e-12 : 1e-5, e = relErr(res[0][n], res[1][n]);
      assert.ok(e <= tol, `${name}: sparse vs dense ${n}: ${e}`);
      assert.ok(relErr(res[0][n], want[n]) <= 1e-5, `${name}: ${n} vs the reference executor`);
      assert.ok(Array.from(res[0][n]).some((v) => v !== 0), `${name}: ${n} is all zero`);
    }
    // The shunned expert has no rows: its weights, biases and ΔW get exactly zero gradient (and the others do not).
    for (const [p, per] of [["gate_up_proj", H * 2 * I], ["gate_up_proj_bias", 2 * I], ["down_proj", I * H]] as const) {
      for (const n of [`d.${blk}.experts.${p}`, ...(p === "gate_up_proj" ? ["d.delta"] : [])]) {
        const d = Array.from(res[0][n]);
        assert.ok(d.slice(SHUNNED * per, (SHUNNED + 1) * per).every((v) => v === 0), `${name}: ${n} of expert 3`);
        assert.ok(d.slice(0, SHUNNED * per).some((v) => v !== 0), `${name}: ${n} of experts 0-2`);
      }
    }
    const db = Array.from(res[0][`d.${blk}.experts.down_proj_bias`]);
    assert.ok(db.slice(SHUNNED * H).every((v) => v === 0), `${name}: down_proj_bias of expert 3`);
  }
});

Deno.test("gpt_oss experts: the traced block multiplies B·L·k rows by grouped matmuls, no dense expert matmul", () => {
  const { g, ops } = build(true);
  assert.equal(ops.filter((o) => o === "grouped_matmul").length, 2 + 2); // forward gate_up, down; their dx
  assert.equal(ops.filter((o) => o === "grouped_matmul_dw").length, 2);
  for (const n of g.nodes.filter((n) => n.op === "grouped_matmul" || n.op === "matmul")) {
    const shape = g.values[n.outputs[0]].shape;
    if (n.op === "grouped_matmul") assert.equal(shape[0], B * L * K);
    assert.ok(!shape.includes(E * 2 * I) && !shape.includes(E * I), `${n.op} → [${shape}]`);
  }
});
