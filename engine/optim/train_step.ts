/**
 * Train-step graphs and host-side drivers for GaLore and BAdam, shaped like engine/train/step.ts's
 * `traceTrainStep` (same feeds: ids_k, positions_k, segments_k, labels_k per micro-batch, inv_targets, lr, step,
 * seed with dropout; same outputs: loss, grad_norm, loss_sum), so the trainer swaps the tracer and calls one
 * driver method before each step.
 *
 * @example
 * ```ts
 * // GaLore
 * const galore = new GaloreDriver(model, trainable, galoreTargets(model.config, trainable, "all"), GALORE_DEFAULTS);
 * galore.initStates();
 * await galore.beforeStep(step, plan, feeds);                     // refreshes P every update_interval steps
 * await (await ex.compile(galore.trace(plan))).run({ ...feeds, lr: [lr], step: [step] });
 * // BAdam: compile the block's graph at each switch (the old block's states are dropped)
 * const badam = new BadamDriver(model, BADAM_DEFAULTS);
 * const { trainable, adamStep, switched } = badam.beforeStep(step); // zeroes the new block's moments at a switch
 * if (switched) c = await ex.compile(traceBadamTrainStep(model, { ...plan, trainable, weightDecay: BADAM_WEIGHT_DECAY }));
 * await c.run({ ...feeds, lr: [lr], step: [adamStep] });
 * ```
 * @module
 */
import { adamw, add, assign, backward, clipScale, Graph, mul, reshape, type Tensor } from "../graph/mod.ts";
import type { Model } from "../nn/model.ts";
import { valueHeadParams } from "../nn/value_head.ts";
import { decays, LOSS_SUM, microLoss, stateNames } from "../train/step.ts";
import { badamBlocks, type BadamOptions, BadamSchedule } from "./badam.ts";
import {
  galoreAdamw,
  galoreLayout,
  type GaloreOptions,
  galoreRefreshDue,
  galoreStateNames,
  galoreStates,
  refreshProjection,
} from "./galore.ts";
import type { Gemm } from "./svd.ts";

/** The shape of one optimizer step (a subset of step.ts's StepPlan). */
export interface OptimStepPlan {
  /** Micro-batches per optimizer step. */
  G: number;
  B: number;
  L: number;
  /** Parameter names that train (f32 in the store). */
  trainable: string[];
  beta1: number;
  beta2: number;
  eps: number;
  /** For GaLore: applied where step.ts's `decays` says (not biases, not norms). For BAdam: to every active param. */
  weightDecay: number;
  /** 0: no clipping. */
  maxGradNorm: number;
  /** A u32 `seed` input is fed (LoRA dropout; unused by full fine-tuning). */
  dropout?: boolean;
  /** Activation checkpointing of each decoder layer (step.ts's microLoss). */
  checkpoint?: boolean;
}

/**
 * The loss side of a GaLore or BAdam step graph: which tensors the trainable params are, and the loss summed over the
 * step's micro-batches with the summed gradients of those params. The default is the causal-LM loss of step.ts
 * ({@link sftStepLoss}); the preference stages pass theirs (pref_step.ts `prefStepLoss`).
 */
export interface StepLoss {
  /** Distinguishes the gradient graphs GaLore caches (e.g. "sft", "pref:dpo"). */
  readonly key: string;
  /** The graph tensors of the params `names`. */
  params(g: Graph, names: readonly string[]): Tensor[];
  /**
   * Declares the step's feeds on `g` and traces the loss and the gradients of `params`. `train` is true in the step
   * graph (where the loss may add outputs of its own, e.g. running metric sums) and false in GaLore's gradient graph.
   */
  trace(g: Graph, params: readonly Tensor[], train: boolean): { loss: Tensor; grads: Tensor[] };
}

/** The causal-LM loss of step.ts's `traceTrainStep` over the plan's micro-batches (feeds as traceTrainStep). */
export function sftStepLoss(model: Model, p: Omit<OptimStepPlan, "trainable">): StepLoss {
  return {
    key: "sft",
    params: (g, names) => {
      const w = model.weights(g);
      return names.map((n) => w.weight(n));
    },
    trace: (g, params) => lossAndGrads(model, g, p, params),
  };
}

/** Inputs, loss and summed gradients of `params` over the plan's micro-batches (as traceTrainStep). */
function lossAndGrads(model: Model, g: Graph, p: Omit<OptimStepPlan, "trainable">, params: readonly Tensor[]) {
  const seed = p.dropout ? g.input("seed", [], "u32") : undefined;
  const invTargets = g.input("inv_targets", []);
  let loss: Tensor | undefined;
  let grads: Tensor[] | undefined;
  for (let k = 0; k < p.G; k++) {
    const lk = mul(microLoss(model, g, k, p.B, p.L, seed, p.checkpoint), invTargets);
    const gk = backward(lk, [...params]);
    loss = loss ? add(loss, lk) : lk;
    grads = grads ? grads.map((x, i) => add(x, gk[i])) : gk;
  }
  return { loss: loss!, grads: grads! };
}

