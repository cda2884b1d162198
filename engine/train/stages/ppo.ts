/**
 * Stage ppo in a training session, as LLaMA-Factory's `run_ppo` + `CustomPPOTrainer` over TRL 0.9's `PPOTrainer`,
 * with model sharing: one base model in the store; the policy's adapter and its value head (the critic) train; the
 * reward model is `reward_model`, the output folder of a stage rm run — with `reward_model_type: lora` its adapter and
 * value head are attached to the same base under the prefix "reward." (a {@link ModelView}, LF's `replace_model`),
 * with `full` a separate model folder; the reference is the base with the adapter disabled (LoRA) or a frozen copy of
 * the trainable tensors (full / freeze) or `ref_model`. Peak memory with LoRA: one base model plus two adapters and
 * two value heads.
 *
 * One optimizer step of the session is one PPO step of TRL: generate responses to B·G·ppo_buffer_size prompts (B at
 * a time, sampling with the generating arguments), score them with the reward model, compute the rollout's log-probs,
 * reference log-probs and values, the per-token rewards (KL penalty, score at the last token), GAE advantages and
 * returns (ppo_math.ts), then `ppo_epochs` passes over the batch in shuffled mini-batches of B, one optimizer update
 * per G mini-batches (step/ppo.ts through the step builder), and the adaptive KL controller's update toward
 * `ppo_target`. Its logs are LF's: every logging_steps the means of its loss and reward meters, `learning_rate` the lr
 * the step used, and LF's 0-based `step` and `epoch` = round(step / steps_per_epoch, 2) in the log history.
 * @module
 */
import type { TrainArgs } from "../../config/args.ts";
import type { SftRecord } from "../../data/process.ts";
import type { HostArray } from "../../exec/executor.ts";
import { isDir, isFile } from "../../util/fs.ts";
import type { GenerateOptions } from "../../nn/generate.ts";
import { attachAdapter } from "../../nn/lora.ts";
import type { Model } from "../../nn/model.ts";
import { initValueHead, loadValueHead, V_HEAD_BIAS, V_HEAD_WEIGHT, VALUE_HEAD_FILE } from "../../nn/value_head.ts";
import { mulberry32 } from "../../util/rng.ts";
import { pyRound } from "../../util/py_round.ts";
import { bucket, collate, epochOrder } from "../batches.ts";
import { buildStep } from "../step/builder.ts";
import type { Objective } from "../step/objective.ts";
import { composeStep } from "../step/plan.ts";
import { ppoObjective, type PpoReference, traceRollout, traceScores } from "../step/ppo.ts";
import { AdaptiveKlController, computeTargets, PPO_DEFAULTS, type Rollout, RunningMoments } from "./ppo_math.ts";
import { loadModelInto, ModelView, referenceBytes, referenceOf, ropeOf } from "./reference.ts";
import type { LogWindow, Stage, StageContext, StepInput, StepOutput } from "./stage.ts";

/** Scores sequences (prompt ids + response ids) on the host instead of a reward model (tests, notebooks). */
export type RewardFunction = (prompts: number[][], responses: number[][]) => number[] | Promise<number[]>;

/** What {@link setupPpo} prepared. */
export interface PpoSetup {
  reward: Model | RewardFunction;
  reference: PpoReference;
  /** The trainable names, the policy's value head appended. */
  trainable: string[];
  /** Bytes stored besides the policy and its adapter: its value head, the reward model's own tensors, the reference. */
  extraBytes: number;
}

/**
 * Loads the reward model (or takes `reward`), the policy's value head (from the adapter or model folder when it has
 * one, else a new one) and the reference. Call before restoring anything, with the policy's adapter attached.
 */
