/**
 * The `adamw_8bit` op: one step of bitsandbytes' 8-bit blockwise AdamW (HF's `optim: adamw_8bit`), updating a param
 * and its 8-bit states in place (engine/quant/optim8.ts has the math and its sources). Like the ops of optim.ts it has
 * no outputs and runs after every other node.
 *
 * Inputs: param [...] f32, grad [...] f32, state1 [⌈n/4⌉] i32 and state2 [⌈n/4⌉] i32 (the first and second moment's
 * uint8 codes, four to a word, little-endian), absmax1 [⌈n/256⌉] f32 and absmax2 [⌈n/256⌉] f32, lr [] f32, step [] f32
 * (from 1), then an optional gradScale [] f32 (multiplies the gradient: bitsandbytes' `gnorm_scale`) and, when
 * `gated`, the gate ok [] f32 last (0: nothing is written). Inputs 0 and 2–5 are written.
 * @module
 */
import { defineOp, registerOps } from "../op.ts";
import { graphOf, type Tensor } from "../graph.ts";
import { fmtInfo, numel, type TensorInfo } from "../types.ts";
import { adam8bitStep, optim8Layout } from "../../quant/optim8.ts";
import { optimTail } from "./optim.ts";

/** Attrs of `adamw_8bit` (bitsandbytes AdamW's param group). */
export interface Adamw8bitAttrs extends Record<string, unknown> {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** The last input is the gate `ok` (f32 scalar): 0 skips the update. */
  gated?: boolean;
}

function check(ins: readonly TensorInfo[], gated: boolean | undefined): TensorInfo[] {
  const base = gated ? 9 : 8;
  if (ins.length !== base && ins.length !== base + 1) {
    throw new Error(
      `expected ${base} inputs (+ optional gradScale${gated ? ", then the gate" : ""}), got ${ins.length}`,
    );
  }
  const p = ins[0], n = numel(p.shape), { words, blocks } = optim8Layout(n);
  const want: [number, number[], "f32" | "i32"][] = [
    [0, [...p.shape], "f32"],
    [1, [...p.shape], "f32"],
    [2, [words], "i32"],
    [3, [words], "i32"],
    [4, [blocks], "f32"],
    [5, [blocks], "f32"],
  ];
  for (const [i, shape, dtype] of want) {
    if (ins[i].dtype !== dtype || ins[i].shape.join() !== shape.join()) {
      throw new Error(`input ${i} must be [${shape.join(", ")}] ${dtype}, got ${fmtInfo(ins[i])}`);
    }
  }
  for (let i = 6; i < ins.length; i++) {
    if (ins[i].dtype !== "f32" || numel(ins[i].shape) !== 1) {
      throw new Error(`input ${i} must be an f32 scalar, got ${fmtInfo(ins[i])}`);
    }
  }
  return [];
}

registerOps([
  defineOp<Adamw8bitAttrs>({
    name: "adamw_8bit",
    effects: [0, 2, 3, 4, 5],
    infer: (ins, { gated }) => check(ins, gated),
    ref: (ins, { beta1, beta2, eps, weightDecay, gated }) => {
      const tail = optimTail(ins.length, 8, gated);
      if (tail.gate !== undefined && ins[tail.gate].data[0] === 0) return [];
      const [p, g, s1, s2, a1, a2, lr, step] = ins;
      const gs = tail.scale === undefined ? 1 : ins[tail.scale].data[0];
      const st = { state1: s1.data, state2: s2.data, absmax1: a1.data, absmax2: a2.data };
      adam8bitStep(p.data, g.data, st, lr.data[0], step.data[0], { beta1, beta2, eps, weightDecay }, gs);
      return [];
    },
  }),
]);

/** The 8-bit states of {@link adamw8bit}, as graph params. */
export interface Adam8Tensors {
  state1: Tensor;
  state2: Tensor;
  absmax1: Tensor;
  absmax2: Tensor;
}

/**
 * One bitsandbytes 8-bit blockwise AdamW step of `param` (see the module doc); `gradScale` multiplies the gradient,
 * `gate` (an f32 scalar) skips the whole update where it is 0 at run time.
 */
export function adamw8bit(
  param: Tensor,
  grad: Tensor,
  st: Adam8Tensors,
  lr: Tensor,
  step: Tensor,
  o: { beta1: number; beta2: number; eps: number; weightDecay: number },
  gradScale?: Tensor,
  gate?: Tensor,
): void {
  const attrs: Adamw8bitAttrs = { beta1: o.beta1, beta2: o.beta2, eps: o.eps, weightDecay: o.weightDecay };
  for (const [k, x] of Object.entries(attrs)) {
    if (typeof x === "number" && !Number.isFinite(x)) throw new Error(`adamw_8bit: ${k} must be finite, got ${x}`);
  }
  if (!(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1)) {
    throw new Error(`adamw_8bit: betas must be in [0, 1), got ${o.beta1} and ${o.beta2}`);
  }
  if (gate) attrs.gated = true;
  const ins = [param, grad, st.state1, st.state2, st.absmax1, st.absmax2, lr, step];
  if (gradScale) ins.push(gradScale);
  if (gate) ins.push(gate);
  graphOf(...ins).apply("adamw_8bit", ins, attrs);
}
