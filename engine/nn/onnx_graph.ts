/**
 * The decoder of every supported family written as one ONNX graph with dynamic batch and sequence axes, in the
 * layout Optimum exports for `text-generation-with-past` (what transformers.js and onnxruntime-genai-style
 * runners load as `onnx/model.onnx`):
 *
 * - inputs: `input_ids` [batch_size, sequence_length] i64, `attention_mask` [batch_size, total_sequence_length]
 *   i64 (1 on real tokens of the past and the new tokens, 0 on padding), `position_ids` [batch_size,
 *   sequence_length] i64, and per layer N `past_key_values.N.key|value` [batch_size, num_kv_heads,
 *   past_sequence_length, head_dim] f32 (past_sequence_length 0 on the first run);
 * - outputs: `logits` [batch_size, sequence_length, vocab] f32 and `present.N.key|value` [batch_size, num_kv_heads,
 *   total_sequence_length, head_dim] f32 (the past with the new keys/values appended; keys after rope).
 *
 * Attention of new token i (cache index past + i) to cache index j: j ≤ past + i, attention_mask[b, j] = 1, and
 * within the layer's sliding window (past + i − j < W), as transformers masks it; a row that sees nothing
 * (a left-padding query) gets uniform weights, never NaN. Rope is computed in f32 from `position_ids` as
 * transformers does (cos/sin of position · inv_freq; per layer, see onnx_rope.ts). Each family's blocks mirror
 * engine/nn/decoder.ts (norm placement, LayerNorm, parallel block, ungated MLP, Granite's multipliers, routed experts: onnx_moe.ts;
 * gpt_oss's sinks and experts: onnx_moe_gpt_oss.ts). The weights are the caller's (merged) f32 values; linear
 * weights are stored transposed ([in, out]) so each projection is one MatMul.
 * @module
 */
import { OnnxBuilder } from "../exec/onnx/builder.ts";
import { type ModelDef, ONNX_TYPE, type TensorDef } from "../exec/onnx/proto.ts";
import type { DecoderConfig } from "./config.ts";
import { type OnnxLinear, onnxMoe } from "./onnx_moe.ts";
import { onnxGptOssMoe, onnxSinkSoftmax } from "./onnx_moe_gpt_oss.ts";
import { onnxRope } from "./onnx_rope.ts";
import { assertOnnxSupported } from "./onnx_support.ts";

const { FLOAT, INT64, BOOL } = ONNX_TYPE;
/** The most negative f32: masked scores (finite, so a fully masked row stays finite). */
const MASKED = -3.4028234663852886e38;

/** One weight as the graph wants it: its initializer name, dims and f32 values. */
export interface OnnxWeight {
  name: string;
  dims: number[];
  data: Float32Array;
}

/** The graph and its weights (initializers to place inline or in external data). */
export interface DecoderOnnx {
  model: ModelDef;
  weights: OnnxWeight[];
}

