/**
 * GaLore's update for the step builder: GaLoreAdamW (engine/optim/galore.ts `galoreAdamw`) on every trainable param,
 * projected to rank r for the targeted linear weights (their P, B, m, v under `galoreStateNames`), galore_torch's
 * plain AdamW for the others (m, v under optimizer.ts's `stateNames`); no weight decay on biases and norms. The
 * projections are refreshed on the host (engine/train/optimizers.ts) before the steps that need one.
 * @module
 */
import type { Graph } from "../../graph/mod.ts";
import { galoreAdamw, galoreLayout, type GaloreOptions, galoreStateNames, galoreStates } from "../../optim/galore.ts";
import { decays, type Optimizer, stateNames, type Update } from "./optimizer.ts";

/** torch.optim.AdamW's hyper-parameters as GaLore's param groups carry them. */
export interface GaloreHyper {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/** How a projecting optimizer treats its targeted params: their states (unprefixed names) and their update. */
export interface ProjectedRule {
  states(name: string, shape: readonly number[]): { name: string; shape: number[] }[];
  /** Traces the update of `u.params[i]` (a target) with the param's hyper-parameters (decay already resolved). */
  update(g: Graph, u: Update, i: number, hyper: GaloreHyper): void;
}

/**
 * An optimizer that updates `targets` by `rule` and every other param with galore_torch's plain AdamW (m, v under
 * optimizer.ts's `stateNames`); no weight decay on biases and norms. GaLore and APOLLO (apollo.ts) are both this.
 */
export function projectedOptimizer(
  key: string,
  prefix: string,
  targets: readonly string[],
  h: GaloreHyper,
  rule: ProjectedRule,
): Optimizer {
  const projected = new Set(targets);
  return {
    key,
    gated: true,
    states(name, shape) {
      if (projected.has(name)) return rule.states(name, shape).map((s) => ({ name: prefix + s.name, shape: s.shape }));
      const st = stateNames(name);
      return [{ name: prefix + st.m, shape: [...shape] }, { name: prefix + st.v, shape: [...shape] }];
    },
    update(g: Graph, u) {
      u.params.forEach((param, i) => {
        const name = u.names[i];
        const hyper = { beta1: h.beta1, beta2: h.beta2, eps: h.eps, weightDecay: decays(name) ? h.weightDecay : 0 };
        if (projected.has(name)) return rule.update(g, u, i, hyper);
        const st = stateNames(name);
        const m = g.param(prefix + st.m, param.shape), v = g.param(prefix + st.v, param.shape);
        galoreAdamw(param, u.grads[i], m, v, u.lr, u.step, hyper, undefined, u.gradScale, u.gate);
      });
    },
  };
}

/** GaLore-AdamW over the params of a step, projecting `targets` (see the module doc); states under `prefix`. */
export function galoreOptimizer(
  prefix: string,
  targets: readonly string[],
  o: GaloreOptions,
  h: GaloreHyper,
): Optimizer {
  return projectedOptimizer("galore", prefix, targets, h, {
    states: (name, shape) => galoreStates(name, [...shape], o),
    update(g, u, i, hyper) {
      const param = u.params[i], l = galoreLayout(param.shape, o), st = galoreStateNames(u.names[i]);
      const proj = {
        side: l.side,
        p: g.param(prefix + st.proj, l.proj),
        b: l.projB ? g.param(prefix + st.projB, l.projB) : undefined,
        scale: o.scale,
      };
      const m = g.param(prefix + st.m, l.low), v = g.param(prefix + st.v, l.low);
      galoreAdamw(param, u.grads[i], m, v, u.lr, u.step, hyper, proj, u.gradScale, u.gate);
    },
  });
}
