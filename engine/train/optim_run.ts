/**
 * GaLore and BAdam (engine/optim) in a training session: the driver of each, the step graph it runs, the step count
 * it feeds, and the optimizer states a checkpoint holds. A session with `use_galore` or `use_badam` asks its
 * {@link OptimRun} for each step's graph instead of tracing step.ts's `traceTrainStep`.
 *
 * - GaLore: GaLore-AdamW on every trainable param, projected (rank `galore_rank`) on the targeted linear weights; the
 *   projection is refreshed from the step's gradient at step 1 and every `galore_update_interval` steps (one extra
 *   forward and backward on those steps). Checkpoints hold every state with its shape, projections included.
 * - BAdam (layer mode): one decoder layer trains at a time, switching every `badam_switch_interval` steps; AdamW's
 *   moments exist for the active block only (a fresh graph is compiled at each switch). Checkpoints hold the active
 *   block's moments, put back after the first step's block selection on resume.
 *
 * The step's loss is the causal LM's by default; stages rm, dpo and kto pass theirs ({@link StepLoss}, pref_step.ts
 * `prefStepLoss`), so GaLore's projection refresh and both updates follow the preference objective.
 * @module
 */
import type { TrainArgs } from "../config/args.ts";
import type { Graph } from "../graph/mod.ts";
import type { Model } from "../nn/model.ts";
import { BADAM_WEIGHT_DECAY } from "../optim/badam.ts";
import { galoreTargets } from "../optim/galore.ts";
import { ortGemm } from "../optim/svd_ort.ts";
import { BadamDriver, GaloreDriver, type StepLoss, traceBadamTrainStep } from "../optim/train_step.ts";
import { stateNames, type StepPlan } from "./step.ts";

/** An optimizer state as a checkpoint stores it: its store name (model prefix included) and shape. */
export interface OptimState {
  name: string;
  shape: number[];
}

/** What a session needs of GaLore or BAdam. */
export interface OptimRun {
  readonly kind: "galore" | "badam";
  /**
   * Before optimizer step `step` with its feeds (all but lr and step): the graph to run (a cache key and its tracer),
   * the `step` value to feed, and `fresh` when graphs compiled earlier must not be reused (BAdam's switch).
   * `objective` is the step's loss (default: the causal LM's, on `plan`).
   */
  prepare(step: number, plan: StepPlan, feeds: Record<string, ArrayLike<number>>, objective?: StepLoss): Promise<{
    key: string;
    make: () => Graph;
    adamStep: number;
    fresh: boolean;
  }>;
  /** The optimizer states a checkpoint saves now. */
  states(): OptimState[];
  /** Bytes of the optimizer states at their largest (f32). */
  optimizerBytes(): number;
  /** The step graph of the first step (for the memory plan), with `objective`'s loss if given. */
  trace(plan: StepPlan, objective?: StepLoss): Graph;
  /** Call after restoring a checkpoint: the next `prepare` keeps the restored states. */
  resumed(): void;
}

const numel = (s: readonly number[]) => s.reduce((x, y) => x * y, 1);

/** GaLore's side of a session. */
export class GaloreRun implements OptimRun {
  readonly kind = "galore";
  private constructor(readonly driver: GaloreDriver) {}

  /** The driver for `a`'s galore_* keys on `trainable`; all states zeroed (before any compile). */
  static async create(a: TrainArgs, model: Model, trainable: string[]): Promise<GaloreRun> {
    const targets = galoreTargets(model.config, trainable, a.galore_target);
    const opts = {
      rank: a.galore_rank,
      updateInterval: a.galore_update_interval,
      scale: a.galore_scale,
      projType: a.galore_proj_type,
    };
    const g = new GaloreDriver(model, trainable, targets, opts, { gemm: await ortGemm(), tol: 1e-6 });
    g.initStates();
    return new GaloreRun(g);
  }

