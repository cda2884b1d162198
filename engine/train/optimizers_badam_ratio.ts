/**
 * BAdam's ratio mode as an optimizer run (see optimizers.ts for the {@link OptimizerRun} contract; the method and its
 * sources are in engine/optim/badam_ratio.ts): every param but the first embedding and the first lm_head trains on
 * int(n · badam_update_ratio) of its entries at a time, chosen on the host per block of 100 steps and stored as an
 * i32 index param (`<name>.badam_index`) the step graph gathers and scatters by; the moments (`exp_avg`,
 * `exp_avg_sq`, [k]) are zeroed at each block start. A checkpoint holds the moments; the index is recomputed from the
 * step on resume.
 * @module
 */
import type { TrainArgs } from "../config/args.ts";
import { mul, type Tensor } from "../graph/mod.ts";
import type { Model } from "../nn/model.ts";
import {
  BADAM_RATIO,
  type BadamMaskMode,
  badamRatioTrainable,
  ratioBlock,
  ratioCount,
  ratioEpsilon,
  ratioGather,
  ratioIndices,
  scatterPermutation,
  sparseAdam,
  type SparseAdamOptions,
} from "../optim/badam_ratio.ts";
import { LOSS_SUM } from "./step/builder.ts";
import type { Optimizer } from "./step/optimizer.ts";

/** The store names of a param's ratio-mode states and index. */
export const ratioStateNames = (p: string) => ({
  m: `${p}.exp_avg`,
  v: `${p}.exp_avg_sq`,
  index: `${p}.badam_index`,
});

/** One trainable param of ratio mode: its elements, kept entries and the hook's epsilon. */
interface RatioParam {
  name: string;
  n: number;
  k: number;
  epsilon: number;
}

/** The sparse AdamW of ratio mode over `params` (names without the model prefix; states under `prefix`). */
export function badamRatioOptimizer(prefix: string, params: readonly RatioParam[], o: SparseAdamOptions): Optimizer {
  const byName = new Map(params.map((p) => [p.name, p]));
  const of = (name: string) => {
    const p = byName.get(name);
    if (!p) throw new Error(`badam ratio: "${name}" is not one of its params`);
    return p;
  };
  const index = (g: Parameters<Optimizer["update"]>[0], name: string) =>
    g.param(prefix + ratioStateNames(name).index, [of(name).k], "i32");
  return {
    key: "badam_ratio",
    gated: true,
    states: (name) => {
      const st = ratioStateNames(name), k = of(name).k;
      return [{ name: prefix + st.m, shape: [k] }, { name: prefix + st.v, shape: [k] }];
    },
    gradients: (g, names, grads) => names.map((n, i) => ratioGather(grads[i], index(g, n), of(n).epsilon)),
    update(g, u) {
      u.params.forEach((w, i) => {
        const name = u.names[i], st = ratioStateNames(name), k = of(name).k;
        const m = g.param(prefix + st.m, [k]), v = g.param(prefix + st.v, [k]);
        const grad: Tensor = u.gradScale ? mul(u.grads[i], u.gradScale) : u.grads[i];
        sparseAdam(w, grad, m, v, index(g, name), u.lr, u.step, o, u.gate);
      });
    },
  };
}

/** Ratio mode's settings. */
export interface BadamRatioOptions {
  /** badam_update_ratio (LF default 0.05). */
  ratio: number;
  /** badam_mask_mode (LF default "adjacent"). */
  maskMode: BadamMaskMode;
  /** Seed of "scatter"'s permutations (LF's `seed`). */
  seed: number;
  /** Steps per block (BlockOptimizerRatio's switch_every: 100 under LF). */
  switchEvery?: number;
}

/** BAdam in ratio mode (an `OptimizerRun` of optimizers.ts, which imports this file). */
export class BadamRatioRun {
  readonly kind = "badam" as const;
  readonly params: RatioParam[];
  readonly optimizer: Optimizer;
  readonly switchEvery: number;
  readonly #perms = new Map<number, Int32Array>();
  #block: number | undefined;
  #resumed = false;

  constructor(readonly model: Model, readonly opts: BadamRatioOptions, hyper: SparseAdamOptions) {
    if (!(opts.ratio > 1e-6 && opts.ratio <= 1)) {
      throw new Error(`badam_update_ratio must be in (1e-6, 1], got ${opts.ratio}`);
    }
    this.switchEvery = opts.switchEvery ?? BADAM_RATIO.switchEvery;
    this.params = badamRatioTrainable([...model.params.keys()]).map((name) => {
      const n = model.params.get(name)!.shape.reduce((a, b) => a * b, 1);
      return { name, n, k: ratioCount(n, opts.ratio), epsilon: ratioEpsilon(n, opts.ratio) };
    }).filter((p) => p.k > 0);
    const small = this.params.find((p) => p.n < BADAM_RATIO.preserveThreshold);
    if (opts.ratio === 1 && small) {
      throw new Error(
        `badam_update_ratio 1: BAdam's gradient hook fails on "${small.name}" (${small.n} elements, under its ` +
          `preserve_threshold ${BADAM_RATIO.preserveThreshold}: it adds 1e-9 to a sparse gradient); use a ratio below 1`,
      );
    }
    this.optimizer = badamRatioOptimizer(model.prefix, this.params, hyper);
  }

  /** The run for `a`'s badam_* keys. */
  static create(a: TrainArgs, model: Model): BadamRatioRun {
    return new BadamRatioRun(model, { ratio: a.badam_update_ratio, maskMode: a.badam_mask_mode, seed: a.seed }, {
      beta1: a.adam_beta1,
      beta2: a.adam_beta2,
      eps: a.adam_epsilon,
    });
  }

  /** The sorted flat indices param `p` updates in `block`. */
  indices(p: RatioParam, block: number): Int32Array {
    let perm: Int32Array | undefined;
    if (this.opts.maskMode === "scatter" && p.k < p.n) {
      perm = this.#perms.get(p.n);
      if (!perm) this.#perms.set(p.n, perm = scatterPermutation(p.n, this.opts.seed));
    }
    return ratioIndices(p.n, p.k, block, perm);
  }

  init(): void {
    this.model.executor.setParam(LOSS_SUM, [0], [1]);
  }

  /**
   * Step `step`'s update: at a block start (or the first step) the block's indices are set and the moments zeroed;
   * after a resume inside a block the restored moments are kept.
   */
  prepare(step: number) {
    const ex = this.model.executor, pre = this.model.prefix;
    const { block, t } = ratioBlock(step, this.switchEvery);
    if (block !== this.#block) {
      const keep = this.#resumed && t > 1;
      for (const p of this.params) {
        const st = ratioStateNames(p.name);
        ex.setParam(pre + st.index, this.indices(p, block), [p.k], "i32");
        for (const s of [st.m, st.v]) {
          if (!keep || !ex.hasParam(pre + s)) ex.setParam(pre + s, new Float32Array(p.k), [p.k]);
        }
      }
      this.#block = block;
    }
    this.#resumed = false;
    const names = this.params.map((p) => p.name);
    return Promise.resolve({ key: "badam_ratio", names, optimizer: this.optimizer, adamStep: t, fresh: false });
  }

  first() {
    return { names: this.params.map((p) => p.name), optimizer: this.optimizer };
  }

  states() {
    return this.params.flatMap((p) => this.optimizer.states(p.name, [p.n]));
  }

  /** The moments and the index: 12 bytes per kept entry. */
  bytes(): number {
    return this.params.reduce((s, p) => s + 12 * p.k, 0);
  }

  resumed(): void {
    this.#resumed = true;
  }
}
