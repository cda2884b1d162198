/**
 * The optimizer of a training session, host side: each kind says, before every optimizer step, which parameters the
 * step graph updates and with which update (step/optimizer.ts, step/galore.ts), what step count AdamW sees, and which
 * states a checkpoint holds. The session loop asks its {@link OptimizerRun} the same questions whatever the kind.
 *
 * - `adamw` / `sgd` / `adafactor` / `lion_32bit` / `adamw_8bit`, or LF's Muon ({@link PlainRun}): every trainable parameter, one
 *   update (step/optimizer.ts, step/optimizer_more.ts) and its states.
 * - GaLore ({@link GaloreRun}): GaLore-AdamW, projected (rank `galore_rank`) on the targeted linear weights; the
 *   projection is refreshed from the step's gradient of the stage's objective at step 1 and every
 *   `galore_update_interval` steps (one extra forward and backward on those steps). Checkpoints hold every state.
 * - APOLLO ({@link ApolloRun}, optimizers_apollo.ts): apollo-torch's AdamW with random projections.
 * - BAdam, layer mode ({@link BadamRun}): one decoder layer trains at a time, switching every
 *   `badam_switch_interval` steps; AdamW's moments exist for the active block only (a fresh graph is compiled at
 *   each switch). Checkpoints hold the active block's moments, put back after the first step's block selection on
 *   resume.
 * - BAdam, ratio mode ({@link BadamRatioRun}, optimizers_badam_ratio.ts): a fraction of every param's entries trains.
 * @module
 */
import type { TrainArgs } from "../config/args.ts";
import type { OptimName } from "../config/keys_training.ts";
import type { CompiledGraph } from "../exec/executor.ts";
import { numel } from "../graph/types.ts";
import type { Model } from "../nn/model.ts";
import { BADAM_WEIGHT_DECAY, badamBlocks, BadamSchedule } from "../optim/badam.ts";
import {
  galoreLayout,
  type GaloreOptions,
  galoreRefreshDue,
  galoreStateNames,
  galoreTargets,
  refreshProjection,
} from "../optim/galore.ts";
import type { Gemm } from "../optim/svd.ts";
import { ortGemm } from "../optim/svd_ort.ts";
import { buildGradStep, LOSS_SUM } from "./step/builder.ts";
import { galoreOptimizer } from "./step/galore.ts";
import type { Objective } from "./step/objective.ts";
import { adamwOptimizer, type Optimizer } from "./step/optimizer.ts";
import { trainableShape } from "./step/params.ts";
import { type OptimizerSettings, planOptimizer } from "./step/plan.ts";
import { ApolloRun } from "./optimizers_apollo.ts";
import { BadamRatioRun } from "./optimizers_badam_ratio.ts";

/**
 * An optimizer state as a checkpoint stores it: its store name (model prefix included) and shape; 8-bit codes are
 * i32 words (`dtype` i32) that a checkpoint stores as uint8 of shape `codes`.
 */
export interface OptimState {
  name: string;
  shape: number[];
  dtype?: "f32" | "i32";
  codes?: number[];
}

/** What the next step graph updates. */
export interface PreparedStep {
  /** Cache key of the step graph's update side (the step graph also depends on the objective and the length). */
  key: string;
  /** The parameters the step updates. */
  names: string[];
  optimizer: Optimizer;
  /** The `step` input (AdamW's count: BAdam restarts it in each block). */
  adamStep: number;
  /** Graphs compiled for earlier steps must not be reused (BAdam's switch). */
  fresh: boolean;
}

/** A session's optimizer (see the module doc). */
export interface OptimizerRun {
  readonly kind: OptimName | "muon" | "adam_mini" | "galore" | "apollo" | "badam";
  /** Sets every state to zeros, and the running loss sum to 0. Call once, before any step. */
  init(): void;
  /**
   * Before optimizer step `step` (1-based) with the step's `feeds` (all but lr and step) of `objective` over G
   * micro-batches: the update of the step graph.
   */
  prepare(
    step: number,
    feeds: Record<string, ArrayLike<number>>,
    objective: Objective,
    G: number,
  ): Promise<PreparedStep>;
  /** The update of the first step, for planning its memory before anything runs. */
  first(): { names: string[]; optimizer: Optimizer };
  /** The optimizer states a checkpoint saves now. */
  states(): OptimState[];
  /** Bytes of the optimizer states at their largest (as stored). */
  bytes(): number;
  /** Call after restoring a checkpoint: the next `prepare` keeps the restored states. */
  resumed(): void;
}

/** Every state of `optimizer` for the params `names` of `model`. */
const statesOf = (model: Model, optimizer: Optimizer, names: readonly string[]): OptimState[] =>
  names.flatMap((n) => optimizer.states(n, trainableShape(model, n)));