  async prepare(step: number, plan: StepPlan, feeds: Record<string, ArrayLike<number>>, objective?: StepLoss) {
    await this.driver.beforeStep(step, plan, feeds, objective);
    const key = `galore:${plan.L}:${objective?.key ?? "sft"}`;
    return { key, make: () => this.driver.trace(plan, objective), adamStep: step, fresh: false };
  }

  states(): OptimState[] {
    return this.driver.states();
  }

  optimizerBytes(): number {
    return this.states().reduce((n, s) => n + 4 * numel(s.shape), 0);
  }

  trace(plan: StepPlan, objective?: StepLoss): Graph {
    return this.driver.trace(plan, objective);
  }

  resumed(): void {}
}

/** BAdam's side of a session. */
export class BadamRun implements OptimRun {
  readonly kind = "badam";
  readonly driver: BadamDriver;
  #block: number | undefined;
  #resumed = false;

  constructor(a: TrainArgs, readonly model: Model) {
    this.driver = new BadamDriver(model, {
      switchMode: a.badam_switch_mode,
      switchInterval: a.badam_switch_interval,
      startBlock: a.badam_start_block,
      seed: a.seed,
    });
  }

  #trace(plan: StepPlan, trainable: string[], objective?: StepLoss): Graph {
    return traceBadamTrainStep(this.model, { ...plan, trainable, weightDecay: BADAM_WEIGHT_DECAY }, objective);
  }

  async prepare(step: number, plan: StepPlan, _feeds?: Record<string, ArrayLike<number>>, objective?: StepLoss) {
    const ex = this.model.executor, pre = this.model.prefix;
    // On resume inside a block, the checkpoint's moments (restored into the store) survive beforeStep's reset.
    let kept: { name: string; data: ArrayLike<number>; shape: number[] }[] = [];
    if (this.#resumed && this.driver.schedule.stepInBlock(step) > 1) {
      for (const n of this.driver.blocks[this.driver.schedule.blockAt(step)].params) {
        const shape = this.model.params.get(n)!.shape;
        for (const s of [pre + stateNames(n).m, pre + stateNames(n).v]) {
          if (!ex.hasParam(s)) continue;
          const data = await ex.getParam(s);
          if (data.length === numel(shape)) kept.push({ name: s, data, shape });
        }
      }
    }
    this.#resumed = false;
    const { block, trainable, adamStep, switched } = this.driver.beforeStep(step);
    for (const k of kept) ex.setParam(k.name, k.data, k.shape);
    kept = [];
    this.#block = block;
    return {
      key: `badam:${block}:${plan.L}:${objective?.key ?? "sft"}`,
      make: () => this.#trace(plan, trainable, objective),
      adamStep,
      fresh: switched,
    };
  }

  states(): OptimState[] {
    if (this.#block === undefined) return [];
    const pre = this.model.prefix;
    return this.driver.blocks[this.#block].params.flatMap((n) => {
      const shape = this.model.params.get(n)!.shape;
      return [{ name: pre + stateNames(n).m, shape }, { name: pre + stateNames(n).v, shape }];
    });
  }

  optimizerBytes(): number {
    const sizes = this.driver.blocks.map((b) =>
      b.params.reduce((n, p) => n + 2 * 4 * numel(this.model.params.get(p)!.shape), 0)
    );
    return Math.max(...sizes);
  }

  trace(plan: StepPlan, objective?: StepLoss): Graph {
    const b = this.driver.schedule.blockAt(1);
    return this.#trace(plan, this.driver.blocks[b].params, objective);
  }

  resumed(): void {
    this.#resumed = true;
  }
}

/** The GaLore or BAdam run `a` asks for, if any. */
export async function setupOptimRun(a: TrainArgs, model: Model, trainable: string[]): Promise<OptimRun | undefined> {
  if (a.use_galore) return await GaloreRun.create(a, model, trainable);
  if (a.use_badam) return new BadamRun(a, model);
  return undefined;
}
