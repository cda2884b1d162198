/**
 * `stop_gradient`: the identity whose gradient is zero (torch's `.detach()`). A view: no kernel, no memory.
 * @module
 */
import { op1, type Tensor } from "../graph.ts";
import { defineOp, registerOps } from "../op.ts";

// x [...] -> y [...]
registerOps([
  defineOp({
    name: "stop_gradient",
    view: true,
    infer: ([x]) => [{ shape: x.shape, dtype: x.dtype }],
    ref: ([x]) => [x.data],
    grad: () => [undefined],
  }),
]);

/** `x` with no gradient flowing back through it (torch's `.detach()`). */
export const stopGradient = (x: Tensor): Tensor => op1("stop_gradient", [x]);
