/**
 * How a {@link TrainSession} (session.ts) starts, as `deno task train` does: the data, the model with its adapter and
 * trainable parameters, the stage (stages/registry.ts) with what it adds (a value head, a reference, a reward
 * model), the optimizer (optimizers.ts) and its states, fp16 loss scaling, the schedule and step plan, the resume from
 * a checkpoint, the trainer log, and the plan with its memory estimate; the result is the session's
 * {@link SessionRun} (session_run.ts).
 * @module
 */
import { openTracker } from "./trackers.ts";
import type { TrainArgs } from "../config/args.ts";
import { planGraph } from "../exec/plan.ts";
import { numel } from "../graph/types.ts";
import type { Model } from "../nn/model.ts";
import { configureLongLora } from "../nn/longlora.ts";
import { bucket, lengthsOf } from "./batches.ts";
import { cleanCheckpointLeftovers, latestCheckpoint } from "./outputs/checkpoint.ts";
import { optimizerRunOf } from "./optimizers.ts";
import { scheduleFromArgs } from "./schedule.ts";
import { PlateauScheduler } from "./schedule_plateau.ts";
import { loadTrainModel, pickExecutor, prepareData, type PreparedData } from "./run_inputs.ts";
import { restore, type TrainState } from "./outputs/model_files.ts";
import type { SessionOptions, SessionPlan } from "./session_records.ts";
import { SessionRun } from "./session_run.ts";
import { bytesOf } from "./stages/reference.ts";
import { setupStage } from "./stages/registry.ts";
import { buildStep } from "./step/builder.ts";
import { composeStep, type StepPlan } from "./step/plan.ts";
import { trainableShape } from "./step/params.ts";
import { chooseFp16, initLossScaler } from "./step/precision.ts";
import { TrainerLog } from "./outputs/trainer_log.ts";
import { prepareVocab } from "./vocab_run.ts";
import { mark } from "../util/timings.ts";

/** What a session is made of once set up. */
export interface SessionSetup {
  /** The run's arguments as it trains them (vocabulary growth points model_name_or_path at the grown model). */
  args: TrainArgs;
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
  a = await prepareVocab(a, log); // add_tokens / add_special_tokens / resize_vocab: train from the grown model
  const data = await prepareData(a);
  mark("tokenizer and data");
  const records = data.train.records, evalRecords = data.eval?.records ?? [];
  log(
    `data: ${records.length} train records, ${evalRecords.length} eval records (cutoff_len ${data.train.args.cutoffLen})`,
  );
  const executor = await pickExecutor(a.executor);
  mark("executor");
  const loaded = await loadTrainModel(a, executor);
  mark("model load");
  const model = loaded.model;
  // The stage's own parameters and models first: a frozen reference must be a copy of the initial weights.
  const staged = await setupStage({ args: a, model, trainable: loaded.trainable, data, log, reward: opts.reward });
  const trainable = staged.trainable;
  const nTrain = trainable.reduce((n, k) => n + numel(trainableShape(model, k)), 0);
  // QLoRA: the quantized linears are no longer in model.params; they count with their [out, in] shapes.
  const nAll = [...model.params.values()].reduce((n, p) => n + numel(p.shape), 0) +
    [...(model.quantized?.modules.values() ?? [])].reduce((n, s) => n + s[0] * s[1], 0);
  log(
    `model: ${model.config.family}, ${(nAll / 1e6).toFixed(2)}M params; trainable ${(nTrain / 1e6).toFixed(3)}M ` +
      `(${((100 * nTrain) / nAll).toFixed(2)}%) by ${a.finetuning_type} on ${executor.name}`,
  );
  const B = a.per_device_train_batch_size, G = a.gradient_accumulation_steps;
  const hyper = {
    trainable,
    optim: a.optim,
    beta1: a.adam_beta1,
    beta2: a.adam_beta2,
    eps: a.adam_epsilon,
    weightDecay: a.weight_decay,
    loraplusRatio: a.loraplus_lr_ratio ?? 0,
    optimArgs: a.optim_args,
    useMuon: a.use_muon,
    useAdamMini: a.use_adam_mini,
  };
  const optimizer = await optimizerRunOf(a, model, hyper);
  optimizer.init();
  const fp16 = await chooseFp16(
    a,
    executor,
    { objective: staged.f16, optimizer: optimizer.first().optimizer.gated, quantized: !!model.quantized },
    log,
  );
  if (fp16) initLossScaler(executor);
  const shiftAttn = configureLongLora(a.shift_attn, model.config.family, log);
  const stepPlan = (L: number): StepPlan => ({
    ...hyper,
    G,
    B,
    L,
    // Layer-wise GaLore steps each param in its gradient hook, before HF's clipping sees (zeroed) gradients.
    // Layer-wise GaLore / APOLLO step before clipping; BAdam's ratio-mode clipping scales detached copies of its sparse
    // gradients (engine/optim/badam_ratio.ts): none of them clips, all log the norm.
    maxGradNorm: (a.use_galore && a.galore_layerwise) || (a.use_apollo && a.apollo_layerwise) ||
        (a.use_badam && a.badam_mode === "ratio")
      ? 0
      : a.max_grad_norm,
    // LoRA dropout, or the stage's own (rm's value head).
    dropout: (a.finetuning_type === "lora" && a.lora_dropout > 0) || staged.dropout,
    // LF's default gradient checkpointing (disable_gradient_checkpointing: false).
    checkpoint: !a.disable_gradient_checkpointing,
    fp16,
    ...(a.neftune_noise_alpha !== null ? { neftune: a.neftune_noise_alpha } : {}),
    ...(shiftAttn ? { shiftAttn } : {}),
    // LF sets dft_loss_func in CustomSeq2SeqTrainer (stage sft) only.
    dft: a.use_dft_loss && a.stage === "sft",
  });
  const graphs = new Map<string, Promise<import("../exec/executor.ts").CompiledGraph>>();
  const stage = staged.make({
    args: a,
    model,
    plan: stepPlan,
    optimizer,
    log,
    compile: (key, make, symbolic) => {
      let c = graphs.get(key);
      if (!c) {
        const graph = make();
        mark(`trace ${key}`);
        graphs.set(key, c = executor.compile(graph, { symbolic }));
      }
      return c;
    },
    forget: (prefix) => {
      for (const k of [...graphs.keys()]) if (k.startsWith(prefix)) graphs.delete(k);
    },
  });
  if (a.group_by_length && !a.disable_shuffling) lengthsOf(records, a.stage);
  const stepsPerEpoch = stage.stepsPerEpoch(records.length);
  const total = a.max_steps > 0 ? a.max_steps : Math.ceil(a.num_train_epochs * stepsPerEpoch);
  const sched = scheduleFromArgs({
    ...a,
    lr_scheduler_kwargs: { ...(a.lr_scheduler_kwargs ?? {}) } as Record<string, unknown>,
  }, total);
  const plateau = sched.type === "reduce_lr_on_plateau"
    ? PlateauScheduler.fromKwargs(a.learning_rate, { ...(a.lr_scheduler_kwargs ?? {}) })
    : undefined;