/** Bytes of `states` (f32 values, or i32 words of four 8-bit codes). */
const bytesOf = (states: readonly OptimState[]) => states.reduce((n, s) => n + 4 * numel(s.shape), 0);

function zero(model: Model, states: readonly OptimState[]): void {
  const ex = model.executor;
  for (const s of states) {
    if (ex.setParamZeros) ex.setParamZeros(s.name, s.shape, s.dtype ?? "f32");
    else {
      const n = numel(s.shape);
      ex.setParam(s.name, s.dtype === "i32" ? new Int32Array(n) : new Float32Array(n), s.shape, s.dtype ?? "f32");
    }
  }
  model.executor.setParam(LOSS_SUM, [0], [1]);
}

/** AdamW, SGD, Adafactor, Lion, 8-bit AdamW or Muon on every trainable parameter. */
export class PlainRun implements OptimizerRun {
  readonly kind: OptimName | "muon" | "adam_mini";
  readonly optimizer: Optimizer;

  constructor(readonly model: Model, readonly plan: OptimizerSettings) {
    this.optimizer = planOptimizer(model, plan);
    const k = this.optimizer.key;
    this.kind = k === "muon" || k === "adam_mini" ? k : plan.optim;
  }

  init(): void {
    zero(this.model, this.states());
  }

  prepare(step: number): Promise<PreparedStep> {
    const names = this.plan.trainable;
    return Promise.resolve({ key: this.optimizer.key, names, optimizer: this.optimizer, adamStep: step, fresh: false });
  }

  first() {
    return { names: this.plan.trainable, optimizer: this.optimizer };
  }

  states(): OptimState[] {
    return statesOf(this.model, this.optimizer, this.plan.trainable);
  }

  bytes(): number {
    return bytesOf(this.states());
  }

  resumed(): void {}
}

/** GaLore: the projected update, and the projection refresh before the steps that need one. */
export class GaloreRun implements OptimizerRun {
  readonly kind = "galore";
  readonly optimizer: Optimizer;
  readonly #grads = new Map<string, Promise<CompiledGraph>>();

  constructor(
    readonly model: Model,
    readonly trainable: readonly string[],
    readonly targets: readonly string[],
    readonly opts: GaloreOptions,
    hyper: { beta1: number; beta2: number; eps: number; weightDecay: number },
    /** SVD settings: e.g. `{ gemm: await ortGemm() }` for big weights. */
    readonly svd: { gemm?: Gemm; tol?: number } = {},
  ) {
    for (const t of targets) {
      if (!trainable.includes(t)) throw new Error(`GaLore target "${t}" is not a trainable param`);
    }
    this.optimizer = galoreOptimizer(model.prefix, targets, opts, hyper);
  }

  /** The run for `a`'s galore_* keys on `trainable`. */
  static async create(a: TrainArgs, model: Model, trainable: string[]): Promise<GaloreRun> {
    const targets = galoreTargets(model.config, trainable, a.galore_target);
    const opts = {
      rank: a.galore_rank,
      updateInterval: a.galore_update_interval,
      scale: a.galore_scale,
      projType: a.galore_proj_type,
    };
    const hyper = { beta1: a.adam_beta1, beta2: a.adam_beta2, eps: a.adam_epsilon, weightDecay: a.weight_decay };
    return new GaloreRun(model, trainable, targets, opts, hyper, { gemm: await ortGemm(), tol: 1e-6 });
  }

  init(): void {
    zero(this.model, this.states());
  }

  /**
   * On the steps that refresh (step 1, then every update_interval): one forward and backward of `objective`, and each
   * target's new P (and B) from its gradient.
   */
  async prepare(
    step: number,
    feeds: Record<string, ArrayLike<number>>,
    objective: Objective,
    G: number,
  ): Promise<PreparedStep> {
    if (galoreRefreshDue(step, this.opts.updateInterval)) await this.#refresh(feeds, objective, G);
    return { key: "galore", names: [...this.trainable], optimizer: this.optimizer, adamStep: step, fresh: false };
  }

