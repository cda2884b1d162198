/**
 * The training loop for stages pt, sft, rm, dpo and kto with full, freeze and LoRA-family fine-tuning: data from the
 * data worker, one traced step per optimizer step (stages/, step/builder.ts), the loss read back only at logging
 * steps, evaluation, atomic checkpoints with exact resume, and outputs as LLaMA-Factory and PEFT write them (rm: with
 * value_head.safetensors; dpo and kto: LF's `rewards/…` metrics in trainer_state.json's log history).
 * `train` runs a {@link TrainSession} (session.ts) from its first step to its last.
 * @module
 */
import type { TrainArgs } from "../config/args.ts";
import { decodeIds } from "../data/decode_ids.ts";
import type { SftRecord } from "../data/process.ts";
import type { Model } from "../nn/model.ts";
import { Progress } from "./progress.ts";
import type { PreparedData } from "./run_inputs.ts";
import { TrainSession } from "./session.ts";
import type { LogHistoryEntry } from "./outputs/trainer_log.ts";
import { mark } from "../util/timings.ts";

export { prepareData } from "./run_inputs.ts";

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
  /** HF's log_history: the logging steps' entries (rm, dpo, kto: with LF's metrics) and the evaluations'. */
  logHistory: LogHistoryEntry[];
  outputDir: string;
  tokensPerSecond: number;
  /** The trained model (base + adapter), still on its executor. */
  model?: Model;
  /** A held-out (or first training) prompt answered by the trained model, for people to read. */
  sample?: { prompt: string; answer: string; tokens: number };
}

/**
 * The prompt part of a held-out (else the first training) record, its labels starting where the answer starts,
 * answered greedily by the trained model within the tokenizer's ids; ids no token has are dropped when decoding.
 */
async function sampleAnswer(model: Model, data: PreparedData): Promise<TrainResult["sample"]> {
  const records = data.train.records as SftRecord[], evalRecords = (data.eval?.records ?? []) as SftRecord[];
  const rec = evalRecords[0] ?? records[0];
  if (!rec) return undefined;
  const cut = rec.labels.findIndex((l) => l !== -100);
  const prompt = rec.input_ids.slice(0, cut > 0 ? cut : rec.input_ids.length);
  const ids = await model.generate(prompt, {
    maxNewTokens: 48,
    stop: data.stop,
    vocabLimit: data.template.tokenizer.idLimit,
    oneShot: true,
  });
  const stops = new Set(data.stop);
  return {
    prompt: decodeIds(data.template, prompt, false),
    answer: decodeIds(data.template, ids.filter((t) => !stops.has(t)), false),
    tokens: ids.length,
  };
}

/** Runs one training job described by LLaMA-Factory-style arguments. */
export async function train(a: TrainArgs, hooks: TrainHooks = {}): Promise<TrainResult> {
  // Log lines go above the progress bar when one is drawn (see `progress` below).
  const ui: { progress?: Progress } = {};
  const log = hooks.log ?? ((s: string) => (ui.progress ? ui.progress.println(s) : console.error(s)));
  const t0 = performance.now();
  const session = await TrainSession.create(a, { log, readEveryStep: false, autoFinish: false, planMemory: false });
  const total = session.totalSteps, start = session.globalStep;
  // A bar on a terminal; elsewhere the log lines at logging steps are the progress.
  const showBar = hooks.progress ?? Deno.stderr.isTerminal();
  const progress = ui.progress = new Progress({ total, mode: showBar ? "bar" : "none", startStep: start });
  // As a killed process: stopAfter ends the run after that step (at least one step when any is left).
  const stop = hooks.stopAfter === undefined ? total : Math.min(total, Math.max(hooks.stopAfter, start + 1));
  let tps = 0;
  if (stop > start) {
    await session.step(stop - start, (r) => {
      tps = r.throughput;
      progress.update(r.current_steps, { loss: session.losses.at(-1)?.loss, tokensPerSec: tps });
    });
  }
  const out = a.output_dir;
  const { losses, evalLosses } = session;
  if (hooks.stopAfter !== undefined && stop > start && session.globalStep >= hooks.stopAfter) {
    progress.done();
    return {
      globalStep: session.globalStep,
      totalSteps: total,
      losses,
      evalLosses,
      logHistory: session.logHistory,
      outputDir: out,
      tokensPerSecond: tps,
    };
  }
  progress.done();
  const { metrics } = await session.finish();
  const { model, data } = session;
  let sample: TrainResult["sample"];
  if (session.stage.samples) {
    // A reading aid after the outputs are written: an error here is logged, never fails the finished run.
    try {
      sample = await sampleAnswer(model, data);
      mark(`final: sample answer (${sample?.tokens ?? 0} tokens)`);
    } catch (e) {
      log(`the sample answer failed (the run's outputs are written): ${e instanceof Error ? e.message : e}`);
    }
  }
  log(`done in ${((performance.now() - t0) / 1000).toFixed(1)} s; outputs in ${out}`);
  return {
    model,
    sample,
    globalStep: session.globalStep,
    totalSteps: total,
    losses,
    evalLosses,
    logHistory: session.logHistory,
    outputDir: out,
    tokensPerSecond: session.stats.tokens / Math.max(metrics.train_runtime, 1e-9),
  };
}
