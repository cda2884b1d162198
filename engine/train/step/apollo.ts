/**
 * APOLLO's update for the step builder: apollo-torch's AdamW (engine/optim/apollo.ts `apolloAdamw`) on the targeted
 * linear weights, with their P, m, v and limiter norm under `apolloStateNames`, and its plain AdamW (galore.ts's
 * `galoreAdamw` without projection, through galore.ts's `projectedOptimizer`) on the other params; no weight decay on
 * biases and norms. The random projections are drawn on the host (engine/train/optimizers_apollo.ts).
 * @module
 */
import { apolloAdamw, type ApolloOptions, apolloStateNames, apolloStates } from "../../optim/apollo.ts";
import { galoreLayout } from "../../optim/galore.ts";
import { projectedOptimizer } from "./galore.ts";
import type { Optimizer } from "./optimizer.ts";

/** APOLLO-AdamW over the params of a step, projecting `targets`; states under `prefix`. */
export function apolloOptimizer(
  prefix: string,
  targets: readonly string[],
  o: ApolloOptions,
  h: { beta1: number; beta2: number; eps: number; weightDecay: number },
): Optimizer {
  return projectedOptimizer("apollo", prefix, targets, h, {
    states: (name, shape) => apolloStates(name, shape, o),
    update(g, u, i, hyper) {
      const param = u.params[i], l = galoreLayout(param.shape, o), n = apolloStateNames(u.names[i]);
      const st = {
        m: g.param(prefix + n.m, l.low),
        v: g.param(prefix + n.v, l.low),
        proj: g.param(prefix + n.proj, l.proj),
        scaled: g.param(prefix + n.scaled, [1]),
      };
      const opts = { ...hyper, scale: o.scale, scaleType: o.scaleType, scaleFront: o.scaleFront };
      apolloAdamw(param, u.grads[i], st, l.side, u.lr, u.step, opts, u.gradScale, u.gate);
    },
  });
}
