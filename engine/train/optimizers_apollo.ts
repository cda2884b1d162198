/**
 * APOLLO's optimizer run (see optimizers.ts for the {@link OptimizerRun} contract): apollo-torch's AdamW with random
 * projections on the targeted linear weights (`apollo_target`, as GaLore picks them), drawn on the host at step 1 and
 * every `apollo_update_interval` steps. A projection depends only on the param's index and the refresh count, so a
 * resumed run draws the same ones; between refreshes the checkpoint's P is kept.
 * @module
 */
import type { TrainArgs } from "../config/args.ts";
import { numel } from "../graph/types.ts";
import type { Model } from "../nn/model.ts";
import { type ApolloOptions, apolloStateNames, randomProjection } from "../optim/apollo.ts";
import { galoreLayout, galoreRefreshDue, galoreTargets } from "../optim/galore.ts";
import { LOSS_SUM } from "./step/builder.ts";
import { apolloOptimizer } from "./step/apollo.ts";
import type { Optimizer } from "./step/optimizer.ts";
import { trainableShape } from "./step/params.ts";

/** APOLLO on `trainable`, projecting `targets` (an `OptimizerRun` of optimizers.ts, which imports this file). */
export class ApolloRun {
  readonly kind = "apollo" as const;
  readonly optimizer: Optimizer;

  constructor(
    readonly model: Model,
    readonly trainable: readonly string[],
    readonly targets: readonly string[],
    readonly opts: ApolloOptions,
    hyper: { beta1: number; beta2: number; eps: number; weightDecay: number },
  ) {
    for (const t of targets) {
      if (!trainable.includes(t)) throw new Error(`APOLLO target "${t}" is not a trainable param`);
    }
    this.optimizer = apolloOptimizer(model.prefix, targets, opts, hyper);
  }

  /** The run for `a`'s apollo_* keys on `trainable`. */
  static create(a: TrainArgs, model: Model, trainable: string[]): ApolloRun {
    const targets = galoreTargets(model.config, trainable, a.apollo_target);
    return new ApolloRun(model, trainable, targets, {
      rank: a.apollo_rank,
      updateInterval: a.apollo_update_interval,
      scale: a.apollo_scale,
      projType: a.apollo_proj_type,
      scaleType: a.apollo_scale_type,
      scaleFront: a.apollo_scale_front,
    }, { beta1: a.adam_beta1, beta2: a.adam_beta2, eps: a.adam_epsilon, weightDecay: a.weight_decay });
  }

  init(): void {
    for (const s of this.states()) this.model.executor.setParam(s.name, new Float32Array(numel(s.shape)), s.shape);
    this.model.executor.setParam(LOSS_SUM, [0], [1]);
  }

  /** On the steps that refresh (step 1, then every update_interval): new random projections. */
  prepare(
    step: number,
  ): Promise<{ key: string; names: string[]; optimizer: Optimizer; adamStep: number; fresh: boolean }> {
    if (galoreRefreshDue(step, this.opts.updateInterval)) {
      const refresh = Math.floor((step - 1) / this.opts.updateInterval);
      this.targets.forEach((t, i) => {
        const shape = trainableShape(this.model, t);
        const proj = randomProjection(shape, this.opts, i + 1, refresh);
        this.model.executor.setParam(
          this.model.prefix + apolloStateNames(t).proj,
          proj,
          galoreLayout(shape, this.opts).proj,
        );
      });
    }
    return Promise.resolve({
      key: "apollo",
      names: [...this.trainable],
      optimizer: this.optimizer,
      adamStep: step,
      fresh: false,
    });
  }

  first() {
    return { names: [...this.trainable], optimizer: this.optimizer };
  }

  states(): { name: string; shape: number[] }[] {
    return this.trainable.flatMap((n) => this.optimizer.states(n, trainableShape(this.model, n)));
  }

  bytes(): number {
    return this.states().reduce((n, s) => n + 4 * numel(s.shape), 0);
  }

  resumed(): void {}
}
