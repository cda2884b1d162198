/**
 * What a training session reports and takes: the records of its steps and evaluations (trainer_log.jsonl fields with
 * the stage's metrics), its events, its plan, its options and errors.
 * @module
 */
import type { RunTracker } from "./trackers.ts";
import type { TrainArgs } from "../config/args.ts";
import type { Model } from "../nn/model.ts";
import type { OptimizerRun } from "./optimizers.ts";
import type { RewardFunction } from "./stages/ppo.ts";
import type { Stage } from "./stages/stage.ts";
import type { ScheduleOptions } from "./schedule.ts";
import type { PlateauScheduler } from "./schedule_plateau.ts";
import type { TrainState } from "./outputs/model_files.ts";
import type { TrainerLog, TrainerLogRecord } from "./outputs/trainer_log.ts";

/** Thrown when an operation is asked for while another runs on the same session. */
export class SessionBusyError extends Error {
  constructor(what: string, running: string) {
    super(`cannot ${what}: the session is busy (${running} is running); wait for it to finish`);
    this.name = "SessionBusyError";
  }
}

/** Thrown by `step` when every planned step has run. */
export class SessionFinishedError extends Error {
  constructor(total: number) {
    super(`the session has run all of its ${total} steps (max_steps / num_train_epochs); create a new session`);
    this.name = "SessionFinishedError";
  }
}

/** Options of {@link TrainSession.create}. */
export interface SessionOptions {
  /** Human-readable lines (default: console.error). */
  log?: (line: string) => void;
  /** Read the loss and grad norm back after every step (default true); false: only at logging steps (faster). */
  readEveryStep?: boolean;
  /** When `step` reaches the last step, write the final outputs as the trainer does (default true). */
  autoFinish?: boolean;
  /** Plan the train step's memory for {@link SessionPlan.memory} (default true). */
  planMemory?: boolean;
  /** Stage ppo: score responses with this function on the host instead of `reward_model` (tests, notebooks). */
  reward?: RewardFunction;
}

/** What a session will do and what it needs. */
export interface SessionPlan {
  stage: string;
  finetuning_type: string;
  executor: string;
  model_family: string;
  parameters: number;
  trainable_parameters: number;
  trainable_percent: number;
  train_records: number;
  eval_records: number;
  total_steps: number;
  steps_per_epoch: number;
  per_device_train_batch_size: number;
  gradient_accumulation_steps: number;
  /** The longest training record, rounded up to the `bucket` multiple: the largest step graph. */
  max_length: number;
  /** Planned peak memory in bytes: stored parameters, optimizer states, and the train step's activation arena. */
  memory?: { parameters: number; optimizer: number; activations: number; total: number };
}

/** The final outputs of a finished run. */
export interface FinishResult {
  metrics: Record<string, number>;
  evalLoss?: number;
}

/**
 * One optimizer step: the fields of a `trainer_log.jsonl` line, with this step's loss and its grad norm. Stages dpo
 * and kto add this step's metrics under LF's keys (`rewards/chosen`, `rewards/accuracies`, `logps/rejected`, `kl`,
 * ...; see pref_loss.ts `prefLogs`), and dpo and rm an `accuracy` (rewards/accuracies; rm: chosen scored higher);
 * ppo its `reward` (mean score of the step's responses) and TRL's statistics (`objective/kl`, `ppo/loss/policy`, ...).
 */
export interface StepRecord extends TrainerLogRecord {
  /** This step's loss (token mean over its micro-batches); absent when it was not read back. */
  loss?: number;
  grad_norm?: number;
  lr: number;
  epoch: number;
  /** Input tokens per second over the steps this session ran. */
  throughput: number;
  total_tokens: number;
  /** Preference metrics (`rewards/…`, `logps/…`, `logits/…`), when read back. */
  [metric: `${string}/${string}`]: number;
  kl?: number;
  sft_loss?: number;
  odds_ratio_loss?: number;
}

/**
 * One evaluation: the fields of a `trainer_log.jsonl` eval line, with the perplexity (pt, sft) or LF's eval metrics
 * (dpo, kto: `eval_rewards/…`, `eval_logps/…`; rm: `eval_accuracy`).
 */
export interface EvalRecord extends TrainerLogRecord {
  eval_loss: number;
  perplexity?: number;
  epoch: number;
  [metric: `eval_${string}`]: number;
}

/** What a session tells its listeners. */
export type SessionEvent =
  | { type: "step"; data: StepRecord }
  | { type: "eval"; data: EvalRecord }
  | { type: "save"; data: { step: number; checkpoint: string } }
  | {
    type: "done";
    data: { steps: number; global_step: number; total_steps: number; finished: boolean; error?: string };
  };

/** Everything a session's stepping machinery (`SessionRun`, session_run.ts) starts from. */
export interface RunInit {
  args: TrainArgs;
  model: Model;
  /** The stage the run trains (stages/). */
  stage: Stage;
  /** Processed training and evaluation records (the stage's kind: sft records, pairs, KTO examples, prompts). */
  records: readonly unknown[];
  evalRecords: readonly unknown[];
  trainable: string[];
  /** The optimizer (optimizers.ts): its states are what checkpoints save. */
  optimizer: OptimizerRun;
  total: number;
  stepsPerEpoch: number;
  sched: ScheduleOptions;
  /** `reduce_lr_on_plateau`: its lr, cut after the training loop's evaluations (the schedule has no lr_lambda). */
  plateau?: PlateauScheduler;
  state: TrainState;
  tlog: TrainerLog;
  /** Milliseconds spent running steps, and since when the current run started. */
  clock: { activeMs: number; since: number | undefined };
  log: (line: string) => void;
  readEveryStep: boolean;
  /** The trackers of `report_to` (trackers.ts), given every HF log. */
  tracker?: RunTracker;
}
