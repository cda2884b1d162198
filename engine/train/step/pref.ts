/**
 * The objective of the preference stages — dpo (sigmoid, hinge, ipo, orpo, simpo), kto and rm — for the step builder
 * (builder.ts): per micro-batch a policy forward, the reference log-probabilities and the loss of pref_loss.ts.
 *
 * The reference is computed in the same graph, under stop_gradient, by default: for a LoRA model it is the same
 * decoder traced without the adapter's linear hook on the same stored parameters (PEFT's `disable_adapter()`, which
 * LF uses when `ref_model` is None), so it costs one more forward per micro-batch and no copy. It needs no second
 * graph, no extra submit or read-back, shares the batch feeds, and matches LF exactly (LF also recomputes it every
 * step). For full or freeze training the reference must be the initial weights: pass a frozen copy in the same
 * executor ({@link copyReference}, what LF's `create_ref_model` loads), or precompute the reference log-probs once
 * with {@link traceReferenceLogps} and feed them (`reference: "inputs"`) when memory for a copy is short.
 *
 * Feeds of micro-batch k (flat row-major; see {@link pairwiseFeeds}, {@link ktoFeeds}):
 * - dpo / rm: ids_k, positions_k, segments_k [2B, L] i32 (rows 0..B−1 chosen, B..2B−1 rejected), labels_k [2B·L]
 *   i32 (dpo; shifted, −100 ignored), rows_k [B] f32 (1 real pair, 0 padding); reference "inputs": ref_logps_k [2B]
 *   f32 (sums).
 * - kto: ids_k, positions_k, segments_k, kl_ids_k, kl_positions_k, kl_segments_k [B, L] i32, labels_k,
 *   kl_labels_k [B·L] i32, tags_k [B] f32 (1 desirable), rows_k [B] f32; reference "inputs": ref_logps_k,
 *   ref_kl_logps_k [B] f32.
 * - Scalars: inv_accum (1 / micro-batches in this step), lr, step (1-based); seed (u32) only for rm with dropout —
 *   LF's DPO and KTO trainers disable dropout, so dpo / kto graphs never declare it.
 * - NEFTune (`neftune_noise_alpha`): one noise input [rows, L, hidden] f32 per forward that runs in training mode
 *   ({@link noiseInputs}). transformers hooks the policy's input embeddings and adds noise while the module is in
 *   training mode (integrations/neftune.py `neftune_post_forward_hook`, `if module.training`), for every forward of
 *   Trainer.train: so LF's reference with the adapter disabled (dpo/trainer.py `compute_reference_log_probs`: the same
 *   model under `disable_adapter()`, still in training mode) and KTO's KL forward (no_grad, same model) get fresh noise
 *   too, while a separate `ref_model` (LF's CustomDPOTrainer: `prepare_model(..., evaluation_mode=True)` then
 *   `.eval()`) gets none. rm's value-head model exposes the decoder's embeddings (LF's `patch_valuehead_model`
 *   `get_input_embeddings`), so its one forward gets noise.
 * - shift_attn: LongLoRA's S²-attention in the same forwards (LF's patched llama attention acts when
 *   `self.training`), not in a separate reference model's.
 *
 * The step's loss is the mean over its micro-batches of their mean losses, as HF divides by the accumulation steps;
 * its metrics (names from {@link metricNames}) are summed over them into the builder's `metrics` and running
 * `metric_sums`, which the stage turns into LF's keys at logging steps.
 * @module
 */
import {
  cast,
  concat,
  crossEntropy,
  div,
  type DType,
  expand,
  ge,
  Graph,
  gt,
  linearCrossEntropy,
  matmul,
  maximum,
  mean,
  mul,
  neg,
  reshape,
  slice,
  sub,
  sum,
  type Tensor,
} from "../../graph/mod.ts";
import type { DecoderConfig } from "../../nn/config.ts";
import { type DecoderInputs, type DecoderWeights, traceDecoder } from "../../nn/decoder.ts";
import { stopGradient } from "../../graph/ops/stop_gradient.ts";
import { assign } from "../../graph/ops/assign.ts";
import { Model } from "../../nn/model.ts";
import { lastTokenScores, traceValues } from "../../nn/value_head.ts";
import { s2AttendHook } from "../../nn/longlora.ts";
import type { Objective } from "./objective.ts";
import { paramsOf } from "./params.ts";
import { type StepPlan, traceStep } from "./plan.ts";
import {
  averagesLogps,
  dpoObjective,
  type KtoConfig,
  ktoObjective,
  metricNames,
  type PrefLossConfig,
  rmObjective,
  usesReference,
} from "./pref_loss.ts";

