/**
 * Shape ops: reshape (a view), expand (broadcast), permute, slice, concat.
 * @module
 */
import { defineOp, registerOps } from "../op.ts";
import { graphOf, op1, type Tensor } from "../graph.ts";
import { broadcastAxes, broadcastShapes, normAxes } from "../broadcast.ts";
import { numel, stridesOf, type TensorInfo } from "../types.ts";
import { sum } from "./reduce_build.ts";

registerOps([
  defineOp<{ shape: number[] }>({
    name: "reshape",
    view: true,
    infer: ([x], { shape }) => {
      if (numel(shape) !== numel(x.shape)) {
        throw new Error(`cannot reshape ${numel(x.shape)} elements to [${shape.join(", ")}] (${numel(shape)})`);
      }
      return [{ shape, dtype: x.dtype }];
    },
    ref: ([x]) => [x.data],
    grad: (c) => [reshape(c.grads[0]!, c.inputs[0].shape)],
  }),
  defineOp<{ shape: number[] }>({
    name: "expand",
    infer: ([x], { shape }) => {
      const b = broadcastShapes(x.shape, shape);
      if (b.join() !== shape.join()) throw new Error(`cannot expand [${x.shape.join(", ")}] to [${shape.join(", ")}]`);
      return [{ shape, dtype: x.dtype }];
    },
    ref: ([x], { shape }) => {
      const out = new Float64Array(numel(shape));
      const st = stridesOf(x.shape);
      const off = shape.length - x.shape.length;
      for (let i = 0; i < out.length; i++) {
        let rem = i, src = 0;
        for (let d = shape.length - 1; d >= 0; d--) {
          const c = rem % shape[d];
          rem = Math.floor(rem / shape[d]);
          if (d >= off && x.shape[d - off] !== 1) src += c * st[d - off];
        }
        out[i] = x.data[src];
      }
      return [out];
    },
    grad: (c) => {
      const x = c.inputs[0];
      const axes = broadcastAxes(x.shape, c.grads[0]!.shape);
      const s = axes.length ? sum(c.grads[0]!, axes, true) : c.grads[0]!;
      return [reshape(s, x.shape)];
    },
  }),
  defineOp<{ perm: number[] }>({
    name: "permute",
    infer: ([x], { perm }) => {
      if (perm.length !== x.shape.length || [...perm].sort((a, b) => a - b).some((p, i) => p !== i)) {
        throw new Error(`perm [${perm.join(", ")}] is not a permutation of ${x.shape.length} axes`);
      }
      return [{ shape: perm.map((p) => x.shape[p]), dtype: x.dtype }];
    },
    ref: ([x], { perm }, [o]) => {
      const out = new Float64Array(numel(o.shape));
      const ist = stridesOf(x.shape);
      const pst = perm.map((p) => ist[p]);
      for (let i = 0; i < out.length; i++) {
        let rem = i, src = 0;
        for (let d = o.shape.length - 1; d >= 0; d--) {
          src += (rem % o.shape[d]) * pst[d];
          rem = Math.floor(rem / o.shape[d]);
        }
        out[i] = x.data[src];
      }
      return [out];
    },
    grad: (c) => {
      const perm = c.attrs.perm as number[];
      const inv = new Array<number>(perm.length);
      perm.forEach((p, i) => (inv[p] = i));
      return [permute(c.grads[0]!, inv)];
    },
  }),
  defineOp<{ axis: number; start: number; end: number }>({
    name: "slice",
    infer: ([x], { axis, start, end }) => {
      if (axis < 0 || axis >= x.shape.length) throw new Error(`axis ${axis} is out of range`);
      if (!(0 <= start && start <= end && end <= x.shape[axis])) {
        throw new Error(`slice ${start}:${end} is out of range for axis ${axis} of size ${x.shape[axis]}`);
      }
      const shape = [...x.shape];
      shape[axis] = end - start;
      return [{ shape, dtype: x.dtype }];
    },
    ref: ([x], { axis, start }, [o]) => {
      const outer = numel(x.shape.slice(0, axis));
      const inner = numel(x.shape.slice(axis + 1));
      const n = o.shape[axis], src = x.shape[axis];
      const out = new Float64Array(numel(o.shape));
      for (let a = 0; a < outer; a++) {
        for (let j = 0; j < n; j++) {
          for (let k = 0; k < inner; k++) out[(a * n + j) * inner + k] = x.data[(a * src + start + j) * inner + k];
        }
      }
      return [out];
    },
    grad: (c) => {
      const { axis, start, end } = c.attrs as { axis: number; start: number; end: number };
      const x = c.inputs[0], g = c.grads[0]!;
      const parts: Tensor[] = [];
      const zeros = (len: number) => {
        const s = [...x.shape];
        s[axis] = len;
        return expand(g.graph.scalar(0, g.dtype), s);
      };
      if (start > 0) parts.push(zeros(start));
      parts.push(g);
      if (end < x.shape[axis]) parts.push(zeros(x.shape[axis] - end));
      return [parts.length === 1 ? g : concat(parts, axis)];
    },
  }),
  defineOp<{ axis: number }>({
    name: "concat",
    infer: (xs, { axis }) => {
      const r = xs[0].shape.length;
      if (axis < 0 || axis >= r) throw new Error(`axis ${axis} is out of range for rank ${r}`);
      let total = 0;
      for (const x of xs) {
        if (x.dtype !== xs[0].dtype) throw new Error(`all inputs must share a dtype`);
        if (x.shape.length !== r || x.shape.some((d, i) => i !== axis && d !== xs[0].shape[i])) {
          throw new Error(`shapes differ outside axis ${axis}`);
        }
        total += x.shape[axis];
      }
      const shape = [...xs[0].shape];
      shape[axis] = total;
      return [{ shape, dtype: xs[0].dtype }];
    },
    ref: (xs, { axis }, [o]) => {
      const outer = numel(o.shape.slice(0, axis));
      const inner = numel(o.shape.slice(axis + 1));
      const out = new Float64Array(numel(o.shape));
      const n = o.shape[axis];
      let at = 0;
      for (const x of xs) {
        const m = x.shape[axis];
        for (let a = 0; a < outer; a++) {
          for (let j = 0; j < m; j++) {
            for (let k = 0; k < inner; k++) out[(a * n + at + j) * inner + k] = x.data[(a * m + j) * inner + k];
          }
        }
        at += m;
      }
      return [out];
    },
    grad: (c) => {
      const axis = c.attrs.axis as number;
      let at = 0;
      return c.inputs.map((x, i) => {
        const s = at;
        at += x.shape[axis];
        return c.needs[i] ? slice(c.grads[0]!, axis, s, s + x.shape[axis]) : undefined;
      });
    },
  }),
]);

