/**
 * ONNX lowerings of the training ops: the fused LM-head cross-entropy (lower_linear_ce.ts: whole, or in chunks where
 * the caller asks), the optimizers and `assign`. Ops with effects return the new values of the inputs they
 * write; the executor stores them back (see lower.ts).
 * @module
 */
import { type AdamWAttrs, optimTail, type SgdAttrs } from "../../graph/ops/optim.ts";
import type { OnnxBuilder } from "./builder.ts";
import { linearCeLowerings } from "./lower_linear_ce.ts";
import type { OnnxLowering } from "./lower_types.ts";
import { ONNX_TYPE } from "./proto.ts";

/** grad · gradScale (the optional last input). */
function scaled(b: OnnxBuilder, g: string, gs: string | undefined): string {
  return gs ? b.mul(g, b.reshape(gs, [])) : g;
}

const scalar = (b: OnnxBuilder, x: string) => b.reshape(x, []);

/** The optional gradScale and gate of an optimizer op with `min` required inputs (see optimTail). */
function tailOf(ins: readonly string[], min: number, gated: boolean | undefined): { gs?: string; ok?: string } {
  const t = optimTail(ins.length, min, gated);
  return { gs: t.scale === undefined ? undefined : ins[t.scale], ok: t.gate === undefined ? undefined : ins[t.gate] };
}

/** Gated effect outputs: Where(ok != 0, new, old) for each pair; unchanged without a gate. */
function gate(b: OnnxBuilder, ok: string | undefined, pairs: [string, string][]): string[] {
  if (!ok) return pairs.map(([next]) => next);
  const on = b.op1("Not", [b.op1("Equal", [scalar(b, ok), b.f32(0)])]);
  return pairs.map(([next, old]) => b.op1("Where", [on, next, old]));
}

/** The lowerings of this file. */
export const trainLowerings: Record<string, OnnxLowering> = {
  ...linearCeLowerings,
  assign: ({ ins }) => [ins[1]],

  // target [N, C, ...R], index [N, L], value [N, L, ...R] -> target' (ScatterND; indices outside [0, C) write
  // into a spare row C that is dropped, so they change nothing, as in the reference)
  scatter_rows: ({ b, ins, inInfos }) => {
    const [N, C] = inInfos[0].shape, L = inInfos[1].shape[1];
    const [t, index, value] = ins;
    const spare = b.op1("Concat", [t, b.op1("Slice", [t, b.i64([0]), b.i64([1]), b.i64([1])])], { axis: { i: 1 } });
    const ok = b.op1("And", [b.op1("GreaterOrEqual", [index, b.i32(0)]), b.op1("Less", [index, b.i32(C)])]);
    const col = b.cast(b.op1("Where", [ok, index, b.i32(C)]), ONNX_TYPE.INT64);
    const row = b.i64sTensor([N, L, 1], Array.from({ length: N * L }, (_, i) => Math.floor(i / L)));
    const idx = b.op1("Concat", [row, b.reshape(col, [N, L, 1])], { axis: { i: 2 } });
    const written = b.op1("ScatterND", [spare, idx, value]);
    return [b.op1("Slice", [written, b.i64([0]), b.i64([C]), b.i64([1])])];
  },

  // p, g, m, v, lr, step, gradScale?, ok? -> p', m', v' (torch.optim.AdamW). The bias corrections are scalars
  // computed in f64 (1 − 0.999^t in f32 is off by ~1e-5 relative at small t).
  adamw: ({ b, ins, attrs }) => {
    const { beta1, beta2, eps, weightDecay, gated } = attrs as AdamWAttrs;
    const [p, g0, m, v, lr0, step0] = ins;
    const { gs, ok } = tailOf(ins, 6, gated);
    const g = scaled(b, g0, gs), lr = scalar(b, lr0);
    const lr64 = b.cast(lr, ONNX_TYPE.DOUBLE), step64 = b.cast(scalar(b, step0), ONNX_TYPE.DOUBLE);
    const bc = (beta: number) => b.sub(b.f64(1), b.op1("Pow", [b.f64(beta), step64]));
    const stepSize = b.cast(b.div(lr64, bc(beta1)), ONNX_TYPE.FLOAT);
    const sqrtBc2 = b.cast(b.op1("Sqrt", [bc(beta2)]), ONNX_TYPE.FLOAT);
    const m2 = b.add(b.mul(m, b.f32(beta1)), b.mul(g, b.f32(1 - beta1)));
    const v2 = b.add(b.mul(v, b.f32(beta2)), b.mul(b.mul(g, g), b.f32(1 - beta2)));
    // Without weight decay the factor is exactly 1: p itself (bit for bit), not one more param-sized pass and buffer.
    const decayed = weightDecay === 0 ? p : b.mul(p, b.sub(b.f32(1), b.mul(lr, b.f32(weightDecay))));
    const denom = b.add(b.div(b.op1("Sqrt", [v2]), sqrtBc2), b.f32(eps));
    const p2 = b.sub(decayed, b.mul(stepSize, b.div(m2, denom)));
    return gate(b, ok, [[p2, p], [m2, m], [v2, v]]);
  },
  // p, g, lr, gradScale?, ok? -> p'
  sgd: ({ b, ins, attrs }) => {
    const { weightDecay, gated } = attrs as SgdAttrs;
    const [p, g, lr] = ins;
    const { gs, ok } = tailOf(ins, 3, gated);
    const d = b.add(scaled(b, g, gs), b.mul(p, b.f32(weightDecay)));
    return gate(b, ok, [[b.sub(p, b.mul(scalar(b, lr), d)), p]]);
  },
  // p, g, buf, lr, gradScale?, ok? -> p', buf'
  sgd_momentum: ({ b, ins, attrs }) => {
    const { momentum, weightDecay, nesterov, gated } = attrs as SgdAttrs;
    const [p, g, buf, lr] = ins;
    const { gs, ok } = tailOf(ins, 4, gated);
    const d = b.add(scaled(b, g, gs), b.mul(p, b.f32(weightDecay)));
    const buf2 = b.add(b.mul(buf, b.f32(momentum)), d);
    const step = nesterov ? b.add(d, b.mul(buf2, b.f32(momentum))) : buf2;
    return gate(b, ok, [[b.sub(p, b.mul(scalar(b, lr), step)), p], [buf2, buf]]);
  },
};