/**
 * Where reference log-probs come from: "base" (the model without its adapter, same parameters), a frozen
 * {@link Model} in the same executor (traced with its own adapter, if it has one: `ref_model_adapters`), or "inputs"
 * (precomputed and fed).
 */
export type Reference = "base" | "inputs" | Model;

/** What a preference step optimizes. */
export type PrefObjective =
  | {
    stage: "dpo";
    loss: PrefLossConfig;
    reference?: Reference;
    /** LD-DPO's ld_alpha (policy log-probs only; feeds `rear_labels_k`); null or absent: off. */
    ldAlpha?: number | null;
  }
  | { stage: "kto"; loss: KtoConfig; reference?: Reference }
  | {
    stage: "rm";
    /** Dropout before the value head (TRL's summary_dropout_prob; needs plan.dropout for its seed). Default 0. */
    valueHeadDropout?: number;
  };

/**
 * The noise inputs of micro-batch k (NEFTune): one per forward in training mode, in feed order — rm and dpo: the
 * policy's `noise_k` [2B rows], dpo with the adapter-disabled reference ("base"): `ref_noise_k`; kto: `noise_k`,
 * `kl_noise_k` [B rows], with "base" also `ref_noise_k`, `ref_kl_noise_k`. A reference model of its own, or
 * precomputed reference log-probs, take none (evaluation mode).
 */
export function noiseInputs(o: PrefObjective, k: number, B: number): { name: string; rows: number }[] {
  if (o.stage === "rm") return [{ name: `noise_${k}`, rows: 2 * B }];
  const baseRef = (o.reference ?? "base") === "base" && (o.stage === "kto" || usesReference(o.loss.loss));
  if (o.stage === "dpo") {
    return [{ name: `noise_${k}`, rows: 2 * B }, ...(baseRef ? [{ name: `ref_noise_${k}`, rows: 2 * B }] : [])];
  }
  return [
    { name: `noise_${k}`, rows: B },
    { name: `kl_noise_${k}`, rows: B },
    ...(baseRef ? [{ name: `ref_noise_${k}`, rows: B }, { name: `ref_kl_noise_${k}`, rows: B }] : []),
  ];
}

/** A preference step: a {@link StepPlan} (B = pairs for dpo / rm, examples for kto) and the objective. */
export interface PrefStepPlan extends StepPlan {
  objective: PrefObjective;
}

/** Running sums of the metric vector between logging steps (a param of the store). */
export { METRIC_SUMS as PREF_METRIC_SUMS } from "./builder.ts";

/** The metric names of an objective, in the order of the metrics outputs. */
export const objectiveMetrics = (o: PrefObjective): string[] =>
  metricNames(o.stage, o.stage === "dpo" ? o.loss.loss : undefined);

/**
 * The frozen base: the model's parameters traced without its adapter's linear hook (no copy); on a quantized base
 * (QLoRA) its linears still go through the quantized base's hook.
 */
export function baseWeights(model: Model, g: Graph): DecoderWeights {
  const weight = model.weights(g).weight;
  return { weight, linear: model.quantized?.hook(weight, model.prefix) };
}

function referenceWeights(model: Model, g: Graph, ref: Exclude<Reference, "inputs">): DecoderWeights {
  if (ref === "base") {
    if (!model.adapter) {
      throw new Error(
        'reference "base" is the model with its adapter disabled, but this model has no adapter: for full or freeze ' +
          'training pass a frozen copy (copyReference) or precomputed reference log-probs ("inputs")',
      );
    }
    return baseWeights(model, g);
  }
  if (ref.executor !== model.executor) throw new Error("the reference model must live in the policy's executor");
  return ref.weights(g);
}

/** A frozen copy of the model's base parameters under `prefix` in the same executor, as a reference model. */
export async function copyReference(model: Model, prefix = "ref."): Promise<Model> {
  if (prefix === model.prefix) throw new Error(`copyReference: prefix "${prefix}" is the model's own`);
  const params = new Map<string, { shape: number[]; dtype: DType }>();
  for (const [name, p] of model.params) {
    model.executor.setParam(prefix + name, await model.executor.getParam(model.prefix + name), p.shape, p.dtype);
    params.set(name, { shape: [...p.shape], dtype: p.dtype });
  }
  return new Model(model.config, model.executor, params, prefix);
}