  async #refresh(feeds: Record<string, ArrayLike<number>>, objective: Objective, G: number): Promise<void> {
    const ex = this.model.executor;
    const key = `${objective.key}:${G}:${Object.keys(feeds).sort().map((k) => `${k}=${feeds[k].length}`).join()}`;
    let c = this.#grads.get(key);
    if (!c) this.#grads.set(key, c = ex.compile(buildGradStep(objective, this.targets, G)));
    const out = await (await c).run(feeds, this.targets.map((t) => `grad:${t}`));
    for (const t of this.targets) {
      const shape = trainableShape(this.model, t), st = galoreStateNames(this.model.prefix + t);
      const l = galoreLayout(shape, this.opts);
      const { proj, projB } = await refreshProjection(out[`grad:${t}`], shape, this.opts, this.svd);
      ex.setParam(st.proj, proj, l.proj);
      if (projB) ex.setParam(st.projB, projB, l.projB!);
    }
  }

  first() {
    return { names: [...this.trainable], optimizer: this.optimizer };
  }

  states(): OptimState[] {
    return statesOf(this.model, this.optimizer, this.trainable);
  }

  bytes(): number {
    return bytesOf(this.states());
  }

  resumed(): void {}
}

/** BAdam in layer mode: the active block, its AdamW (torch's, decay on every param), the reset at each switch. */
export class BadamRun implements OptimizerRun {
  readonly kind = "badam";
  readonly blocks;
  readonly schedule: BadamSchedule;
  readonly optimizer: Optimizer;
  #active: number | undefined;
  #resumed = false;

  constructor(
    readonly model: Model,
    opts: ConstructorParameters<typeof BadamSchedule>[1],
    hyper: { beta1: number; beta2: number; eps: number },
  ) {
    this.blocks = badamBlocks([...model.params.keys()]);
    this.schedule = new BadamSchedule(this.blocks.length, opts);
    // BAdam's param groups carry torch's default weight decay, on every param of the block.
    this.optimizer = adamwOptimizer(model.prefix, { ...hyper, weightDecay: BADAM_WEIGHT_DECAY, decays: () => true });
  }

  /** The run for `a`'s badam_* keys. */
  static create(a: TrainArgs, model: Model): BadamRun {
    return new BadamRun(model, {
      switchMode: a.badam_switch_mode,
      switchInterval: a.badam_switch_interval,
      startBlock: a.badam_start_block,
      seed: a.seed,
    }, { beta1: a.adam_beta1, beta2: a.adam_beta2, eps: a.adam_epsilon });
  }

  init(): void {
    this.model.executor.setParam(LOSS_SUM, [0], [1]);
  }

  #moments(n: string): OptimState[] {
    return this.optimizer.states(n, this.model.params.get(n)!.shape);
  }

  /**
   * The active block of step `step`: on a (re)start the new block's moments are zeroed and the old block's shrunk to
   * one element (BAdam drops them); after a resume inside a block, the restored moments are kept.
   */
  async prepare(step: number): Promise<PreparedStep> {
    const ex = this.model.executor;
    const block = this.schedule.blockAt(step), adamStep = this.schedule.stepInBlock(step);
    const switched = this.#active === undefined || adamStep === 1;
    const keepRestored = this.#resumed && adamStep > 1;
    this.#resumed = false;
    if (switched) {
      if (this.#active !== undefined && this.#active !== block) {
        for (const n of this.blocks[this.#active].params) {
          for (const s of this.#moments(n)) ex.setParam(s.name, [0], [1]);
        }
      }
      for (const n of this.blocks[block].params) {
        for (const s of this.#moments(n)) {
          const restored = keepRestored && ex.hasParam(s.name) &&
            (await ex.getParam(s.name)).length === numel(s.shape);
          if (!restored) ex.setParam(s.name, new Float32Array(numel(s.shape)), s.shape);
        }
      }
    }
    this.#active = block;
    return {
      key: `badam:${block}`,
      names: [...this.blocks[block].params],
      optimizer: this.optimizer,
      adamStep,
      fresh: switched,
    };
  }

  first() {
    return { names: [...this.blocks[this.schedule.blockAt(1)].params], optimizer: this.optimizer };
  }

  states(): OptimState[] {
    if (this.#active === undefined) return [];
    return this.blocks[this.#active].params.flatMap((n) => this.#moments(n));
  }

  bytes(): number {
    return Math.max(...this.blocks.map((b) => bytesOf(statesOf(this.model, this.optimizer, b.params))));
  }

  resumed(): void {
    this.#resumed = true;
  }
}

/** The optimizer run `a` asks for: GaLore, APOLLO, BAdam (layer or ratio mode), or `optim` on `plan.trainable`. */
export async function optimizerRunOf(
  a: TrainArgs,
  model: Model,
  plan: OptimizerSettings,
): Promise<OptimizerRun> {
  if (a.use_galore) return await GaloreRun.create(a, model, plan.trainable);
  if (a.use_apollo) return ApolloRun.create(a, model, plan.trainable);
  if (a.use_badam) return a.badam_mode === "ratio" ? BadamRatioRun.create(a, model) : BadamRun.create(a, model);
  return new PlainRun(model, plan);
}
