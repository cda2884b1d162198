/**
 * How a {@link TrainSession} (session.ts) starts, as `deno task train` does: the checks of its arguments, the data,
 * the model with its adapter and trainable parameters, the stage's machinery (pref_run.ts, ppo_run.ts,
 * optim_run.ts), the optimizer states and fp16 loss scaling, the schedule and step plan, the resume from a
 * checkpoint, the trainer log, and the plan with its memory estimate; the result is the session's
 * {@link SessionRun} (session_run.ts).
 * @module
 */
import type { TrainArgs } from "../config/args.ts";
import type { SftRecord } from "../data/process.ts";
import { planGraph } from "../exec/plan.ts";
import { DTYPE_BYTES } from "../graph/types.ts";
import type { Model } from "../nn/model.ts";
import { bucket } from "./batches.ts";
import { cleanCheckpointLeftovers, latestCheckpoint } from "./checkpoint.ts";
import { chooseFp16, initLossScaler } from "./loss_scale.ts";
import { setupOptimRun } from "./optim_run.ts";
import { PpoRun, setupPpo } from "./ppo_run.ts";
import { tracePpoStep } from "./ppo_step.ts";
import { generateOptionsOf } from "../config/views.ts";
import { isPrefStage, type PrefRecord, PrefRun, setupPref } from "./pref_run.ts";
import { scheduleFromArgs } from "./schedule.ts";
import {
  initOptimizer,
  loadTrainModel,
  pickExecutor,
  prepareData,
  type PreparedData,
  restore,
  trainableShape,
  type TrainState,
} from "./session_files.ts";
import type { SessionOptions, SessionPlan } from "./session_records.ts";
import { SessionRun } from "./session_run.ts";
import { type StepPlan, traceTrainStep } from "./step.ts";
import { TrainerLog } from "./trainer_log.ts";

/** What a session is made of once set up. */
export interface SessionSetup {
  model: Model;
  data: PreparedData;
  plan: SessionPlan;
  run: SessionRun;
}

/**
 * Loads the model (with its adapter), tokenizer and data of `a` and prepares its run; resumes from
 * `a.resume_from_checkpoint` if set. `opts.autoFinish` is the session's to apply.
 */