/** Outputs loss and loss_sum (the running sum kept in `train.loss_sum`), and clips: returns the grad scale. */
function lossOutputsAndClip(g: Graph, p: OptimStepPlan, loss: Tensor, grads: Tensor[]): Tensor | undefined {
  g.output("loss", loss);
  const acc = g.param(LOSS_SUM, [1]);
  const accNext = add(acc, reshape(loss, [1]));
  g.output("loss_sum", accNext);
  assign(acc, accNext);
  const { scale, norm } = clipScale(grads, p.maxGradNorm > 0 ? p.maxGradNorm : 1e30);
  g.output("grad_norm", norm);
  return p.maxGradNorm > 0 ? scale : undefined;
}

/**
 * The GaLore step: GaLoreAdamW on every trainable param, projected for `targets` (their P, B, m, v under
 * {@link galoreStateNames}), plain for the others (m, v under step.ts's `stateNames`, no decay on biases and norms).
 */
export function traceGaloreTrainStep(
  model: Model,
  p: OptimStepPlan,
  targets: readonly string[],
  o: GaloreOptions,
  objective: StepLoss = sftStepLoss(model, p),
): Graph {
  const g = new Graph();
  const lr = g.input("lr", []), step = g.input("step", []);
  const params = objective.params(g, p.trainable);
  const { loss, grads } = objective.trace(g, params, true);
  const gradScale = lossOutputsAndClip(g, p, loss, grads);
  const projected = new Set(targets);
  params.forEach((param, i) => {
    const name = p.trainable[i];
    const hyper = { beta1: p.beta1, beta2: p.beta2, eps: p.eps, weightDecay: decays(name) ? p.weightDecay : 0 };
    const pre = model.prefix;
    if (!projected.has(name)) {
      const st = stateNames(name);
      const m = g.param(pre + st.m, param.shape), v = g.param(pre + st.v, param.shape);
      galoreAdamw(param, grads[i], m, v, lr, step, hyper, undefined, gradScale);
      return;
    }
    const l = galoreLayout(param.shape, o), st = galoreStateNames(name);
    const proj = {
      side: l.side,
      p: g.param(pre + st.proj, l.proj),
      b: l.projB ? g.param(pre + st.projB, l.projB) : undefined,
      scale: o.scale,
    };
    const m = g.param(pre + st.m, l.low), v = g.param(pre + st.v, l.low);
    galoreAdamw(param, grads[i], m, v, lr, step, hyper, proj, gradScale);
  });
  return g;
}

/** Loss and gradients only (outputs `loss` and `grad:<name>` for each of `names`): what a GaLore refresh reads. */
export function traceGradStep(
  model: Model,
  p: OptimStepPlan,
  names: readonly string[],
  objective: StepLoss = sftStepLoss(model, p),
): Graph {
  const g = new Graph();
  const { loss, grads } = objective.trace(g, objective.params(g, names), false);
  g.output("loss", loss);
  grads.forEach((gr, i) => g.output(`grad:${names[i]}`, gr));
  return g;
}

/** Host side of GaLore: its states, and the projection refresh before the steps that need one. */
export class GaloreDriver {
  readonly #grads = new Map<string, Promise<import("../exec/executor.ts").CompiledGraph>>();

  constructor(
    readonly model: Model,
    readonly trainable: readonly string[],
    readonly targets: readonly string[],
    readonly opts: GaloreOptions,
    /** SVD settings: e.g. `{ gemm: await ortGemm() }` for big weights. */
    readonly svd: { gemm?: Gemm; tol?: number } = {},
  ) {
    for (const t of targets) {
      if (!trainable.includes(t)) throw new Error(`GaLore target "${t}" is not a trainable param`);
    }
  }

  /** The step graph for `p` (its trainable list is the driver's), with `objective`'s loss (default: causal LM). */
  trace(p: Omit<OptimStepPlan, "trainable">, objective?: StepLoss): Graph {
    return traceGaloreTrainStep(
      this.model,
      { ...p, trainable: [...this.trainable] },
      this.targets,
      this.opts,
      objective,
    );
  }

  /** Every optimizer state with its store name (prefix included) and shape. */
  states(): { name: string; shape: number[] }[] {
    const pre = this.model.prefix, out: { name: string; shape: number[] }[] = [];
    for (const name of this.trainable) {
      const shape = this.#shape(name);
      if (this.targets.includes(name)) {
        for (const s of galoreStates(name, shape, this.opts)) out.push({ name: pre + s.name, shape: s.shape });
      } else {
        const st = stateNames(name);
        out.push({ name: pre + st.m, shape }, { name: pre + st.v, shape });
      }
    }
    return out;
  }

  /** Sets every state to zeros (P too: step 1 always refreshes it) and the running loss sum to 0. */
  initStates(): void {
    for (const s of this.states()) {
      this.model.executor.setParam(s.name, new Float32Array(s.shape[0] * (s.shape[1] ?? 1)), s.shape);
    }
    this.model.executor.setParam(LOSS_SUM, [0], [1]);
  }