export async function setupPpo(
  a: TrainArgs,
  model: Model,
  trainable: readonly string[],
  log: (line: string) => void,
  reward?: RewardFunction,
): Promise<PpoSetup> {
  let rm: Model | RewardFunction;
  if (reward) rm = reward;
  else {
    const dir = a.reward_model;
    if (!dir) throw new Error("reward_model: `reward_model` is necessary for PPO training.");
    if (!await isDir(dir) || !await isFile(`${dir}/${VALUE_HEAD_FILE}`)) {
      throw new Error(
        `reward_model: expected the output folder of a stage rm run (with ${VALUE_HEAD_FILE}), got ${dir}`,
      );
    }
    if (a.reward_model_type === "lora") {
      if (!await isFile(`${dir}/adapter_config.json`)) {
        throw new Error(
          `reward_model: reward_model_type lora needs a LoRA adapter folder, ${dir} has no adapter_config.json`,
        );
      }
      const view = new ModelView(model, "reward.");
      await attachAdapter(view, dir, { baseModel: a.model_name_or_path });
      rm = view;
      log(`reward model: adapter and value head of ${dir} on the policy's base (no second base model)`);
    } else {
      rm = await loadModelInto(dir, model, "reward.", ropeOf(a));
      const adapters = a.reward_model_adapters ?? [];
      if (adapters.length > 1) throw new Error("reward_model_adapters: stacking several adapters is not supported");
      if (adapters.length) await attachAdapter(rm, adapters[0], { baseModel: dir });
      log(`reward model: ${dir}${adapters.length ? ` with adapter ${adapters[0]}` : ""}, frozen`);
    }
    await loadValueHead(rm, dir);
  }
  const from = a.adapter_name_or_path?.at(-1) ?? a.model_name_or_path;
  if (await isDir(from) && await isFile(`${from}/${VALUE_HEAD_FILE}`)) {
    await loadValueHead(model, from);
    log(`value head: loaded from ${from}/${VALUE_HEAD_FILE}`);
  } else initValueHead(model, { seed: a.seed });
  const reference = await referenceOf(a, model, trainable, log) as PpoReference;
  const head = 4 * (model.config.hidden + 1);
  return {
    reward: rm,
    reference,
    trainable: [...trainable, V_HEAD_WEIGHT, V_HEAD_BIAS],
    extraBytes: head + (typeof rm === "function" ? 0 : head + referenceBytes(rm)) + referenceBytes(reference),
  };
}

/** One PPO step's numbers. */
export interface PpoStepResult {
  /** Mean over the step's mini-batches of pg + vf_coef·vf (TRL's ppo/loss/total). */
  loss: number;
  /** Mean raw reward-model score of the step's responses. */
  reward: number;
  /** Grad norm of the step's last update. */
  gradNorm: number;
  /** Prompt and response tokens of the step. */
  tokens: number;
  /** TRL's statistics: kl (mean Σ KL per sequence), kl_coef, policy and value losses, clip fraction, lengths. */
  stats: Record<string, number>;
}

/** LF's response trimming: up to the last non-pad token (the one after it too when pad is eos); never empty. */
export function trimResponse(ids: readonly number[], pad: number, eos: number): number[] {
  let last = ids.length - 1;
  while (last >= 0 && ids[last] === pad) last--;
  if (last < 0) return [ids[0] ?? pad];
  return ids.slice(0, pad === eos ? last + 2 : last + 1);
}

/** Stage ppo in a session: KL controller, score moments, update count, and LF's logging meters. */
export class PpoStage implements Stage<SftRecord> {
  readonly name = "ppo";
  readonly valueHead = true;
  readonly exportsValueHead = false;
  readonly trainResults = false;
  readonly samples = false;
  readonly plotKeys = ["loss", "reward"];
  readonly extraBytes: number;
  readonly kl: AdaptiveKlController;
  readonly moments = new RunningMoments();
  /** Optimizer updates so far (AdamW's step count). */
  updates = 0;
  #window: { loss: number; reward: number }[] = [];
  readonly args: TrainArgs;
  readonly model: Model;

