/**
 * Reductions over axes: sum, mean, max (with keepdims).
 * @module
 */
import { defineOp, registerOps } from "../op.ts";
import type { Tensor } from "../graph.ts";
import { normAxes } from "../broadcast.ts";
import { numel, stridesOf, type TensorInfo } from "../types.ts";
import { div, eq, mul } from "./elementwise.ts";
import { expand, reshape } from "./shape.ts";
import { sum } from "./reduce_build.ts";

export { max, mean, sum } from "./reduce_build.ts";

/** Reduction attrs: normalized axes and keepdims. */
export interface ReduceAttrs extends Record<string, unknown> {
  axes: number[];
  keepdims: boolean;
}

function reduceInfer([x]: readonly TensorInfo[], { axes, keepdims }: ReduceAttrs): TensorInfo[] {
  const ax = normAxes(axes, x.shape.length);
  const shape = keepdims ? x.shape.map((d, i) => (ax.includes(i) ? 1 : d)) : x.shape.filter((_, i) => !ax.includes(i));
  return [{ shape, dtype: x.dtype }];
}

/** Walks x, calling visit(outIndex, value). */
function reduceWalk(
  x: { data: Float64Array; shape: readonly number[] },
  axes: number[],
  visit: (o: number, v: number) => void,
) {
  const st = stridesOf(x.shape.map((d, i) => (axes.includes(i) ? 1 : d)));
  const n = x.data.length;
  for (let i = 0; i < n; i++) {
    let rem = i, o = 0;
    for (let d = x.shape.length - 1; d >= 0; d--) {
      const c = rem % x.shape[d];
      rem = Math.floor(rem / x.shape[d]);
      if (!axes.includes(d)) o += c * st[d];
    }
    visit(o, x.data[i]);
  }
}

/** The gradient of a reduction broadcast back to the input's shape. */
function spread(g: Tensor, x: Tensor, axes: number[]): Tensor {
  const kshape = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
  return expand(reshape(g, kshape), x.shape);
}

registerOps([
  defineOp<ReduceAttrs>({
    name: "sum",
    infer: reduceInfer,
    ref: ([x], { axes }, [o]) => {
      const out = new Float64Array(numel(o.shape));
      reduceWalk(x, axes, (i, v) => (out[i] += v));
      return [out];
    },
    grad: (c) => [spread(c.grads[0]!, c.inputs[0], c.attrs.axes)],
  }),
  defineOp<ReduceAttrs>({
    name: "mean",
    infer: reduceInfer,
    ref: ([x], { axes }, [o]) => {
      const out = new Float64Array(numel(o.shape));
      reduceWalk(x, axes, (i, v) => (out[i] += v));
      const cnt = numel(x.shape) / Math.max(1, out.length);
      for (let i = 0; i < out.length; i++) out[i] /= cnt;
      return [out];
    },
    grad: (c) => {
      const x = c.inputs[0];
      const cnt = numel(x.shape) / Math.max(1, numel(c.outputs[0].shape));
      return [spread(div(c.grads[0]!, cnt), x, c.attrs.axes)];
    },
  }),
  defineOp<ReduceAttrs>({
    name: "max",
    infer: reduceInfer,
    ref: ([x], { axes }, [o]) => {
      const out = new Float64Array(numel(o.shape)).fill(-Infinity);
      reduceWalk(x, axes, (i, v) => (out[i] = Math.max(out[i], v)));
      return [out];
    },
    grad: (c) => {
      // Ties share the gradient evenly, as torch.amax does.
      const x = c.inputs[0], ax = c.attrs.axes;
      const m = eq(x, spread(c.outputs[0], x, ax));
      const cnt = spread(sum(m, ax, c.attrs.keepdims), x, ax);
      return [mul(spread(c.grads[0]!, x, ax), div(m, cnt))];
    },
  }),
]);
