/**
 * A tiny Llama-style decoder over bytes, written on the tracing API: the model the demo trains.
 * Weights use Hugging Face's layout (`nn.Linear` stores [out, in]; projections use transB).
 * @module
 */
import {
  adamw,
  attention,
  backward,
  clipScale,
  crossEntropy,
  embedding,
  Graph,
  matmul,
  reshape,
  rmsNorm,
  rope,
  swiglu,
  type Tensor,
} from "../graph/mod.ts";
import { add } from "../graph/ops/elementwise.ts";
import { mulberry32 as rng } from "../util/rng.ts";

/** Shape of the tiny model and its training batch. */
export interface TinyConfig {
  vocab: number;
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  intermediate: number;
  batch: number;
  seq: number;
  ropeTheta: number;
  eps: number;
}

/** The demo's default: a ~0.2M-parameter byte-level model. */
export const TINY: TinyConfig = {
  vocab: 256,
  hidden: 64,
  layers: 2,
  heads: 4,
  kvHeads: 2,
  intermediate: 176,
  batch: 8,
  seq: 64,
  ropeTheta: 10000,
  eps: 1e-5,
};

/** Parameter names and shapes, in Hugging Face naming. */
export function tinyParams(c: TinyConfig): Map<string, number[]> {
  const hd = c.hidden / c.heads;
  const p = new Map<string, number[]>();
  p.set("model.embed_tokens.weight", [c.vocab, c.hidden]);
  for (let i = 0; i < c.layers; i++) {
    const l = `model.layers.${i}`;
    p.set(`${l}.input_layernorm.weight`, [c.hidden]);
    p.set(`${l}.self_attn.q_proj.weight`, [c.heads * hd, c.hidden]);
    p.set(`${l}.self_attn.k_proj.weight`, [c.kvHeads * hd, c.hidden]);
    p.set(`${l}.self_attn.v_proj.weight`, [c.kvHeads * hd, c.hidden]);
    p.set(`${l}.self_attn.o_proj.weight`, [c.hidden, c.heads * hd]);
    p.set(`${l}.post_attention_layernorm.weight`, [c.hidden]);
    p.set(`${l}.mlp.gate_proj.weight`, [c.intermediate, c.hidden]);
    p.set(`${l}.mlp.up_proj.weight`, [c.intermediate, c.hidden]);
    p.set(`${l}.mlp.down_proj.weight`, [c.hidden, c.intermediate]);
  }
  p.set("model.norm.weight", [c.hidden]);
  p.set("lm_head.weight", [c.vocab, c.hidden]);
  return p;
}

/** Seeded initial weights: N(0, 0.02) for matrices (Box–Muller), ones for norms. */
export function tinyInit(c: TinyConfig, seed = 0): Map<string, { data: Float32Array; shape: number[] }> {
  const r = rng(seed);
  const out = new Map<string, { data: Float32Array; shape: number[] }>();
  for (const [name, shape] of tinyParams(c)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (name.endsWith("norm.weight")) data.fill(1);
    else {
      for (let i = 0; i < n; i++) data[i] = 0.02 * Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
    }
    out.set(name, { data, shape });
  }
  return out;
}

/** Traces the forward pass: ids [B, L] i32, positions [B, L] i32 → logits [B·L, V]. */
export function tinyForward(g: Graph, c: TinyConfig, ids: Tensor, positions: Tensor): Tensor {
  const { batch: B, seq: L, heads: H, kvHeads: KV, hidden: D } = c;
  const hd = D / H;
  const P = (name: string) => g.param(name, tinyParams(c).get(name)!);
  const lin = (x: Tensor, name: string) => matmul(x, P(name), { transB: true });
  let h = embedding(P("model.embed_tokens.weight"), ids); // [B, L, D]
  for (let i = 0; i < c.layers; i++) {
    const l = `model.layers.${i}`;
    const a = rmsNorm(h, P(`${l}.input_layernorm.weight`), { eps: c.eps });
    const q = rope(reshape(lin(a, `${l}.self_attn.q_proj.weight`), [B, L, H, hd]), positions, { theta: c.ropeTheta });
    const k = rope(reshape(lin(a, `${l}.self_attn.k_proj.weight`), [B, L, KV, hd]), positions, { theta: c.ropeTheta });
    const v = reshape(lin(a, `${l}.self_attn.v_proj.weight`), [B, L, KV, hd]);
    const { o } = attention(q, k, v, { causal: true });
    h = add(h, lin(reshape(o, [B, L, H * hd]), `${l}.self_attn.o_proj.weight`));
    const m = rmsNorm(h, P(`${l}.post_attention_layernorm.weight`), { eps: c.eps });
    const act = swiglu(lin(m, `${l}.mlp.gate_proj.weight`), lin(m, `${l}.mlp.up_proj.weight`));
    h = add(h, lin(act, `${l}.mlp.down_proj.weight`));
  }
  h = rmsNorm(h, P("model.norm.weight"), { eps: c.eps });
  return reshape(lin(h, "lm_head.weight"), [B * L, c.vocab]);
}

/** AdamW hyper-parameters of the demo step. */
export interface StepOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  maxGradNorm: number;
}

/**
 * Traces one whole training step: forward, loss, backward, global-norm clipping and AdamW updates of
 * every parameter (optimizer states `<name>.exp_avg` / `.exp_avg_sq` in the store).
 * Inputs: ids, positions, labels [B, L] i32 (labels already shifted, -100 ignored), lr and step f32.
 * Outputs: loss, grad_norm.
 */
export function tinyTrainStep(c: TinyConfig, o: StepOptions): Graph {
  const g = new Graph();
  const ids = g.input("ids", [c.batch, c.seq], "i32");
  const positions = g.input("positions", [c.batch, c.seq], "i32");
  const labels = g.input("labels", [c.batch * c.seq], "i32");
  const lr = g.input("lr", []);
  const step = g.input("step", []);
  const logits = tinyForward(g, c, ids, positions);
  const loss = crossEntropy(logits, labels, { reduction: "mean" });
  g.output("loss", loss);
  const names = [...tinyParams(c).keys()];
  const params = names.map((n) => g.param(n, tinyParams(c).get(n)!));
  const grads = backward(loss, params);
  const { scale, norm } = clipScale(grads, o.maxGradNorm);
  g.output("grad_norm", norm);
  params.forEach((p, i) => {
    const m = g.param(`${names[i]}.exp_avg`, p.shape);
    const v = g.param(`${names[i]}.exp_avg_sq`, p.shape);
    adamw(
      p,
      grads[i],
      m,
      v,
      lr,
      step,
      { beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay },
      scale,
    );
  });
  return g;
}
