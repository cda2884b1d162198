/**
 * The reduction builders (sum, mean, max over axes), apart from their definitions in reduce.ts: the gradient rules
 * of the shape and elementwise ops build sums, and reduce.ts's own rules build shapes and elementwise ops, so the
 * builders sit below all three files and no import circle joins them.
 * @module
 */
import { op1, type Tensor } from "../graph.ts";
import { normAxes } from "../broadcast.ts";

function red(op: string, x: Tensor, axes: number | readonly number[] | undefined, keepdims: boolean): Tensor {
  const list = axes === undefined ? [...Array(x.rank).keys()] : typeof axes === "number" ? [axes] : axes;
  return op1(op, [x], { axes: normAxes(list, x.rank), keepdims });
}

/** Sum over `axes` (all when omitted). */
export const sum = (x: Tensor, axes?: number | readonly number[], keepdims = false): Tensor =>
  red("sum", x, axes, keepdims);
/** Mean over `axes` (all when omitted). */
export const mean = (x: Tensor, axes?: number | readonly number[], keepdims = false): Tensor =>
  red("mean", x, axes, keepdims);
/** Max over `axes` (all when omitted). */
export const max = (x: Tensor, axes?: number | readonly number[], keepdims = false): Tensor =>
  red("max", x, axes, keepdims);