/** Per-sequence log-probabilities of R rows (each [R]). */
export interface SeqLogps {
  /** Σ log p(label) over the row's labelled positions. */
  sum: Tensor;
  /** Labelled positions (response tokens). */
  count: Tensor;
  /** sum / max(count, 1). */
  mean: Tensor;
  /** Σ over labelled positions of the vocabulary-mean logit (detached; only with `logits: true`). */
  logitSum?: Tensor;
}

/**
 * Sequence log-probs of `labels` [R·L] i32 (shifted: position t predicts labels[t]; −100 and ids outside the vocab
 * ignored) under decoder outputs for R rows of length L. Without a final soft-cap each row goes through the fused LM
 * head (no [R·L, V] logits); its backward adds R zero-padded [R·L, H] slices (and R [V, H] head gradients when the
 * head trains). With a soft-cap the logits are used.
 */
export function sequenceLogps(
  c: DecoderConfig,
  out: { hidden: Tensor; head: Tensor; logits: Tensor },
  labels: Tensor,
  R: number,
  L: number,
  opts: { logits?: boolean } = {},
): SeqLogps {
  const lab = reshape(labels, [R, L]);
  const lf = cast(lab, "f32");
  const valid = mul(ge(lf, 0), gt(c.vocab, lf)); // [R, L]
  const count = sum(valid, 1);
  let nll: Tensor;
  if (c.finalSoftcap) {
    const ce = crossEntropy(reshape(out.logits, [R * L, c.vocab]), labels, { reduction: "none" });
    nll = sum(reshape(ce, [R, L]), 1);
  } else {
    const rows = Array.from({ length: R }, (_, r) => {
      const h = reshape(slice(out.hidden, 0, r, r + 1), [L, c.hidden]);
      const y = reshape(slice(lab, 0, r, r + 1), [L]);
      return reshape(linearCrossEntropy(h, out.head, y, { reduction: "sum" }), [1]);
    });
    nll = R === 1 ? rows[0] : concat(rows, 0);
  }
  const s = neg(nll);
  const res: SeqLogps = { sum: s, count, mean: div(s, maximum(count, 1)) };
  if (opts.logits) {
    // mean_v logits[t, v] = h_t · mean_v W[v]: one [R·L, H] × [H] product instead of the logits.
    const perToken = c.finalSoftcap ? mean(stopGradient(out.logits), -1) : reshape(
      matmul(
        reshape(stopGradient(out.hidden), [R * L, c.hidden]),
        matmul(expand(labels.graph.scalar(1 / c.vocab), [1, c.vocab]), stopGradient(out.head)),
        { transB: true },
      ),
      [R, L],
    );
    res.logitSum = sum(mul(perToken, valid), 1);
  }
  return res;
}

function decoderInputs(g: Graph, pre: string, k: number, R: number, L: number): DecoderInputs {
  return {
    ids: g.input(`${pre}ids_${k}`, [R, L], "i32"),
    positions: g.input(`${pre}positions_${k}`, [R, L], "i32"),
    segments: g.input(`${pre}segments_${k}`, [R, L], "i32"),
  };
}

/** What a training-mode forward adds (NEFTune's noise input, S²-attention), none in evaluation. */
interface TrainMode {
  /** NEFTune: the noise input of a forward (by name, [rows, L, hidden]) is added to its embeddings. */
  neftune?: boolean;
  /** LongLoRA's S²-attention in every layer. */
  shiftAttn?: boolean;
}

const half = (t: Tensor, B: number, i: 0 | 1) => slice(t, 0, i * B, (i + 1) * B);

/**
 * Micro-batch k of a preference objective: declares its feeds on `g` and returns its loss (a mean over its real
 * rows) and metric scalars (see {@link metricNames}). `opts.seed` turns on dropout (rm only).
 */
