/**
 * APOLLO's update for the step builder: apollo-torch's AdamW (engine/optim/apollo.ts `apolloAdamw`) on the targeted
 * linear weights, with their P, m, v and limiter norm under `apolloStateNames`, and its plain AdamW (galore.ts's
 * `galoreAdamw` without projection; m, v under optimizer.ts's `stateNames`) on the other params; no weight decay on
 * biases and norms. The random projections are drawn on the host (engine/train/optimizers_apollo.ts).
 * @module
 */
import type { Graph } from "../../graph/mod.ts";
import { apolloAdamw, type ApolloOptions, apolloStateNames, apolloStates } from "../../optim/apollo.ts";
import { galoreAdamw, galoreLayout } from "../../optim/galore.ts";
import { decays, type Optimizer, stateNames } from "./optimizer.ts";

/** APOLLO-AdamW over the params of a step, projecting `targets`; states under `prefix`. */
export function apolloOptimizer(
  prefix: string,
  targets: readonly string[],
  o: ApolloOptions,
  h: { beta1: number; beta2: number; eps: number; weightDecay: number },
): Optimizer {
  const projected = new Set(targets);
  return {
    key: "apollo",
    gated: true,
    states(name, shape) {
      if (projected.has(name)) {
        return apolloStates(name, shape, o).map((s) => ({ name: prefix + s.name, shape: s.shape }));
      }
      const st = stateNames(name);
      return [{ name: prefix + st.m, shape: [...shape] }, { name: prefix + st.v, shape: [...shape] }];
    },
    update(g: Graph, u) {
      u.params.forEach((param, i) => {
        const name = u.names[i];
        const hyper = { beta1: h.beta1, beta2: h.beta2, eps: h.eps, weightDecay: decays(name) ? h.weightDecay : 0 };
        if (!projected.has(name)) {
          const st = stateNames(name);
          const m = g.param(prefix + st.m, param.shape), v = g.param(prefix + st.v, param.shape);
          galoreAdamw(param, u.grads[i], m, v, u.lr, u.step, hyper, undefined, u.gradScale, u.gate);
          return;
        }
        const l = galoreLayout(param.shape, o), n = apolloStateNames(name);
        const st = {
          m: g.param(prefix + n.m, l.low),
          v: g.param(prefix + n.v, l.low),
          proj: g.param(prefix + n.proj, l.proj),
          scaled: g.param(prefix + n.scaled, [1]),
        };
        const opts = { ...hyper, scale: o.scale, scaleType: o.scaleType, scaleFront: o.scaleFront };
        apolloAdamw(param, u.grads[i], st, l.side, u.lr, u.step, opts, u.gradScale, u.gate);
      });
    },
  };
}