/** Same data, new shape; one dimension may be -1. Free: the executors alias the bytes. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const s = [...shape];
  const k = s.indexOf(-1);
  if (k >= 0) {
    const rest = numel(s.filter((_, i) => i !== k));
    s[k] = rest === 0 ? 0 : numel(x.shape) / rest;
  }
  if (s.join() === x.shape.join()) return x;
  return op1("reshape", [x], { shape: s });
}

/** Broadcasts `x` to `shape`. */
export function expand(x: Tensor, shape: readonly number[]): Tensor {
  if (x.shape.join() === shape.join()) return x;
  return op1("expand", [x], { shape: [...shape] });
}

/** Permutes axes: out.shape[i] = x.shape[perm[i]]. */
export function permute(x: Tensor, perm: readonly number[]): Tensor {
  if (perm.every((p, i) => p === i)) return x;
  return op1("permute", [x], { perm: [...perm] });
}

/** Swaps two axes (negative axes count from the end). */
export function transpose(x: Tensor, a = -2, b = -1): Tensor {
  const [i, j] = [a < 0 ? a + x.rank : a, b < 0 ? b + x.rank : b];
  const perm = [...Array(x.rank).keys()];
  [perm[i], perm[j]] = [perm[j], perm[i]];
  return permute(x, perm);
}

/** x[..., start:end, ...] along `axis`. */
export function slice(x: Tensor, axis: number, start: number, end: number): Tensor {
  const ax = normAxes([axis], x.rank)[0];
  if (start === 0 && end === x.shape[ax]) return x;
  return op1("slice", [x], { axis: ax, start, end });
}

/** Concatenates along `axis`. */
export function concat(xs: readonly Tensor[], axis: number): Tensor {
  if (xs.length === 1) return xs[0];
  const ax = normAxes([axis], xs[0].rank)[0];
  return graphOf(...xs).apply("concat", xs, { axis: ax })[0];
}

/** Info helper used by lowerings. */
export function sliceInfo(x: TensorInfo, axis: number): { outer: number; inner: number } {
  return { outer: numel(x.shape.slice(0, axis)), inner: numel(x.shape.slice(axis + 1)) };
}