/** Transposes a row-major [rows, cols] matrix. */
function transpose2d(a: Float32Array, rows: number, cols: number): Float32Array {
  const t = new Float32Array(a.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = a[r * cols + c];
  return t;
}

/**
 * Builds the graph of `c` over `weights` (Hugging Face names → f32 values, adapters already merged). Throws, naming
 * the feature, for a config using anything the graph does not compute exactly (see onnx_support.ts).
 */
export function buildDecoderOnnx(c: DecoderConfig, weights: Map<string, Float32Array>): DecoderOnnx {
  assertOnnxSupported(c);
  const b = new OnnxBuilder();
  const out: OnnxWeight[] = [];
  const W = (name: string): Float32Array => {
    const w = weights.get(name);
    if (!w) throw new Error(`buildDecoderOnnx: weight "${name}" is missing`);
    return w;
  };
  const init = (name: string, dims: number[], data: Float32Array): string => {
    out.push({ name, dims, data });
    return name;
  };
  const has = (name: string) => weights.has(name);
  const D = c.headDim, Hq = c.heads, Hkv = c.kvHeads, G = Hq / Hkv, H = c.hidden;

  // Inputs.
  const ids = b.input("input_ids", INT64, ["batch_size", "sequence_length"]);
  const mask = b.input("attention_mask", INT64, ["batch_size", "total_sequence_length"]);
  const pos = b.input("position_ids", INT64, ["batch_size", "sequence_length"]);
  const past: string[][] = [];
  for (let i = 0; i < c.layers; i++) {
    past.push(
      ["key", "value"].map((k) =>
        b.input(`past_key_values.${i}.${k}`, FLOAT, ["batch_size", Hkv, "past_sequence_length", D])
      ),
    );
  }

  // Shapes: S new tokens, T = past + S cache entries.
  const scalar = (x: string) => b.op1("Squeeze", [x, b.i64([0])]);
  const S = scalar(b.op1("Shape", [ids], { start: { i: 1 }, end: { i: 2 } }));
  const T = scalar(b.op1("Shape", [mask], { start: { i: 1 }, end: { i: 2 } }));
  const P = b.sub(T, S);
  const qIdx = b.add(b.op1("Range", [b.i64s(0), S, b.i64s(1)]), P); // [S]: cache index of each new token
  const kIdx = b.op1("Range", [b.i64s(0), T, b.i64s(1)]); // [T]
  const qCol = b.op1("Unsqueeze", [qIdx, b.i64([1])]), kRow = b.op1("Unsqueeze", [kIdx, b.i64([0])]);
  const causal = b.op1("LessOrEqual", [kRow, qCol]); // [S, T]
  // Padding [B, 1, 1, 1, T] (scores are [B, Hkv, G, S, T]).
  const pad = b.op1("Unsqueeze", [b.cast(mask, BOOL), b.i64([1, 2, 3])]);
  const masks = new Map<number, string>();
  const maskFor = (win: number): string => {
    let m = masks.get(win);
    if (m) return m;
    let allowed = causal;
    if (win) allowed = b.op1("And", [allowed, b.op1("Less", [b.sub(qCol, kRow), b.i64s(win)])]);
    m = b.op1("And", [allowed, pad]);
    masks.set(win, m);
    return m;
  };

  const rope = onnxRope(b, c, pos);
  const slice = (x: string, axis: number, from: number, to: number) =>
    b.op1("Slice", [x, b.i64([from]), b.i64([to]), b.i64([axis])]);
  const param = (name: string, offset = 0): string => {
    const w = W(name);
    return init(name, [w.length], offset ? w.map((v) => v + offset) : w);
  };
  const rms = (x: string, name: string, offset = 0): string => {
    const ms = b.reduce("Mean", b.mul(x, x), [-1], true);
    return b.mul(b.div(x, b.op1("Sqrt", [b.add(ms, b.f32(c.eps))])), param(name, offset));
  };
  // The block norms: LayerNorm (with bias where the family has one) or RMSNorm (with Gemma's offset).
  const norm = (x: string, name: string): string => {
    if (!c.layerNorm) return rms(x, name, c.normOffset);
    const d = b.sub(x, b.reduce("Mean", x, [-1], true));
    const v = b.reduce("Mean", b.mul(d, d), [-1], true);
    const y = b.mul(b.div(d, b.op1("Sqrt", [b.add(v, b.f32(c.eps))])), param(name));
    return c.normBias ? b.add(y, param(name.replace(/weight$/, "bias"))) : y;
  };
  const shapes = new Map<string, [number, number]>();
  const setShape = (mod: string, outF: number, inF: number) => shapes.set(mod, [outF, inF]);
  const linearOf = (x: string, mod: string): string => {
    const [o, i] = shapes.get(mod)!;
    const wt = init(`${mod}.weight`, [i, o], transpose2d(W(`${mod}.weight`), o, i));
    let y = b.op1("MatMul", [x, wt]);
    if (has(`${mod}.bias`)) y = b.add(y, init(`${mod}.bias`, [o], W(`${mod}.bias`)));
    return y;
  };
  const lin: OnnxLinear = (x, mod, o, inp) => {
    setShape(mod, o, inp);
    return linearOf(x, mod);
  };
  const qn = Hq * D, kvn = Hkv * D;
  const act = (gate: string): string => {
    let a: string;
    if (c.act === "silu") a = b.mul(gate, b.op1("Sigmoid", [gate]));
    else if (c.act === "gelu") {
      a = b.mul(b.mul(gate, b.f32(0.5)), b.add(b.f32(1), b.op1("Erf", [b.mul(gate, b.f32(Math.SQRT1_2))])));
    } else {
      const inner = b.mul(
        b.f32(Math.sqrt(2 / Math.PI)),
        b.add(gate, b.mul(b.f32(0.044715), b.mul(gate, b.mul(gate, gate)))),
      );
      a = b.mul(b.mul(gate, b.f32(0.5)), b.add(b.f32(1), b.op1("Tanh", [inner])));
    }
    return a;
  };
  const scaled = (x: string) => (c.residualScale === 1 ? x : b.mul(x, b.f32(c.residualScale)));
  const softcap = (x: string, cap: number) => b.mul(b.op1("Tanh", [b.mul(x, b.f32(1 / cap))]), b.f32(cap));

  const embed = W("model.embed_tokens.weight");
  const embedName = init("model.embed_tokens.weight", [c.vocab, H], embed);
  let h = b.op1("Gather", [embedName, ids], { axis: { i: 0 } }); // [B, S, H]
  if (c.embedScale !== 1) h = b.mul(h, b.f32(c.embedScale));

  for (let i = 0; i < c.layers; i++) {
    const l = `model.layers.${i}`;
    const a = c.postNorm ? h : norm(h, `${l}.input_layernorm.weight`);
    let q: string, k: string, v: string;
    if (c.fused) {
      setShape(`${l}.self_attn.qkv_proj`, qn + 2 * kvn, H);
      const qkv = linearOf(a, `${l}.self_attn.qkv_proj`);
      [q, k, v] = [slice(qkv, 2, 0, qn), slice(qkv, 2, qn, qn + kvn), slice(qkv, 2, qn + kvn, qn + 2 * kvn)];
    } else {
      setShape(`${l}.self_attn.q_proj`, qn, H);
      setShape(`${l}.self_attn.k_proj`, kvn, H);
      setShape(`${l}.self_attn.v_proj`, kvn, H);
      [q, k, v] = ["q", "k", "v"].map((x) => linearOf(a, `${l}.self_attn.${x}_proj`));
    }
    if (c.qkNormAll) {
      q = rms(q, `${l}.self_attn.q_norm.weight`);
      k = rms(k, `${l}.self_attn.k_norm.weight`);
    }
    q = b.reshape(q, [0, 0, Hq, D]);
    k = b.reshape(k, [0, 0, Hkv, D]);
    v = b.reshape(v, [0, 0, Hkv, D]);
    if (c.qkNorm) {
      q = rms(q, `${l}.self_attn.q_norm.weight`, c.normOffset);
      k = rms(k, `${l}.self_attn.k_norm.weight`, c.normOffset);
    }
    q = rope(q, i);
    k = rope(k, i);
    // Cache: [B, Hkv, T, D] = past ++ new.
    const kAll = b.op1("Concat", [past[i][0], b.transpose(k, [0, 2, 1, 3])], { axis: { i: 2 } });
    const vAll = b.op1("Concat", [past[i][1], b.transpose(v, [0, 2, 1, 3])], { axis: { i: 2 } });
    b.output(kAll, `present.${i}.key`, FLOAT, ["batch_size", Hkv, "total_sequence_length", D]);
    b.output(vAll, `present.${i}.value`, FLOAT, ["batch_size", Hkv, "total_sequence_length", D]);
    // Scores [B, Hkv, G, S, T]: query head h = kv head h / G.
    const q5 = b.reshape(b.transpose(q, [0, 2, 1, 3]), [0, Hkv, G, -1, D]);
    const k5 = b.op1("Unsqueeze", [b.transpose(kAll, [0, 1, 3, 2]), b.i64([2])]);
    let s = b.mul(b.op1("MatMul", [q5, k5]), b.f32(c.attnScale));
    if (c.attnSoftcap) s = softcap(s, c.attnSoftcap);
    s = b.op1("Where", [maskFor(c.layerWindow[i] || 0), s, b.f32(MASKED)]);
    const p = c.attnSinks ? onnxSinkSoftmax(b, s, i, Hkv, G, W, init) : b.op1("Softmax", [s], { axis: { i: -1 } });
    const o5 = b.op1("MatMul", [p, b.op1("Unsqueeze", [vAll, b.i64([2])])]); // [B, Hkv, G, S, D]
    const o = b.reshape(b.transpose(b.reshape(o5, [0, Hq, -1, D]), [0, 2, 1, 3]), [0, 0, qn]);
    setShape(`${l}.self_attn.o_proj`, H, qn);
    let att = linearOf(o, `${l}.self_attn.o_proj`);
    if (c.sandwichNorm || c.postNorm) att = norm(att, `${l}.post_attention_layernorm.weight`);
    if (c.glmNorms) att = norm(att, `${l}.post_self_attn_layernorm.weight`);
    const residual = h;
    if (!c.parallelBlock) h = b.add(h, scaled(att));
    if (c.moe?.sparse[i]) {
      const x = norm(h, `${l}.post_attention_layernorm.weight`);
      const moe = c.family === "gpt_oss"
        ? onnxGptOssMoe(b, c.moe, i, x, H, W, init)
        : onnxMoe(b, c.moe, i, x, H, lin, W, init);
      h = b.add(h, moe);
      continue;
    }
    const m = c.parallelBlock ? a : c.postNorm ? h : norm(
      h,
      c.sandwichNorm ? `${l}.pre_feedforward_layernorm.weight` : `${l}.post_attention_layernorm.weight`,
    );
    if (c.plainMlp) {
      setShape(`${l}.mlp.c_fc`, c.intermediate, H);
      setShape(`${l}.mlp.c_proj`, H, c.intermediate);
      h = b.add(h, scaled(linearOf(act(linearOf(m, `${l}.mlp.c_fc`)), `${l}.mlp.c_proj`)));
      continue;
    }
    let gate: string, up: string;
    if (c.fusedGateUp) {
      setShape(`${l}.mlp.gate_up_proj`, 2 * c.intermediate, H);
      const gu = linearOf(m, `${l}.mlp.gate_up_proj`);
      [gate, up] = [slice(gu, 2, 0, c.intermediate), slice(gu, 2, c.intermediate, 2 * c.intermediate)];
    } else {
      setShape(`${l}.mlp.gate_proj`, c.intermediate, H);
      setShape(`${l}.mlp.up_proj`, c.intermediate, H);
      [gate, up] = [linearOf(m, `${l}.mlp.gate_proj`), linearOf(m, `${l}.mlp.up_proj`)];
    }
    setShape(`${l}.mlp.down_proj`, H, c.intermediate);
    let mlp = linearOf(b.mul(act(gate), up), `${l}.mlp.down_proj`);
    if (c.sandwichNorm || c.postNorm) mlp = norm(mlp, `${l}.post_feedforward_layernorm.weight`);
    if (c.glmNorms) mlp = norm(mlp, `${l}.post_mlp_layernorm.weight`);
    h = c.parallelBlock ? b.add(b.add(residual, att), mlp) : b.add(h, scaled(mlp));
  }
  h = norm(h, "model.norm.weight");
  if (c.logitScale !== 1) h = b.mul(h, b.f32(1 / c.logitScale)); // as the engine: on the final hidden state
  let logits: string;
  if (c.tieEmbeddings) {
    logits = b.op1("MatMul", [h, b.transpose(embedName, [1, 0])]);
  } else {
    setShape("lm_head", c.vocab, H);
    logits = linearOf(h, "lm_head");
  }
  if (c.finalSoftcap) logits = softcap(logits, c.finalSoftcap);
  b.output(logits, "logits", FLOAT, ["batch_size", "sequence_length", c.vocab]);
  b.outputs.unshift(b.outputs.pop()!); // Optimum's order: logits, then present.0.key, present.0.value, ...

  const model = b.model(`whetstone-${c.family}`);
  model.opsets = [{ domain: "", version: 18 }];
  return { model, weights: out };
}

/** Initializers of `weights`: external references into `location` (64-byte aligned) or inline bytes. */
export function placeWeights(
  weights: OnnxWeight[],
  location?: string,
): { initializers: TensorDef[]; data: Uint8Array[]; bytes: number } {
  const initializers: TensorDef[] = [], data: Uint8Array[] = [];
  let size = 0;
  for (const w of weights) {
    const raw = new Uint8Array(w.data.buffer, w.data.byteOffset, w.data.byteLength);
    if (!location) {
      initializers.push({ name: w.name, dims: w.dims, dataType: FLOAT, raw });
      continue;
    }
    const pad = (64 - (size % 64)) % 64;
    if (pad) data.push(new Uint8Array(pad));
    size += pad;
    initializers.push({
      name: w.name,
      dims: w.dims,
      dataType: FLOAT,
      external: { location, offset: size, length: raw.length },
    });
    data.push(raw);
    size += raw.length;
  }
  return { initializers, data, bytes: size };
}
