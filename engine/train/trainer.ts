/**
 * The training loop for stages pt and sft with full, freeze and LoRA-family fine-tuning: data from the
 * data worker, one traced step per optimizer step (see step.ts), the loss read back only at logging steps,
 * evaluation, atomic checkpoints with exact resume, and outputs as LLaMA-Factory and PEFT write them.
 * @module
 */
import type { TrainArgs } from "../config/args.ts";
import { dataArgsOf, loadDatasetsArgsOf, templateOptionsOf } from "../config/rules.ts";
import { loadDatasets } from "../data/loader.ts";
import { processDataset, type ProcessResult, type SftRecord } from "../data/process.ts";
import { getTemplate } from "../data/template.ts";
import { loadTokenizer, type Tokenizer } from "../data/tokenizer.ts";
import type { CompiledGraph, Executor } from "../exec/executor.ts";
import { createExecutor, type ExecutorKind } from "../exec/pick.ts";
import { ReferenceExecutor } from "../exec/reference.ts";
import { hasGpu } from "../gpu/device.ts";
import { openSafetensors, writeSafetensors } from "../io/safetensors.ts";
import { attachAdapter, LoraAdapter, loraConfigFromArgs, saveAdapter } from "../nn/lora.ts";
import { loadModel, type Model } from "../nn/model.ts";
import { bucket, collate, epochOrder, type MicroBatch } from "./batches.ts";
import { freezeTrainable } from "./freeze.ts";
import { loggedLrAt, lrAt, scheduleFromArgs, type ScheduleOptions } from "./schedule.ts";
import { LOSS_SUM, stateNames, type StepPlan, traceEvalStep, traceTrainStep } from "./step.ts";
import { cleanCheckpointLeftovers, latestCheckpoint, pruneCheckpoints, writeCheckpointAtomic } from "./checkpoint.ts";
import {
  type LogHistoryEntry,
  TrainerLog,
  type TrainerState as TrainerStateFile,
  writeResults,
  writeTrainerState,
} from "./trainer_log.ts";
import { plotLoss } from "./plot.ts";
import { Progress } from "./progress.ts";

/** Hooks for callers (CLI, API sessions, tests). */
export interface TrainHooks {
  /** Human-readable lines (default: console.error). */
  log?: (line: string) => void;
  /** Show a terminal progress bar (default: when stderr is a terminal). */
  progress?: boolean;
  /** Stop after this optimizer step as if the process were killed (tests of resume). */
  stopAfter?: number;
}

/** What a run returns. */
export interface TrainResult {
  globalStep: number;
  totalSteps: number;
  /** (step, loss) at each logging step. */
  losses: { step: number; loss: number }[];
  evalLosses: { step: number; eval_loss: number }[];
  outputDir: string;
  tokensPerSecond: number;
  /** The trained model (base + adapter), still on its executor. */
  model?: Model;
  /** A held-out (or first training) prompt answered by the trained model, for people to read. */
  sample?: { prompt: string; answer: string };
}

/** Training state saved in checkpoints. */
interface State {
  global_step: number;
  epoch: number;
  total_tokens: number;
  log_history: LogHistoryEntry[];
}

async function pickExecutor(name: ExecutorKind | undefined): Promise<Executor> {
  // Without any adapter, "webgpu" falls back to the reference executor as before (tests on bare machines).
  if (name === "webgpu" && !(await hasGpu())) return new ReferenceExecutor();
  return await createExecutor(name ?? "auto", (line) => console.log(line));
}