  #shape(name: string): number[] {
    const s = this.model.params.get(name)?.shape ?? valueHeadParams(this.model.config.hidden).get(name);
    if (!s) throw new Error(`model has no parameter "${name}"`);
    return s;
  }

  /**
   * Before optimizer step `step` (1-based) with the step's `feeds` (without lr/step): when the step refreshes
   * (step 1, then every update_interval), runs forward and backward once, and writes each target's new P (and B)
   * from its gradient of `objective`'s loss (default: causal LM; the feeds are that loss's). Returns whether it
   * refreshed.
   */
  async beforeStep(
    step: number,
    p: Omit<OptimStepPlan, "trainable">,
    feeds: Record<string, ArrayLike<number>>,
    objective?: StepLoss,
  ) {
    if (!galoreRefreshDue(step, this.opts.updateInterval)) return false;
    const key = `${objective?.key ?? "sft"}:${p.G}:${p.B}:${p.L}:${!!p.dropout}`;
    let c = this.#grads.get(key);
    if (!c) {
      c = this.model.executor.compile(traceGradStep(this.model, { ...p, trainable: [] }, this.targets, objective));
      this.#grads.set(key, c);
    }
    const out = await (await c).run(feeds, this.targets.map((t) => `grad:${t}`));
    for (const t of this.targets) {
      const shape = this.#shape(t), st = galoreStateNames(this.model.prefix + t);
      const l = galoreLayout(shape, this.opts);
      const { proj, projB } = await refreshProjection(out[`grad:${t}`], shape, this.opts, this.svd);
      this.model.executor.setParam(st.proj, proj, l.proj);
      if (projB) this.model.executor.setParam(st.projB, projB, l.projB!);
    }
    return true;
  }
}

/**
 * The BAdam step for the active block (`p.trainable`): torch AdamW (the `adamw` op) with `p.weightDecay` on every
 * active param (BAdam's groups carry torch's default, {@link BADAM_WEIGHT_DECAY}), clipping over the block's grads.
 * Feed `step` with {@link BadamDriver.beforeStep}'s `adamStep`, not the global step.
 */
export function traceBadamTrainStep(
  model: Model,
  p: OptimStepPlan,
  objective: StepLoss = sftStepLoss(model, p),
): Graph {
  const g = new Graph();
  const lr = g.input("lr", []), step = g.input("step", []);
  const params = objective.params(g, p.trainable);
  const { loss, grads } = objective.trace(g, params, true);
  const gradScale = lossOutputsAndClip(g, p, loss, grads);
  params.forEach((param, i) => {
    const st = stateNames(p.trainable[i]);
    const m = g.param(model.prefix + st.m, param.shape), v = g.param(model.prefix + st.v, param.shape);
    adamw(
      param,
      grads[i],
      m,
      v,
      lr,
      step,
      { beta1: p.beta1, beta2: p.beta2, eps: p.eps, weightDecay: p.weightDecay },
      gradScale,
    );
  });
  return g;
}

/** Host side of BAdam: the blocks of the model, the schedule, and the state reset at each switch. */
export class BadamDriver {
  readonly blocks;
  readonly schedule: BadamSchedule;
  #active: number | undefined;

  constructor(readonly model: Model, opts: BadamOptions) {
    this.blocks = badamBlocks([...model.params.keys()]);
    this.schedule = new BadamSchedule(this.blocks.length, opts);
  }

  /**
   * Before optimizer step `step` (1-based): the active block, its params (the step graph's trainable list; one
   * graph per block), AdamW's step count to feed as `step`, and whether the block was (re)started now. On a
   * (re)start the new block's m and v are zeroed and the old block's are shrunk to one element (BAdam drops them);
   * after resuming from a checkpoint, restore the active block's moments after this call.
   */
  beforeStep(step: number): { block: number; trainable: string[]; adamStep: number; switched: boolean } {
    const block = this.schedule.blockAt(step), adamStep = this.schedule.stepInBlock(step);
    const switched = this.#active === undefined || adamStep === 1;
    const ex = this.model.executor, pre = this.model.prefix;
    if (switched) {
      if (this.#active !== undefined && this.#active !== block) {
        for (const n of this.blocks[this.#active].params) {
          ex.setParam(pre + stateNames(n).m, [0], [1]);
          ex.setParam(pre + stateNames(n).v, [0], [1]);
        }
      }
      for (const n of this.blocks[block].params) {
        const shape = this.model.params.get(n)!.shape, zeros = new Float32Array(shape.reduce((a, b) => a * b, 1));
        ex.setParam(pre + stateNames(n).m, zeros, shape);
        ex.setParam(pre + stateNames(n).v, zeros, shape);
      }
      if (!ex.hasParam(LOSS_SUM)) ex.setParam(LOSS_SUM, [0], [1]);
    }
    this.#active = block;
    return { block, trainable: [...this.blocks[block].params], adamStep, switched };
  }
}