export function prefMicroObjective(
  model: Model,
  g: Graph,
  o: PrefObjective,
  k: number,
  B: number,
  L: number,
  opts: { seed?: Tensor; checkpoint?: boolean; fp16?: boolean; bco?: { running: Tensor } } & TrainMode = {},
): { loss: Tensor; metrics: Tensor[]; running?: Tensor } {
  const c = model.config, seed = opts.seed;
  // Training mode (see the module doc): the named forward's noise input and S²-attention.
  const noisy = (inp: DecoderInputs, name: string): DecoderInputs =>
    opts.neftune ? { ...inp, noise: g.input(name, [inp.ids.shape[0], L, c.hidden]) } : inp;
  const s2 = (w: DecoderWeights): DecoderWeights => opts.shiftAttn ? { ...w, attend: s2AttendHook(c.attnScale) } : w;
  // The policy's forward (the one differentiated), activation-checkpointed per layer on request, f16 linears in fp16.
  const compute = opts.fp16 ? { computeDtype: "f16" as const } : {};
  const policy = (o: { seed?: Tensor } = {}) => ({
    ...s2(model.weights(g, o)),
    checkpoint: !!opts.checkpoint,
    ...compute,
  });
  // The reference's weights; the adapter-disabled policy ("base") runs in training mode, a model of its own does not.
  const refForward = (ref: Exclude<Reference, "inputs">, inp: DecoderInputs, name: string) =>
    ref === "base"
      ? traceDecoder(c, noisy(inp, name), s2(referenceWeights(model, g, ref)))
      : traceDecoder(c, inp, referenceWeights(model, g, ref));
  const rows = g.input(`rows_${k}`, [B]);
  if (o.stage === "rm") {
    const inp = decoderInputs(g, "", k, 2 * B, L);
    const out = traceDecoder(c, noisy(inp, `noise_${k}`), policy({ seed }));
    const values = traceValues(g, model, out.hidden, { dropout: o.valueHeadDropout, seed });
    const scores = lastTokenScores(values, inp.segments!);
    return rmObjective(half(scores, B, 0), half(scores, B, 1), rows);
  }
  const ref = o.reference ?? "base";
  if (o.stage === "dpo") {
    const R = 2 * B, inp = decoderInputs(g, "", k, R, L);
    const labels = g.input(`labels_${k}`, [R * L], "i32");
    const polOut = traceDecoder(c, noisy(inp, `noise_${k}`), policy());
    let pol = sequenceLogps(c, polOut, labels, R, L, { logits: true });
    if (o.ldAlpha !== undefined && o.ldAlpha !== null) {
      // LF's get_batch_logps with ld_alpha: front + α·rear = all − (1 − α)·rear; the length stays the full count.
      const rear = sequenceLogps(c, polOut, g.input(`rear_labels_${k}`, [R * L], "i32"), R, L);
      const s = sub(pol.sum, mul(rear.sum, 1 - o.ldAlpha));
      pol = { ...pol, sum: s, mean: div(s, maximum(pol.count, 1)) };
    }
    const avg = averagesLogps(o.loss.loss);
    const pick = (s: { sum: Tensor; mean: Tensor }) => (avg ? s.mean : s.sum);
    let refLp: Tensor | undefined;
    if (usesReference(o.loss.loss)) {
      if (ref === "inputs") {
        const sums = g.input(`ref_logps_${k}`, [R]);
        refLp = avg ? div(sums, maximum(pol.count, 1)) : sums;
      } else {
        refLp = stopGradient(pick(sequenceLogps(c, refForward(ref, inp, `ref_noise_${k}`), labels, R, L)));
      }
    }
    const p = pick(pol);
    return dpoObjective(
      {
        chosen: half(p, B, 0),
        rejected: half(p, B, 1),
        refChosen: refLp && half(refLp, B, 0),
        refRejected: refLp && half(refLp, B, 1),
        chosenAvg: half(pol.mean, B, 0),
      },
      rows,
      o.loss,
      {
        chosenSum: sum(half(pol.logitSum!, B, 0)),
        chosenCount: sum(half(pol.count, B, 0)),
        rejectedSum: sum(half(pol.logitSum!, B, 1)),
        rejectedCount: sum(half(pol.count, B, 1)),
      },
      opts.bco,
    );
  }
  const inp = decoderInputs(g, "", k, B, L), klInp = decoderInputs(g, "kl_", k, B, L);
  const labels = g.input(`labels_${k}`, [B * L], "i32"), klLabels = g.input(`kl_labels_${k}`, [B * L], "i32");
  const tags = g.input(`tags_${k}`, [B]);
  const pol = sequenceLogps(c, traceDecoder(c, noisy(inp, `noise_${k}`), policy()), labels, B, L);
  // LF's KTO trainer: the KL forward of the policy itself under no_grad, in training mode.
  const klOut = traceDecoder(c, noisy(klInp, `kl_noise_${k}`), s2(model.weights(g)));
  const klLogps = stopGradient(sequenceLogps(c, klOut, klLabels, B, L).sum);
  let refLogps: Tensor, refKlLogps: Tensor;
  if (ref === "inputs") {
    refLogps = g.input(`ref_logps_${k}`, [B]);
    refKlLogps = g.input(`ref_kl_logps_${k}`, [B]);
  } else {
    refLogps = stopGradient(sequenceLogps(c, refForward(ref, inp, `ref_noise_${k}`), labels, B, L).sum);
    refKlLogps = stopGradient(sequenceLogps(c, refForward(ref, klInp, `ref_kl_noise_${k}`), klLabels, B, L).sum);
  }
  return ktoObjective({ logps: pol.sum, avg: pol.mean, tags, klLogps, refLogps, refKlLogps }, rows, o.loss);
}