  let state: TrainState = { global_step: 0, epoch: 0, total_tokens: 0, log_history: [] };
  const out = a.output_dir;
  await cleanCheckpointLeftovers(out).catch(() => []);
  if (a.resume_from_checkpoint) {
    const dir = a.resume_from_checkpoint === true
      ? (await latestCheckpoint(out))?.path
      : String(a.resume_from_checkpoint);
    if (!dir) throw new Error(`resume_from_checkpoint: no checkpoint-N folder in ${out}`);
    state = await restore(model, dir, trainable, a.finetuning_type !== "lora" && a.finetuning_type !== "oft");
    optimizer.resumed();
    stage.restoreState(JSON.parse(await Deno.readTextFile(`${dir}/rng_state.json`)));
    if (plateau) {
      const saved = JSON.parse(await Deno.readTextFile(`${dir}/scheduler.json`)).plateau;
      if (!saved) throw new Error(`resume_from_checkpoint: ${dir}/scheduler.json has no reduce_lr_on_plateau state`);
      plateau.restore(saved);
    }
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
  const maxLen = bucket(Math.max(...records.map((r) => stage.length(r))), a.bucket ?? 64);
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
    const stored = bytesOf(model.params.values()) + bytesOf(model.adapter?.params.values() ?? []) +
      (model.quantized?.bytes().quantized ?? 0) + staged.extraBytes;
    const first = optimizer.first();
    const graph = buildStep(
      composeStep(model, { ...stepPlan(maxLen), trainable: first.names }, stage.objective(maxLen), first.optimizer),
    );
    const activations = planGraph(graph).arenaBytes;
    const optim = optimizer.bytes();
    plan.memory = { parameters: stored, optimizer: optim, activations, total: stored + optim + activations };
  }
  mark("stage, optimizer, schedule, log");
  const run = new SessionRun({
    args: a,
    model,
    stage,
    records,
    evalRecords,
    trainable,
    optimizer,
    total,
    stepsPerEpoch,
    sched,
    plateau,
    state,
    tlog,
    clock,
    log,
    readEveryStep: opts.readEveryStep ?? true,
    tracker: openTracker(a),
  });
  return { args: a, model, data, plan, run };
}