  constructor(
    readonly ctx: StageContext,
    readonly setup: PpoSetup,
    readonly gen: GenerateOptions,
    readonly tokens: { pad: number; eos: number },
  ) {
    this.args = ctx.args;
    this.model = ctx.model;
    this.extraBytes = setup.extraBytes;
    this.kl = new AdaptiveKlController(PPO_DEFAULTS.initKlCoef, this.args.ppo_target, PPO_DEFAULTS.horizon);
  }

  /** TRL's dataloader: batchSize prompts per step, the last partial batch dropped. */
  stepsPerEpoch(n: number): number {
    return Math.max(1, Math.floor(n / this.batchSize));
  }

  /** A prompt and its longest response. */
  length(r: SftRecord): number {
    return r.input_ids.length + this.gen.maxNewTokens!;
  }

  objective(L: number): Objective {
    return ppoObjective(this.model, this.args.per_device_train_batch_size, L, this.#s2());
  }

  /**
   * LF's PPO loop: it logs every logging_steps and saves a checkpoint every save_steps (not at the end, where it
   * saves the model), whatever the strategies say; it does not evaluate.
   */
  actions(step: number, total: number): { log: boolean; evaluate: boolean; save: boolean } {
    const a = this.args;
    const every = (n: number) => n >= 1 && step % Math.trunc(n) === 0;
    return { log: every(a.logging_steps), evaluate: false, save: every(a.save_steps) && step < total };
  }

  /** LF's run_ppo neither evaluates nor resumes; its logging window is its meters. */
  checkpointState(): Record<string, number> {
    return {};
  }

  restoreState(): void {}

  /** Runs PPO step `input.step` on its prompts at the step's learning rate. */
  async step(input: StepInput): Promise<StepOutput> {
    const r = await this.run(input.step, input.records<SftRecord>(0, this.batchSize, 1), input.lr);
    const values = Promise.resolve({
      loss: r.loss,
      grad_norm: r.gradNorm,
      lr: input.lr,
      metrics: { reward: r.reward, ...r.stats },
    });
    const out: StepOutput = { tokens: r.tokens, settled: values, values };
    if (input.logNow) {
      const w = this.windowLogs(), epoch = pyRound((input.step - 1) / input.stepsPerEpoch, 2);
      out.window = Promise.resolve<LogWindow>({
        loss: w.loss,
        fields: { reward: w.reward, learning_rate: input.lr },
        step: input.step - 1,
        epoch,
        trainerLog: { reward: w.reward },
        shown: `reward ${w.reward.toFixed(4)}  kl ${r.stats["objective/kl"].toFixed(4)}`,
      });
    }
    return out;
  }

  /** Prompts per PPO step: per_device_train_batch_size × gradient_accumulation_steps × ppo_buffer_size. */
  get batchSize(): number {
    const a = this.args;
    return a.per_device_train_batch_size * a.gradient_accumulation_steps * a.ppo_buffer_size;
  }

  #multiple(): number {
    return this.args.bucket ?? 64;
  }