async function copyIfExists(from: string, to: string) {
  try {
    await Deno.copyFile(from, to);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

/** Writes the trainable result of `model` into `dir`: a PEFT adapter, or an HF model folder. */
async function saveModel(model: Model, dir: string, modelDir: string, full: boolean) {
  await Deno.mkdir(dir, { recursive: true });
  if (model.adapter instanceof LoraAdapter) {
    await saveAdapter(model, dir, { baseModel: modelDir });
  }
  if (full) {
    const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
    for (const [name, p] of model.params) {
      tensors[name] = { dtype: "F32", shape: p.shape, data: Float32Array.from(await model.executor.getParam(name)) };
    }
    await writeSafetensors(`${dir}/model.safetensors`, tensors, { format: "pt" });
    const cfg = { ...model.config.raw, torch_dtype: "float32" };
    if ("dtype" in cfg) (cfg as Record<string, unknown>).dtype = "float32";
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(cfg, null, 2) + "\n");
    await copyIfExists(`${modelDir}/generation_config.json`, `${dir}/generation_config.json`);
  }
  for (const f of ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"]) {
    await copyIfExists(`${modelDir}/${f}`, `${dir}/${f}`);
  }
}

async function saveOptimizer(model: Model, dir: string, trainable: string[], optim: string) {
  const t: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
  const ex = model.executor;
  for (const name of trainable) {
    const shape = (model.params.get(name) ?? model.adapter!.params.get(name)!).shape;
    if (optim === "adamw") {
      for (const s of [stateNames(name).m, stateNames(name).v]) {
        t[s] = { dtype: "F32", shape, data: Float32Array.from(await ex.getParam(model.prefix + s)) };
      }
    }
  }
  t[LOSS_SUM] = { dtype: "F32", shape: [1], data: Float32Array.from(await ex.getParam(LOSS_SUM)) };
  await writeSafetensors(`${dir}/optimizer.safetensors`, t);
}

/** Restores weights, optimizer states and the trainer state from a checkpoint folder. */
async function restore(model: Model, dir: string, trainable: string[], full: boolean): Promise<State> {
  const ex = model.executor;
  const load = async (file: string, keyOf: (k: string) => string | undefined) => {
    const f = await openSafetensors(`${dir}/${file}`);
    try {
      for (const [k, info] of f.tensors) {
        const name = keyOf(k);
        if (name === undefined) continue;
        ex.setParam(model.prefix + name, await f.readF32(k), [...info.shape], "f32");
      }
    } finally {
      f.close();
    }
  };
  if (model.adapter instanceof LoraAdapter) {
    const keys = new Set(model.adapter.params.keys());
    await load("adapter_model.safetensors", (k) => (keys.has(k) ? k : undefined));
  }
  if (full) {
    const keys = new Set(trainable);
    await load("model.safetensors", (k) => (keys.has(k) ? k : undefined));
  }
  await load("optimizer.safetensors", (k) => (k === LOSS_SUM ? undefined : k));
  const f = await openSafetensors(`${dir}/optimizer.safetensors`);
  ex.setParam(LOSS_SUM, await f.readF32(LOSS_SUM), [1]);
  f.close();
  return JSON.parse(await Deno.readTextFile(`${dir}/trainer_state.json`)) as State;
}

/** Loads, templates and tokenizes the datasets of `a` as LLaMA-Factory would. */
export async function prepareData(
  a: TrainArgs,
): Promise<{ train: ProcessResult; eval?: ProcessResult; tokenizer: Tokenizer; stop: number[] }> {
  const tokenizer = await loadTokenizer(a.model_name_or_path);
  const template = getTemplate(tokenizer, templateOptionsOf(a));
  const loaded = await loadDatasets({ ...loadDatasetsArgsOf(a), streaming: false });
  const args = dataArgsOf(a);
  const train = processDataset(loaded.train, template, args);
  if (!train.records.length) throw new Error(`dataset ${a.dataset}: no valid examples for stage ${a.stage}`);
  return {
    train,
    eval: loaded.eval ? processDataset(loaded.eval, template, args) : undefined,
    tokenizer,
    stop: template.stopTokenIds(),
  };
}

/** Runs one training job described by LLaMA-Factory-style arguments. */
export async function train(a: TrainArgs, hooks: TrainHooks = {}): Promise<TrainResult> {
  // Log lines go above the progress bar when one is drawn (see `progress` below).
  const ui: { progress?: Progress } = {};
  const log = hooks.log ?? ((s: string) => (ui.progress ? ui.progress.println(s) : console.error(s)));
  if (a.stage !== "pt" && a.stage !== "sft") throw new Error(`stage "${a.stage}" is not supported by the trainer yet`);
  const out = a.output_dir;
  const t0 = performance.now();
  const data = await prepareData(a);
  const records = data.train.records as SftRecord[];
  const evalRecords = (data.eval?.records ?? []) as SftRecord[];
  log(
    `data: ${records.length} train records, ${evalRecords.length} eval records (cutoff_len ${data.train.args.cutoffLen})`,
  );

  const executor = await pickExecutor(a.executor);
  const lora = a.finetuning_type === "lora";
  const model = await loadModel(a.model_name_or_path, { executor, dtype: lora ? "stored" : "f32" });
  let trainable: string[];
  if (lora) {
    const adapters = a.adapter_name_or_path ?? [];
    if (adapters.length > 1) throw new Error("adapter_name_or_path: stacking several adapters is not supported");
    const source = adapters.length && !a.create_new_adapter ? adapters[0] : loraConfigFromArgs(a);
    const adapter = await attachAdapter(model, source, { seed: a.seed, baseModel: a.model_name_or_path });
    trainable = [...adapter.params.keys()];
  } else if (a.finetuning_type === "full") {
    trainable = [...model.params.keys()];
  } else {
    trainable = freezeTrainable([...model.params.keys()], model.config, {
      layers: a.freeze_trainable_layers,
      modules: a.freeze_trainable_modules,
      extra: a.freeze_extra_modules,
    });
  }
  const full = !lora;
  const nTrain = trainable.reduce((n, k) =>
    n + (model.params.get(k) ?? model.adapter!.params.get(k)!).shape
      .reduce((x, y) => x * y, 1), 0);
  const nAll = [...model.params.values()].reduce((n, p) => n + p.shape.reduce((x, y) => x * y, 1), 0);
  log(
    `model: ${model.config.family}, ${(nAll / 1e6).toFixed(2)}M params; trainable ${(nTrain / 1e6).toFixed(3)}M ` +
      `(${((100 * nTrain) / nAll).toFixed(2)}%) by ${a.finetuning_type} on ${executor.name}`,
  );
  for (const name of trainable) {
    const shape = (model.params.get(name) ?? model.adapter!.params.get(name)!).shape;
    const zeros = new Float32Array(shape.reduce((x, y) => x * y, 1));
    const st = stateNames(name);
    if (a.optim === "adamw") {
      executor.setParam(model.prefix + st.m, zeros, shape);
      executor.setParam(model.prefix + st.v, zeros, shape);
    }
  }
  executor.setParam(LOSS_SUM, [0], [1]);

  const B = a.per_device_train_batch_size, G = a.gradient_accumulation_steps;
  const microPerEpoch = Math.ceil(records.length / B);
  const stepsPerEpoch = Math.max(1, Math.floor(microPerEpoch / G));
  const total = a.max_steps > 0 ? a.max_steps : Math.ceil(a.num_train_epochs * stepsPerEpoch);
  const sched: ScheduleOptions = scheduleFromArgs({
    ...a,
    lr_scheduler_kwargs: { ...(a.lr_scheduler_kwargs ?? {}) } as Record<string, unknown>,
  }, total);
  const plan = (L: number): StepPlan => ({
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
    dropout: lora && a.lora_dropout > 0,
  });

  let state: State = { global_step: 0, epoch: 0, total_tokens: 0, log_history: [] };
  let resumedSinceLog = 0;
  await cleanCheckpointLeftovers(out).catch(() => []);
  if (a.resume_from_checkpoint) {
    const dir = a.resume_from_checkpoint === true
      ? (await latestCheckpoint(out))?.path
      : String(a.resume_from_checkpoint);
    if (!dir) throw new Error(`resume_from_checkpoint: no checkpoint-N folder in ${out}`);
    state = await restore(model, dir, trainable, full);
    resumedSinceLog = JSON.parse(await Deno.readTextFile(`${dir}/rng_state.json`)).since_log ?? 0;
    log(`resumed from ${dir} at step ${state.global_step}`);
  }
  await Deno.mkdir(out, { recursive: true });
  const tlog = await TrainerLog.open(out, {
    totalSteps: total,
    resumeStep: a.resume_from_checkpoint ? state.global_step : undefined,
    resumeTokens: state.total_tokens,
  });

  const graphs = new Map<string, Promise<CompiledGraph>>();
  const compiled = (key: string, make: () => Parameters<Executor["compile"]>[0]) => {
    let c = graphs.get(key);
    if (!c) graphs.set(key, c = executor.compile(make()));
    return c;
  };
  const multiple = a.bucket ?? 64;
  const orders = new Map<number, number[]>();
  const microBatch = (step: number, k: number): SftRecord[] => {
    const epoch = Math.floor((step - 1) / stepsPerEpoch);
    let order = orders.get(epoch);
    if (!order) {
      orders.clear();
      orders.set(epoch, order = epochOrder(records.length, a.seed, epoch));
    }
    const start = (((step - 1) % stepsPerEpoch) * G + k) * B;
    return order.slice(start, start + B).map((i) => records[i]);
  };

  const evaluate = async (): Promise<number> => {
    const Be = a.per_device_eval_batch_size;
    let sum = 0, count = 0;
    for (let i = 0; i < evalRecords.length; i += Be) {
      const rows = evalRecords.slice(i, i + Be);
      const L = bucket(Math.max(...rows.map((r) => r.input_ids.length)), multiple);
      const mb = collate(rows, Be, L);
      const c = await compiled(`eval:${Be}:${L}`, () => traceEvalStep(model, Be, L));
      const o = await c.run({ ids_0: mb.ids, positions_0: mb.positions, segments_0: mb.segments, labels_0: mb.labels });
      sum += o.loss_sum[0];
      count += mb.targets;
    }
    return count ? sum / count : 0;
  };

  const trainerState = (at: number): TrainerStateFile => ({
    global_step: at,
    epoch: state.epoch,
    max_steps: total,
    num_train_epochs: a.num_train_epochs,
    logging_steps: a.logging_steps,
    save_steps: a.save_steps,
    eval_steps: a.eval_steps ?? undefined,
    train_batch_size: B,
    num_input_tokens_seen: state.total_tokens,
    log_history: state.log_history,
  });
  // A bar on a terminal; elsewhere the log lines at logging steps are the progress.
  const showBar = hooks.progress ?? Deno.stderr.isTerminal();
  const progress = ui.progress = new Progress({ total, mode: showBar ? "bar" : "none", startStep: state.global_step });
  const losses: TrainResult["losses"] = [];
  const evalLosses: TrainResult["evalLosses"] = [];
  const started = performance.now();
  const startStep = state.global_step;
  let tokensThisRun = 0, sinceLog = resumedSinceLog;
  let step = state.global_step;
  while (step < total) {
    step++;
    const mbs: MicroBatch[] = [];
    const rowsOf = Array.from({ length: G }, (_, k) => microBatch(step, k));
    const L = bucket(Math.max(...rowsOf.flat().map((r) => r.input_ids.length)), multiple);
    for (const rows of rowsOf) mbs.push(collate(rows, B, L));
    const targets = mbs.reduce((n, m) => n + m.targets, 0);
    const feeds: Record<string, ArrayLike<number>> = {
      inv_targets: [1 / Math.max(1, targets)],
      lr: [lrAt(step - 1, sched)],
      step: [step],
      seed: [(Math.imul(a.seed + 1, 2654435761) ^ step) >>> 0],
    };
    mbs.forEach((m, k) => {
      feeds[`ids_${k}`] = m.ids;
      feeds[`positions_${k}`] = m.positions;
      feeds[`segments_${k}`] = m.segments;
      feeds[`labels_${k}`] = m.labels;
    });
    const tokens = mbs.reduce((n, m) => n + m.tokens, 0);
    tokensThisRun += tokens;
    state.total_tokens += tokens;
    sinceLog++;
    const c = await compiled(`train:${L}`, () => traceTrainStep(model, plan(L)));
    const logNow = step % a.logging_steps === 0 || step === total;
    const res = c.run(feeds, logNow ? ["loss_sum", "grad_norm"] : []);
    state.epoch = step / stepsPerEpoch;
    const elapsed = (performance.now() - started) / 1000;
    const tps = tokensThisRun / Math.max(elapsed, 1e-9);
    if (logNow) {
      const o = await res;
      executor.setParam(LOSS_SUM, [0], [1]);
      const loss = o.loss_sum[0] / sinceLog;
      sinceLog = 0;
      losses.push({ step, loss });
      const entry = {
        loss,
        grad_norm: o.grad_norm[0],
        learning_rate: loggedLrAt(step, sched),
        epoch: state.epoch,
        step,
      };
      state.log_history.push(entry);
      tlog.log(step, { loss, lr: entry.learning_rate, epoch: state.epoch, totalTokens: state.total_tokens });
      log(
        `step ${step}/${total}  loss ${loss.toFixed(4)}  grad_norm ${o.grad_norm[0].toFixed(3)}  ` +
          `lr ${entry.learning_rate.toExponential(2)}  epoch ${state.epoch.toFixed(2)}  ${tps.toFixed(0)} tok/s`,
      );
    }
    progress.update(step, { loss: losses.at(-1)?.loss, tokensPerSec: tps });
    const evalEvery = a.eval_steps ?? 0;
    if (evalRecords.length && evalEvery > 0 && a.eval_strategy !== "no" && step % evalEvery === 0) {
      await res;
      const evalLoss = await evaluate();
      evalLosses.push({ step, eval_loss: evalLoss });
      state.log_history.push({ eval_loss: evalLoss, epoch: state.epoch, step });
      tlog.log(step, { eval_loss: evalLoss, epoch: state.epoch, totalTokens: state.total_tokens });
      log(`step ${step}/${total}  eval_loss ${evalLoss.toFixed(4)}  perplexity ${Math.exp(evalLoss).toFixed(2)}`);
    }
    if (a.save_strategy === "steps" && a.save_steps > 0 && step % a.save_steps === 0 && step < total) {
      await res;
      await writeCheckpointAtomic(out, step, async (tmp) => {
        await saveModel(model, tmp, a.model_name_or_path, full);
        await saveOptimizer(model, tmp, trainable, a.optim);
        await Deno.writeTextFile(`${tmp}/scheduler.json`, JSON.stringify({ last_step: step, ...sched }) + "\n");
        await Deno.writeTextFile(
          `${tmp}/rng_state.json`,
          JSON.stringify({ seed: a.seed, step, since_log: sinceLog }) + "\n",
        );
        await writeTrainerState(tmp, trainerState(step));
      });
      if (a.save_total_limit) await pruneCheckpoints(out, a.save_total_limit, [step]);
    }
    if (hooks.stopAfter !== undefined && step >= hooks.stopAfter) {
      await res;
      progress.done();
      return { globalStep: step, totalSteps: total, losses, evalLosses, outputDir: out, tokensPerSecond: tps };
    }
  }
  progress.done();
  const secs = (performance.now() - started) / 1000;
  await saveModel(model, out, a.model_name_or_path, full);
  const metrics: Record<string, number> = {
    epoch: state.epoch,
    total_flos: 0,
    train_loss: losses.length ? losses.reduce((x, l) => x + l.loss, 0) / losses.length : 0,
    train_runtime: secs,
    train_samples_per_second: (records.length * state.epoch) / Math.max(secs, 1e-9),
    train_steps_per_second: (total - startStep) / Math.max(secs, 1e-9),
  };
  await writeResults(out, "train", metrics);
  if (evalRecords.length && (a.do_eval || evalLosses.length)) {
    const evalLoss = await evaluate();
    await writeResults(out, "eval", { epoch: state.epoch, eval_loss: evalLoss, perplexity: Math.exp(evalLoss) });
    log(`eval_loss ${evalLoss.toFixed(4)}  perplexity ${Math.exp(evalLoss).toFixed(2)}`);
  }
  await writeTrainerState(out, trainerState(total));
  tlog.close();
  if (a.plot_loss) {
    await plotLoss(
      out,
      state.log_history.filter((h) => h.loss !== undefined).map((h) => ({ step: h.step, loss: h.loss })),
    );
    if (evalLosses.length) {
      await plotLoss(out, evalLosses.map((h) => ({ step: h.step, loss: h.eval_loss })), "eval_loss");
    }
  }
  let sample: TrainResult["sample"];
  if (a.stage === "sft") {
    // The prompt part of a held-out record (its labels start where the answer starts), answered greedily.
    const rec = evalRecords[0] ?? records[0];
    const cut = rec.labels.findIndex((l) => l !== -100);
    const prompt = rec.input_ids.slice(0, cut > 0 ? cut : rec.input_ids.length);
    const ids = await model.generate(prompt, { maxNewTokens: 48, stop: data.stop });
    const stops = new Set(data.stop);
    sample = {
      prompt: data.tokenizer.decode(prompt),
      answer: data.tokenizer.decode(ids.filter((t) => !stops.has(t))),
    };
  }
  log(`done in ${((performance.now() - t0) / 1000).toFixed(1)} s; outputs in ${out}`);
  return {
    model,
    sample,
    globalStep: total,
    totalSteps: total,
    losses,
    evalLosses,
    outputDir: out,
    tokensPerSecond: tokensThisRun / Math.max(secs, 1e-9),
  };
}