/**
 * The objective of a preference step: the G micro-batches' losses (each a mean over its real rows, times
 * `inv_accum`) and their metric vectors (`metrics` / `metric_sums` outputs, names from {@link objectiveMetrics}).
 */
export function prefObjective(
  model: Model,
  p:
    & Pick<PrefStepPlan, "objective" | "B" | "L">
    & Partial<Pick<PrefStepPlan, "dropout" | "checkpoint" | "fp16" | "G" | "neftune" | "shiftAttn">>,
): Objective {
  const o = p.objective;
  const mode: TrainMode = { neftune: !!p.neftune, shiftAttn: !!p.shiftAttn };
  return {
    key: `pref:${o.stage}${mode.neftune ? ":neftune" : ""}${mode.shiftAttn ? ":s2" : ""}`,
    metrics: objectiveMetrics(o),
    f16: !!p.fp16,
    params: (g, names) => paramsOf(model, g, names),
    begin(g) {
      const seed = o.stage === "rm" && p.dropout ? g.input("seed", [], "u32") : undefined;
      const invAccum = g.input("inv_accum", []);
      // LF's BCO running mean (pref_bco_weight): updated by each micro-batch in turn, stored after the step.
      const store = usesBco(o) ? g.param(BCO_RUNNING, [2]) : undefined;
      let running = store;
      return (k) => {
        const bco = running && { running };
        const mo = prefMicroObjective(model, g, o, k, p.B, p.L, {
          seed,
          checkpoint: p.checkpoint,
          fp16: p.fp16,
          bco,
          ...mode,
        });
        if (store && mo.running) {
          running = mo.running;
          if (k === (p.G ?? 1) - 1) assign(store, running);
        }
        return { loss: mul(mo.loss, invAccum), metrics: mo.metrics };
      };
    },
  };
}

/** The store param of LF's BCO running reward mean: (mean, count), TRL's RunningMoments (count from 1e-24). */
export const BCO_RUNNING = "train.bco_running";

/** Whether the objective mixes in LF's BCO term (pref_bco_weight with a loss that uses a reference). */
export const usesBco = (o: PrefObjective): boolean =>
  o.stage === "dpo" && (o.loss.bcoWeight ?? 0) > 1e-6 && usesReference(o.loss.loss);

/** Traces the whole optimizer step of a preference stage for `model` (its adapter and value head included). */
export function tracePrefStep(model: Model, p: PrefStepPlan): Graph {
  return traceStep(model, p, prefObjective(model, p));
}

/** Traces the eval step of a preference stage: loss and metrics of one micro-batch (feeds of k = 0), no update. */
export function tracePrefEvalStep(model: Model, p: { objective: PrefObjective; B: number; L: number }): Graph {
  const g = new Graph();
  // LF's bco_loss updates its running mean in evaluation too.
  const store = usesBco(p.objective) ? g.param(BCO_RUNNING, [2]) : undefined;
  const mo = prefMicroObjective(model, g, p.objective, 0, p.B, p.L, store ? { bco: { running: store } } : {});
  if (store && mo.running) assign(store, mo.running);
  g.output("loss", mo.loss);
  g.output("metrics", concat(mo.metrics.map((x) => reshape(x, [1])), 0));
  return g;
}

/**
 * Traces the precomputation of reference log-prob sums for `reference: "inputs"` (feeds of micro-batch 0):
 * ref_logps [2B] (dpo: chosen then rejected) or [B] and ref_kl_logps [B] (kto), under `from` (default: the model
 * without its adapter — for a model without one, its current weights, so run it before training starts).
 */
export function traceReferenceLogps(
  model: Model,
  p: { stage: "dpo" | "kto"; B: number; L: number; from?: Model },
): Graph {
  const g = new Graph(), c = model.config;
  const w = baseWeights(p.from ?? model, g);
  const R = p.stage === "dpo" ? 2 * p.B : p.B;
  const logps = (pre: string) => {
    const inp = decoderInputs(g, pre, 0, R, p.L);
    return sequenceLogps(c, traceDecoder(c, inp, w), g.input(`${pre}labels_0`, [R * p.L], "i32"), R, p.L).sum;
  };
  g.output("ref_logps", logps(""));
  if (p.stage === "kto") g.output("ref_kl_logps", logps("kl_"));
  return g;
}