  /** LongLoRA's S²-attention in the training-mode forwards (step/ppo.ts). */
  #s2(): boolean {
    return !!this.ctx.plan(0).shiftAttn;
  }

  /** Feeds of B right-padded sequences (queries q + responses) as micro-batch k; labels mark the responses. */
  #feeds(seqs: readonly { q: number[]; r: number[] }[], B: number, L: number, k: number) {
    const mb = collate(
      seqs.map(({ q, r }) => ({
        input_ids: [...q, ...r],
        attention_mask: new Array(q.length + r.length).fill(1),
        labels: [...new Array(q.length).fill(-100), ...r],
      })),
      B,
      L,
    );
    return {
      [`ids_${k}`]: mb.ids,
      [`positions_${k}`]: mb.positions,
      [`segments_${k}`]: mb.segments,
      [`labels_${k}`]: mb.labels,
    };
  }

  async #scores(seqs: { q: number[]; r: number[] }[]): Promise<number[]> {
    const rm = this.setup.reward;
    if (typeof rm === "function") {
      const s = await rm(seqs.map((x) => x.q), seqs.map((x) => x.r));
      if (s.length !== seqs.length || !s.every(Number.isFinite)) {
        throw new Error(`reward function: expected ${seqs.length} finite scores, got ${JSON.stringify(s)}`);
      }
      return [...s];
    }
    const B = this.args.per_device_train_batch_size, out: number[] = [];
    for (let i = 0; i < seqs.length; i += B) {
      const chunk = seqs.slice(i, i + B);
      const L = bucket(Math.max(...chunk.map((x) => x.q.length + x.r.length)), this.#multiple());
      const c = await this.ctx.compile(`ppo-scores:${B}:${L}`, () => traceScores(rm, B, L));
      const o = await c.run(this.#feeds(chunk, B, L, 0));
      out.push(...Array.from(o.scores.subarray(0, chunk.length)));
    }
    return out;
  }

  /** Per-token arrays of row j (the response positions q − 1 … q + r − 2 of a [B, L] output). */
  #span(x: HostArray, j: number, L: number, q: number, r: number): number[] {
    return Array.from(x.subarray(j * L + q - 1, j * L + q - 1 + r));
  }

  async #rollouts(seqs: { q: number[]; r: number[] }[], scores: number[]): Promise<Rollout[]> {
    const B = this.args.per_device_train_batch_size, out: Rollout[] = [];
    for (let i = 0; i < seqs.length; i += B) {
      const chunk = seqs.slice(i, i + B);
      const L = bucket(Math.max(...chunk.map((x) => x.q.length + x.r.length)), this.#multiple());
      const c = await this.ctx.compile(
        `ppo-rollout:${B}:${L}`,
        () => traceRollout(this.model, this.setup.reference, B, L, this.#s2()),
      );
      const o = await c.run(this.#feeds(chunk, B, L, 0));
      chunk.forEach(({ q, r }, j) =>
        out.push({
          logprobs: this.#span(o.logprobs, j, L, q.length, r.length),
          refLogprobs: this.#span(o.ref_logprobs, j, L, q.length, r.length),
          values: this.#span(o.values, j, L, q.length, r.length),
          score: scores[i + j],
        })
      );
    }
    return out;
  }

  /** Runs PPO step `step` (1-based) on `prompts` (batchSize prompt records) at learning rate `lr`. */
  async run(step: number, prompts: readonly SftRecord[], lr: number): Promise<PpoStepResult> {
    const a = this.args, B = a.per_device_train_batch_size, G = a.gradient_accumulation_steps;
    // Rollout: generate B at a time, LF's trimming.
    const seqs: { q: number[]; r: number[] }[] = [];
    for (let i = 0; i < prompts.length; i += B) {
      const qs = prompts.slice(i, i + B).map((p) => p.input_ids);
      const seed = (Math.imul(a.seed + 1, 2654435761) ^ Math.imul(step, 40503) ^ i) >>> 0;
      const rs = await this.model.generateBatch(qs, { ...this.gen, seed });
      rs.forEach((r, j) => seqs.push({ q: qs[j], r: trimResponse(r, this.tokens.pad, this.tokens.eos) }));
    }
    const raw = await this.#scores(seqs);
    let scores = raw;
    if (a.ppo_score_norm) {
      // TRL: use_score_scaling and use_score_norm.
      this.moments.update(raw);
      const f = this.moments.std + 2 ** -23;
      scores = raw.map((s) => (s - this.moments.mean) / f);
    }
    const rollouts = await this.#rollouts(seqs, scores);
    const t = computeTargets(rollouts, this.kl.value, { whitenRewards: a.ppo_whiten_rewards });
    // ppo_epochs passes over shuffled mini-batches; one update per G mini-batches.
    const N = seqs.length, perUpdate = B * G;
    const losses: number[] = [], stats: number[][] = [];
    let gradNorm = 0;
    const rng = mulberry32((Math.imul(a.seed + 7, 2654435761) ^ step) >>> 0);
    for (let e = 0; e < a.ppo_epochs; e++) {
      const order = epochOrder(N, Math.floor(rng() * 2 ** 31), e);
      for (let s = 0; s < N; s += perUpdate) {
        const rows = order.slice(s, s + perUpdate);
        const micro = Array.from({ length: G }, (_, k) => rows.slice(k * B, (k + 1) * B)).filter((m) => m.length);
        const L = bucket(Math.max(...rows.map((i) => seqs[i].q.length + seqs[i].r.length)), this.#multiple());
        const feeds: Record<string, ArrayLike<number>> = {};
        micro.forEach((m, k) => {
          Object.assign(feeds, this.#feeds(m.map((i) => seqs[i]), B, L, k));
          const put = (name: string, of: (i: number) => readonly number[]) => {
            const x = new Float32Array(B * L);
            m.forEach((i, j) => x.set(of(i), j * L + seqs[i].q.length - 1));
            feeds[`${name}_${k}`] = x;
          };
          put("old_logprobs", (i) => rollouts[i].logprobs);
          put("old_values", (i) => rollouts[i].values);
          put("advantages", (i) => t.advantages[i]);
          put("returns", (i) => t.returns[i]);
        });
        const Gk = micro.length;
        feeds.inv_accum = [1 / Gk];
        feeds.lr = [lr];
        feeds.step = [++this.updates];
        const { names, optimizer } = this.ctx.optimizer.first();
        const plan = { ...this.ctx.plan(L), G: Gk, trainable: names };
        const c = await this.ctx.compile(
          `ppo-step:${Gk}:${L}`,
          () => buildStep(composeStep(this.model, plan, ppoObjective(this.model, B, L, this.#s2()), optimizer)),
        );
        // Constrained OFT: PEFT's forward projects the stored weights, so each update steps from the projected ones.
        await this.model.adapter?.beforeStep?.(this.model);
        const o = await c.run(feeds);
        gradNorm = o.grad_norm[0];
        for (let k = 0; k < Gk; k++) {
          const row = Array.from(o.stats.subarray(5 * k, 5 * k + 5));
          stats.push(row);
          losses.push(row[0]);
        }
      }
    }
    const meanKl = t.kls.reduce((x, y) => x + y, 0) / N;
    const klCoef = this.kl.value;
    this.kl.update(meanKl, N);
    const mean = (xs: number[]) => xs.reduce((x, y) => x + y, 0) / Math.max(1, xs.length);
    const col = (j: number) => mean(stats.map((r) => r[j]));
    const res: PpoStepResult = {
      loss: mean(losses),
      reward: mean(raw),
      gradNorm,
      tokens: seqs.reduce((n, x) => n + x.q.length + x.r.length, 0),
      stats: {
        "ppo/loss/policy": col(1),
        "ppo/loss/value": col(2),
        "ppo/policy/clipfrac": col(4),
        "ppo/policy/ratio": col(3),
        "objective/kl": meanKl,
        "objective/kl_coef": klCoef,
        "ppo/mean_non_score_reward": mean(t.nonScore),
        "tokens/responses_len_mean": mean(seqs.map((x) => x.r.length)),
      },
    };
    this.#window.push({ loss: res.loss, reward: res.reward });
    return res;
  }

  /** LF's logged means since the last log (its loss and reward meters), rounded to 4 places as LF rounds them. */
  windowLogs(): { loss: number; reward: number } {
    const n = Math.max(1, this.#window.length);
    const r4 = (x: number) => Math.round(x * 1e4) / 1e4;
    const out = {
      loss: r4(this.#window.reduce((s, w) => s + w.loss, 0) / n),
      reward: r4(this.#window.reduce((s, w) => s + w.reward, 0) / n),
    };
    this.#window = [];
    return out;
  }
}
