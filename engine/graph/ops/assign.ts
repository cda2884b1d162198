/**
 * `assign(target, value)`: writes `value` into the persistent param `target` at the end of the graph
 * (after every reader of the old value). Used for running sums kept on the device, such as the
 * training loss accumulated between logging steps, so no step has to read anything back.
 *
 * target [...] f32 (a param, written in place), value [...] f32 → no outputs. No gradient.
 * @module
 */
import { defineOp, registerOps } from "../op.ts";
import { graphOf, type Tensor } from "../graph.ts";
import { fmtInfo } from "../types.ts";

registerOps([
  defineOp({
    name: "assign",
    effects: [0],
    infer: ([t, v]) => {
      if (t.dtype !== v.dtype || t.shape.join() !== v.shape.join()) {
        throw new Error(`value ${fmtInfo(v)} must match the target ${fmtInfo(t)}`);
      }
      return [];
    },
    ref: ([t, v]) => {
      t.data.set(v.data);
      return [];
    },
  }),
]);

/** Writes `value` into the param `target` once every other node of the graph has run. */
export function assign(target: Tensor, value: Tensor): void {
  if (target.value.kind !== "param") throw new Error(`assign: the target must be a param, got ${target.value.kind}`);
  graphOf(target, value).apply("assign", [target, value]);
}