export async function setupSession(a: TrainArgs, opts: SessionOptions = {}): Promise<SessionSetup> {
  const log = opts.log ?? ((s: string) => console.error(s));
  if (a.stage === "ppo") {
    if (a.resume_from_checkpoint) {
      throw new Error("resume_from_checkpoint: `resume_from_checkpoint` will be supported in the future version.");
    }
    if (a.eval_dataset || a.val_size > 0) throw new Error("PPOTrainer does not support eval dataset yet.");
    if (!a.reward_model && !opts.reward) {
      throw new Error("reward_model: `reward_model` is necessary for PPO training.");
    }
  }
  const data = await prepareData(a);
  const records = data.train.records as SftRecord[] | PrefRecord[];
  const evalRecords = (data.eval?.records ?? []) as SftRecord[] | PrefRecord[];
  log(
    `data: ${records.length} train records, ${evalRecords.length} eval records (cutoff_len ${data.train.args.cutoffLen})`,
  );
  const executor = await pickExecutor(a.executor);
  const lora = a.finetuning_type === "lora";
  const loaded = await loadTrainModel(a, executor);
  const model = loaded.model;
  let trainable = loaded.trainable;
  const pref = isPrefStage(a.stage) ? await setupPref(a, model, trainable, log) : undefined;
  const ppo = a.stage === "ppo" ? await setupPpo(a, model, trainable, log, opts.reward) : undefined;
  trainable = pref?.trainable ?? ppo?.trainable ?? trainable;
  const numel = (s: number[]) => s.reduce((x, y) => x * y, 1);
  const nTrain = trainable.reduce((n, k) => n + numel(trainableShape(model, k)), 0);
  // QLoRA: the quantized linears are no longer in model.params; they count with their [out, in] shapes.
  const nAll = [...model.params.values()].reduce((n, p) => n + numel(p.shape), 0) +
    [...(model.quantized?.modules.values() ?? [])].reduce((n, s) => n + s[0] * s[1], 0);
  log(
    `model: ${model.config.family}, ${(nAll / 1e6).toFixed(2)}M params; trainable ${(nTrain / 1e6).toFixed(3)}M ` +
      `(${((100 * nTrain) / nAll).toFixed(2)}%) by ${a.finetuning_type} on ${executor.name}`,
  );
  // GaLore and BAdam keep their own optimizer states (optim_run.ts); AdamW / SGD get full-shape ones here.
  const optimRun = await setupOptimRun(a, model, trainable);
  initOptimizer(model, optimRun ? [] : trainable, a.optim);
  const plainStep = !pref && !ppo && !optimRun;
  const fp16 = await chooseFp16(a, executor, { plainStep, quantized: !!model.quantized }, log);
  if (fp16) initLossScaler(executor);

  const B = a.per_device_train_batch_size, G = a.gradient_accumulation_steps;
  // ppo: TRL's dataloader of B·G·ppo_buffer_size prompts per step, last partial batch dropped.
  const stepsPerEpoch = ppo
    ? Math.max(1, Math.floor(records.length / (B * G * a.ppo_buffer_size)))
    : Math.max(1, Math.floor(Math.ceil(records.length / B) / G));
  const total = a.max_steps > 0 ? a.max_steps : Math.ceil(a.num_train_epochs * stepsPerEpoch);
  const sched = scheduleFromArgs({
    ...a,
    lr_scheduler_kwargs: { ...(a.lr_scheduler_kwargs ?? {}) } as Record<string, unknown>,
  }, total);
  const stepPlan = (L: number): StepPlan => ({
    G,
    B,
    L,
    trainable,
    optim: a.optim,
    beta1: a.adam_beta1,
    beta2: a.adam_beta2,
    eps: a.adam_epsilon,
    weightDecay: a.weight_decay,
    maxGradNorm: a.max_grad_norm,
    loraplusRatio: a.loraplus_lr_ratio ?? 0,
    // rm: TRL's dropout before the value head; dpo and kto: LF turns dropout off (pref_step.ts ignores it).
    dropout: (lora && a.lora_dropout > 0) || a.stage === "rm",
    // LF's default gradient checkpointing (disable_gradient_checkpointing: false); ppo's step does not use it.
    checkpoint: !a.disable_gradient_checkpointing,
    fp16,
  });

  let state: TrainState = { global_step: 0, epoch: 0, total_tokens: 0, log_history: [] };
  const prefRun = pref && new PrefRun(model, pref.objective, (L) => ({ ...stepPlan(L), objective: pref.objective }));
  prefRun?.resetSums();
  // ppo generates with LF's generating arguments (GeneratingArguments, as in its PPO example's `### generate`).
  const gen = generateOptionsOf(a);
  const ppoRun = ppo && new PpoRun(model, ppo, a, stepPlan, { ...gen, stop: model.stopIds(data.stop) }, {
    pad: data.template.padId,
    eos: data.template.eosId,
  });
  // ppo: a prompt and its longest response.
  const lengthOf = (r: SftRecord | PrefRecord) =>
    prefRun ? prefRun.length(r as PrefRecord) : (r as SftRecord).input_ids.length + (ppoRun ? gen.maxNewTokens : 0);
  let sinceLog = 0;
  const out = a.output_dir;
  await cleanCheckpointLeftovers(out).catch(() => []);
  if (a.resume_from_checkpoint) {
    const dir = a.resume_from_checkpoint === true
      ? (await latestCheckpoint(out))?.path
      : String(a.resume_from_checkpoint);
    if (!dir) throw new Error(`resume_from_checkpoint: no checkpoint-N folder in ${out}`);
    state = await restore(model, dir, trainable, !lora);
    optimRun?.resumed();
    const rng = JSON.parse(await Deno.readTextFile(`${dir}/rng_state.json`));
    sinceLog = rng.since_log ?? 0;
    if (prefRun) prefRun.microSinceLog = rng.micro_batches_since_log ?? 0;
    log(`resumed from ${dir} at step ${state.global_step}`);
  }
  await Deno.mkdir(out, { recursive: true });
  const clock = { activeMs: 0, since: undefined as number | undefined };
  const now = () => clock.activeMs + (clock.since === undefined ? 0 : performance.now() - clock.since);
  const tlog = await TrainerLog.open(out, {
    totalSteps: total,
    resumeStep: a.resume_from_checkpoint ? state.global_step : undefined,
    resumeTokens: state.total_tokens,
    now,
  });
  const maxLen = bucket(Math.max(...(records as (SftRecord | PrefRecord)[]).map(lengthOf)), a.bucket ?? 64);
  const plan: SessionPlan = {
    stage: a.stage,
    finetuning_type: a.finetuning_type,
    executor: executor.name,
    model_family: model.config.family,
    parameters: nAll,
    trainable_parameters: nTrain,
    trainable_percent: (100 * nTrain) / nAll,
    train_records: records.length,
    eval_records: evalRecords.length,
    total_steps: total,
    steps_per_epoch: stepsPerEpoch,
    per_device_train_batch_size: B,
    gradient_accumulation_steps: G,
    max_length: maxLen,
  };
  if (opts.planMemory ?? true) {
    const stored = [...model.params.values()].reduce((n, p) => n + numel(p.shape) * DTYPE_BYTES[p.dtype], 0) +
      [...(model.adapter?.params.values() ?? [])].reduce((n, p) => n + numel(p.shape) * DTYPE_BYTES[p.dtype], 0) +
      (model.quantized?.bytes().quantized ?? 0) +
      (pref?.extraBytes ?? ppo?.extraBytes ?? 0);
    const optimizer = optimRun ? optimRun.optimizerBytes() : a.optim === "adamw" ? 2 * 4 * nTrain : 0;
    const graph = prefRun
      ? optimRun ? optimRun.trace(stepPlan(maxLen), prefRun.stepLoss(maxLen)) : prefRun.trace(maxLen)
      : ppo
      ? tracePpoStep(model, stepPlan(maxLen))
      : optimRun
      ? optimRun.trace(stepPlan(maxLen))
      : traceTrainStep(model, stepPlan(maxLen));
    const activations = planGraph(graph).arenaBytes;
    plan.memory = { parameters: stored, optimizer, activations, total: stored + optimizer + activations };
  }
  const run = new SessionRun({
    args: a,
    model,
    records,
    evalRecords,
    trainable,
    total,
    stepsPerEpoch,
    sched,
    stepPlan,
    state,
    sinceLog,
    tlog,
    clock,
    log,
    readEveryStep: opts.readEveryStep ?? true,
    pref: prefRun,
    ppo: ppoRun,
    valueHead: pref?.valueHead || !!ppo,
    optimRun,
  });
  return { model, data, plan, run };
}
